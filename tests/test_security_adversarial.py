"""``bench/adversarial.py`` in its CI setting: the probes of issue 18 against a real gateway process on
127.0.0.1, with small counts. Correctness of what the probes find, not figures (those come from the
full setting, see SECURITY.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_the_adversarial_probes_find_nothing() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "adversarial.py"), "--memories", "300", "--gaps", "1",
                           "--loris", "8", "--max-connections", "24", "--unauth-mb", "1", "--seconds", "1",
                           "--embedder", "hash", "--json"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["gateway_alive"]
    assert found["docs"] == {"/docs": 401, "/redoc": 401, "/openapi.json": 401}
    assert found["ratelimit"]["statuses"][:5] == [200, 200, 200, 400, 200] and found["ratelimit"]["429s"] == 3
    assert found["filters"]["in_994"]["status"] == 200
    assert found["filters"]["or_494"]["status"] == 400 and not found["filters"]["or_494"]["names_path"]
    assert found["unauth"]["status"] == 401 and found["unauth"]["invalid_body_status"] == 401
    assert found["browser"] == {"rebound_host_status": 403, "foreign_origin_status": 403, "plain_client_status": 200,
                                "memories_written": 0}
    assert found["search"]["results"] > 0
    assert found["loris"]["closed_by_server"] == found["loris"]["connections"] == 8
    assert found["overload"]["503s"] == found["overload"]["with_retry_after"] == 5
    assert found["keepalive"]["transport_errors"] == 0
