"""The Host and Origin checks: browsers' DNS-rebinding and cross-site requests refused on every route.

A web page in the user's browser can send requests to ``http://127.0.0.1:<port>`` two ways that API keys
alone do not stop (and with no keys configured, the default on loopback, nothing else would):

* **DNS rebinding**: a page on ``attacker.example`` re-points its name at 127.0.0.1 and then makes
  *same-origin* requests to the gateway, reading the answers. The browser sends
  ``Host: attacker.example:<port>``.
* **Cross-site requests**: a page on another origin sends "simple" requests (a form post, a
  ``text/plain`` fetch) that need no CORS preflight, e.g. to write memories. The browser sends that page's
  ``Origin``.

:class:`HostPolicy` (run by the front door, :mod:`._front`, after the request id and before CORS and the
guard, so a refusal costs a header scan and reads no body) therefore refuses with an OpenAI-shaped 403
naming the setting:

1. on a connection that arrived on a loopback address, a ``Host`` that does not name the gateway. Allowed:
   ``localhost`` and loopback IPs (``127.0.0.1``, ``[::1]``) with any port (a forwarded port, such as
   ``ssh -L 9000:127.0.0.1:8741``, arrives with the client's port; a rebinding page cannot send a loopback
   name), and the entries of ``gateway.allowed_hosts`` (``name`` for any port, ``name:port``, or ``*``
   to turn the check off, e.g. behind a reverse proxy that rewrites ``Host``);
2. on any connection, an ``Origin`` that is foreign: allowed are the request's own origin (the
   dashboard's same-origin requests), pages on loopback, the hosts of ``gateway.allowed_hosts``, and the
   origins of ``gateway.cors_origins`` (``*`` allows all).

Requests without ``Origin`` (every non-browser client: the openai SDK, curl, agents, MCP clients) and
with a loopback or allowed ``Host`` pass untouched.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from mindgate.errors import PermissionDeniedError

Scope = MutableMapping[str, Any]

DEFAULT_PORTS = {"http": 80, "https": 443}
_SEEN_LIMIT = 1024  # allowed header combinations remembered (clients send few; a flood of new ones is just checked)


@functools.lru_cache(maxsize=256)
def is_loopback_name(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.1``, ``::1``, ``[::1]``)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split(authority: str, default_port: int | None) -> tuple[str, int | None] | None:
    """``(hostname, port)`` of a ``host[:port]`` authority; None when it is malformed."""
    try:
        parts = urlsplit("//" + authority)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return parts.hostname.lower(), default_port if port is None else port


class AllowedHosts:
    """``gateway.allowed_hosts`` parsed: names allowed on any port, and ``(name, port)`` pairs."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.names: set[str] = set()
        self.pairs: set[tuple[str, int]] = set()
        for entry in entries:
            if entry.strip() == "*":
                self.any = True
                continue
            split = _split(entry.strip(), None)
            if split is None:
                raise ValueError(f"{entry!r} is not a host name or host:port")
            name, port = split
            if port is None:
                self.names.add(name)
            else:
                self.pairs.add((name, port))

    def allows(self, name: str, port: int | None) -> bool:
        return self.any or name in self.names or (port is not None and (name, port) in self.pairs)


class HostPolicy:
    """Which ``Host`` and ``Origin`` headers a request may carry (see the module docstring). The verdicts
    on the headers a gateway sees (a handful of distinct values) are remembered."""

    def __init__(self, allowed_hosts: Iterable[str], cors_origins: Iterable[str]) -> None:
        self.allowed = AllowedHosts(allowed_hosts)
        self.origins = frozenset(cors_origins)
        self._seen: dict[tuple[str | None, str | None, bool, int], bool] = {}

    def problem(self, host: str | None, origin: str | None, scope: Scope) -> PermissionDeniedError | None:
        """Why a request with these ``Host`` and ``Origin`` headers, arriving on ``scope``'s connection, is
        refused, or None."""
        server = scope.get("server")
        default_port = DEFAULT_PORTS.get(scope.get("scheme", "http"), 80)
        loopback = is_loopback_name(str(server[0])) if server else False
        key = (host, origin, loopback, default_port)
        if self._seen.get(key):
            return None
        if host is not None and loopback and not self._host_allowed(host, default_port):
            return PermissionDeniedError(
                f"the Host header {host[:100]!r} does not name this gateway (a browser sends that for a page "
                "whose name was re-pointed at this machine: DNS rebinding)",
                hint="call the gateway as localhost or 127.0.0.1 with its port, or add the name to "
                     "gateway.allowed_hosts if it is yours")
        if origin is not None and not self._origin_allowed(origin, host, default_port):
            return PermissionDeniedError(
                f"requests from the web origin {origin[:100]!r} are refused (a page on another site may not "
                "use this gateway through the browser)",
                hint="add the origin to gateway.cors_origins if it is yours")
        if len(self._seen) < _SEEN_LIMIT:
            self._seen[key] = True
        return None

    def _host_allowed(self, host: str, default_port: int) -> bool:
        split = _split(host, default_port)
        if split is None:
            return self.allowed.any
        name, port = split
        return is_loopback_name(name) or self.allowed.allows(name, port)

    def _origin_allowed(self, origin: str, host: str | None, default_port: int) -> bool:
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in DEFAULT_PORTS:
            return False  # "null" (sandboxed frames, file: pages) and other schemes
        split = _split(parts.netloc, DEFAULT_PORTS[parts.scheme])
        if split is None:
            return False
        name, port = split
        if is_loopback_name(name) or self.allowed.allows(name, port):
            return True
        own = _split(host, default_port) if host is not None else None
        return own is not None and own == (name, port)
