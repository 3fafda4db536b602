"""Where the project's shared public data lives: ``shared/`` beside the checkout (as in CI), else the
workplace's ``/work/shared``. A missing file fails loudly instead of skipping tests."""

from __future__ import annotations

from pathlib import Path

_CANDIDATES = (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))


def shared_file(relative: str) -> Path:
    for root in _CANDIDATES:
        if (root / relative).is_file():
            return root / relative
    raise FileNotFoundError(f"shared data file {relative} not found under {', '.join(map(str, _CANDIDATES))}")


LONGMEMEVAL_ORACLE = "data/longmemeval/longmemeval_oracle.json.gz"
