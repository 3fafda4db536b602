"""A short soak: ``bench/soak.py`` in its CI setting (the gateway and a fast fake upstream in their own
processes, steady concurrency, a mix of chats, streams and memory calls). Correctness only: no request
fails, every kind of request ran in every interval, the gateway stays up. The figures (RSS, p99 per
interval) come from the longer setting, ``python bench/soak.py --minutes 3`` (see SECURITY.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_short_soak_has_no_errors() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "soak.py"), "--seconds", "12", "--interval", "3",
                           "--concurrency", "8", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    samples = [text for row in summary["intervals"] for text in row["error_samples"]]
    assert summary["errors"] == 0, samples
    assert len(summary["intervals"]) == 4 and all(row["requests"] > 0 for row in summary["intervals"])
    assert set(summary["by_kind"]) == {"chat", "stream", "add", "search", "list"}
    assert all(row["rss_mb"] > 0 and row["open_files"] > 0 for row in summary["intervals"])
