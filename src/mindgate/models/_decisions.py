"""Model switching decisions: what the router's placement and tier policies did, and why.

A :class:`DecisionLog` keeps the last ``keep`` decisions in memory (the dashboard shows them), logs each
one at INFO on ``mindgate.routing``, and, when given a ``path``, rewrites that small JSON-lines file after
each decision so another process (``mindgate doctor``) can show them. Only switches are recorded (a model
loaded, unloaded to make room, skipped for lack of memory, a tier change), never the plain "already
loaded" path, so a busy gateway writes nothing per request.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("mindgate.routing")

DEFAULT_KEEP = 50
FILE_NAME = "switching.jsonl"


@dataclass(frozen=True)
class Decision:
    """One switch: ``action`` is ``load``, ``unload``, ``skip``, ``tier-down`` or ``tier-up``."""

    at: float
    chain: str
    target: str
    action: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.chain}: {self.action} {self.target}: {self.reason}"


class DecisionLog:
    """The last decisions, thread-safe (tier policies record from the resource monitor's thread)."""

    def __init__(self, keep: int = DEFAULT_KEEP, *, path: Path | None = None) -> None:
        self.path = path
        self._items: deque[Decision] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, chain: str, target: str, action: str, reason: str) -> Decision:
        decision = Decision(time.time(), chain, target, action, reason)
        log.info("switch: %s", decision.describe())
        with self._lock:
            self._items.append(decision)
            if self.path is not None:
                self._write(list(self._items))
        return decision

    def recent(self, limit: int | None = None) -> list[Decision]:
        """Newest first."""
        with self._lock:
            items = list(self._items)
        items.reverse()
        return items[:limit] if limit is not None else items

    def _write(self, items: list[Decision]) -> None:
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in items), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:  # the record stays in memory; the file is only a window for other processes
            log.warning("could not write the switching log %s: %s", self.path, exc)


def read_decisions(path: Path, limit: int = 10) -> list[Decision]:
    """The decisions a gateway wrote to ``path`` (newest first); empty when there is no such file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in reversed(lines):
        try:
            out.append(Decision(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line from another version: skipped, the rest still shown
        if len(out) >= limit:
            break
    return out
