"""API keys: ``Authorization: Bearer <key>``, stored only as SHA-256 digests.

A plain ``key`` in the config is hashed when the :class:`KeyRing` is built and never kept; lookups hash
the presented key and compare digests with :func:`hmac.compare_digest`. A key may be bound to users
(it acts only for them: anything else is a 403) and to models (the ``model`` field of its requests).
With no keys configured the gateway is open (it binds loopback by default).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mindgate.config import ApiKeyConfig
from mindgate.errors import ConfigurationError, PermissionDeniedError, UnauthorizedError


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for ``key`` (what ``key_sha256`` holds)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: one configured API key, with its bindings and limits."""

    name: str
    users: frozenset[str] | None = None
    models: frozenset[str] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    mcp_servers: tuple[str, ...] | None = None
    mcp_tools: tuple[str, ...] | None = None

    @property
    def sole_user(self) -> str | None:
        """The user a key bound to exactly one user acts for when a request names none."""
        return next(iter(self.users)) if self.users is not None and len(self.users) == 1 else None

    def check_user(self, user_id: str | None) -> None:
        """Raise 403 unless this key may act for ``user_id`` (a user-bound key must name one of its users)."""
        if self.users is None:
            return
        if user_id is None:
            raise PermissionDeniedError(f"API key {self.name!r} is bound to users and this request names none",
                                        hint=f"pass user_id (one of: {', '.join(sorted(self.users))})")
        if user_id not in self.users:
            raise PermissionDeniedError(f"API key {self.name!r} may not act for user {user_id!r}",
                                        hint="use a key bound to that user")

    def check_model(self, model: str) -> None:
        if self.models is not None and model not in self.models:
            raise PermissionDeniedError(f"API key {self.name!r} may not use model {model!r}",
                                        hint=f"allowed models: {', '.join(sorted(self.models))}")

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models


def _missing(message: str) -> UnauthorizedError:
    return UnauthorizedError(message, hint="send `Authorization: Bearer <key>` with a key from the gateway config")


class KeyRing:
    """The configured keys, by digest. Empty means authentication is off."""

    def __init__(self, keys: Sequence[ApiKeyConfig]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        seen: set[str] = set()
        for index, cfg in enumerate(keys):
            digest = (cfg.key_sha256 or hash_key(cfg.key or "")).lower()
            if cfg.key and cfg.key_sha256 and hash_key(cfg.key) != cfg.key_sha256:
                raise ConfigurationError(f"gateway.api_keys[{index}] ({cfg.name!r}) gives both `key` and "
                                         "`key_sha256` and they do not match", hint="keep only one of them")
            if digest in seen:
                raise ConfigurationError(f"gateway.api_keys[{index}] ({cfg.name!r}) repeats another key",
                                         hint="give every key a distinct secret")
            seen.add(digest)
            self._entries.append((digest.encode("ascii"), Principal(
                name=cfg.name, users=_frozen(cfg.users), models=_frozen(cfg.models),
                requests_per_minute=cfg.requests_per_minute, tokens_per_minute=cfg.tokens_per_minute,
                mcp_servers=_tuple(cfg.mcp_servers), mcp_tools=_tuple(cfg.mcp_tools))))

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal for an ``Authorization`` header value; None when keys are off; 401 otherwise."""
        if not self._entries:
            return None
        if not authorization:
            raise _missing("this gateway requires an API key")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _missing("the Authorization header must be `Bearer <key>`")
        digest = hash_key(token).encode("ascii")
        found: Principal | None = None
        for stored, principal in self._entries:  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise _missing("the API key is not valid for this gateway")
        return found


def _frozen(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _tuple(values: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)
