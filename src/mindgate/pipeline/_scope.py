"""Stage 1, resolve the scope: whose memories a request reads and writes.

A request names its acting user (and optionally an agent and a run); how it names them is the caller's
business (the gateway reads the OpenAI ``user`` field and ``X-Mindgate-*`` headers, ``mindgate chat`` its
``--user`` option). :func:`resolve_scope` checks the names against the caller's credentials and decides
whether memory takes part in this request at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypedDict

from mindgate.errors import InvalidRequestError

MAX_ID = 256


class ScopeArgs(TypedDict, total=False):
    """The scope keyword arguments of the Memory API."""

    user_id: str
    agent_id: str
    run_id: str


def scope_args(user_id: str | None, agent_id: str | None, run_id: str | None) -> ScopeArgs:
    """The ids that are set, as Memory API keyword arguments."""
    out = ScopeArgs()
    if user_id is not None:
        out["user_id"] = user_id
    if agent_id is not None:
        out["agent_id"] = agent_id
    if run_id is not None:
        out["run_id"] = run_id
    return out


@dataclass(frozen=True)
class ChatScope:
    """Whose memories a conversation reads and writes."""

    user_id: str
    agent_id: str | None = None
    run_id: str | None = None

    def kwargs(self) -> ScopeArgs:
        return scope_args(self.user_id, self.agent_id or None, self.run_id or None)


class Acting(Protocol):
    """What the scope stage needs from the caller's credentials (the gateway's ``Principal``)."""

    @property
    def users(self) -> frozenset[str] | None: ...

    @property
    def sole_user(self) -> str | None: ...

    def check_user(self, user: str | None) -> None:
        """Raise :class:`~mindgate.errors.PermissionDeniedError` when these credentials may not act for it."""


@dataclass(frozen=True)
class RequestedScope:
    """The ids a request names (None: not named) and whether it switched memory off.

    ``names`` labels each id in error messages (e.g. the header it came from)."""

    user: str | None = None
    agent: str | None = None
    run: str | None = None
    memory_off: bool = False
    names: tuple[str, str, str] = ("user", "agent", "run")


def acting_user(requested: RequestedScope, acting: Acting | None) -> str | None:
    """The user a request acts for: the one it names, else the sole user of its credentials, else None.

    Checked against the caller's users (credentials never act for another user); ids longer than
    ``MAX_ID`` are a 400."""
    user = (requested.user or "").strip() or None
    for name, value in zip(requested.names, (requested.user, requested.agent, requested.run), strict=True):
        if value is not None and len(value) > MAX_ID:
            raise InvalidRequestError(f"{name} is {len(value)} characters long; the limit is {MAX_ID}")
    if acting is not None:
        if user is None:
            user = acting.sole_user
        if user is not None or acting.users is not None:
            acting.check_user(user)
    return user


def resolve_scope(requested: RequestedScope, acting: Acting | None, *, enabled: bool) -> ChatScope | None:
    """The memory scope of a request, or None when memory is off for it (or it acts for no user).

    The acting user is checked (:func:`acting_user`) even when memory is off."""
    user = acting_user(requested, acting)
    if not enabled or requested.memory_off or not user:
        return None
    agent = (requested.agent or "").strip() or None
    run = (requested.run or "").strip() or None
    return ChatScope(user, agent, run)
