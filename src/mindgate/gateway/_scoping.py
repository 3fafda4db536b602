"""How an HTTP request names its memory scope: the OpenAI ``user`` field or the ``X-Mindgate-User`` header
(``X-Mindgate-Agent`` / ``X-Mindgate-Run`` narrow it); ``"memory": false`` in the body or
``X-Mindgate-Memory: off`` turns memory off for one request. The pipeline's scope stage does the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mindgate.pipeline._scope import RequestedScope

USER_HEADER = "x-mindgate-user"
AGENT_HEADER = "x-mindgate-agent"
RUN_HEADER = "x-mindgate-run"
SWITCH_HEADER = "x-mindgate-memory"
_OFF = {"off", "false", "0", "no", "disabled"}
_NAMES = (USER_HEADER, AGENT_HEADER, RUN_HEADER)


def mindgate_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI request's ``X-Mindgate-*`` headers (the only ones the chat and responses routes read) as a
    plain dict by (lower-case) name, the first of a repeated header winning as in Starlette's
    ``Headers.get``: a route that reads several scans the headers once and decodes only these."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])
            if name.startswith(b"x-mindgate-")}


def requested_scope(headers: Mapping[str, str], body_user: str | None, body_memory: bool | None) -> RequestedScope:
    """The scope a request names (header first, then the body's ``user``)."""
    user = (headers.get(USER_HEADER) or "").strip() or body_user
    off = body_memory is False or headers.get(SWITCH_HEADER, "").strip().lower() in _OFF
    return RequestedScope(user, headers.get(AGENT_HEADER), headers.get(RUN_HEADER), off, _NAMES)
