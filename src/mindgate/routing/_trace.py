"""Why a request went where it went, for the ``X-Mindgate-Route`` response header.

The gateway opens a trace around a call (:func:`tracing`); routers add to the trace in the current
context (:func:`current`) as they skip targets and pick one. Without an open trace the notes cost one
context-variable read and are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

HEADER = "X-Mindgate-Route"
MAX_HEADER_CHARS = 1000


@dataclass
class RouteTrace:
    """The target that served the request (``served``, with what it took, e.g. ``loaded``) and the targets
    skipped before it, each with its reason."""

    served: str | None = None
    action: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def header(self) -> str | None:
        """``target; action; skipped NAME: reason; ...`` in ASCII, or None when nothing was routed."""
        if self.served is None and not self.skipped:
            return None
        parts = [self.served or "none"]
        if self.action:
            parts.append(self.action)
        parts += [f"skipped {name}: {reason}" for name, reason in self.skipped]
        text = "; ".join(parts).encode("ascii", "replace").decode("ascii")
        return text if len(text) <= MAX_HEADER_CHARS else text[: MAX_HEADER_CHARS - 3] + "..."


_trace: ContextVar[RouteTrace | None] = ContextVar("mindgate_route_trace", default=None)


def current() -> RouteTrace | None:
    return _trace.get()


@contextmanager
def tracing() -> Iterator[RouteTrace]:
    """A fresh trace for the calls made inside the block (nested routers add to the same one)."""
    trace = RouteTrace()
    token = _trace.set(trace)
    try:
        yield trace
    finally:
        _trace.reset(token)
