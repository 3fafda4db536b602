"""Running the gateway: :func:`serve` (uvicorn, one worker) and the bind-address policy.

The gateway binds 127.0.0.1 unless told otherwise. Binding any other address needs ``allow_remote``
(config) or ``--allow-remote`` (CLI); doing so without an API key configured logs a warning, because
anyone who can reach the port can then use the models and read every memory. uvloop is used when
installed; the HTTP protocol is httptools with the limits of :mod:`.connections`. uvicorn's access log is
off: the gateway writes its own (JSON, no contents).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import logging
import sys
from typing import Any

from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.gateway._observability import LineHandler

log = logging.getLogger("mindgate.gateway")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: MindgateConfig, host: str, *, allow_remote: bool = False) -> None:
    """Refuse a non-loopback ``host`` unless remote access is allowed; warn when it is open to all."""
    if is_loopback(host):
        return
    if not (allow_remote or config.gateway.allow_remote):
        raise ConfigurationError(f"refusing to bind {host}: it is reachable from other machines",
                                 hint="pass --allow-remote (or set gateway.allow_remote: true) and configure "
                                      "gateway.api_keys, or bind 127.0.0.1")
    if not config.gateway.api_keys:
        log.warning("binding %s with no API key configured: anyone who can reach this port can use the "
                    "models and read every memory; add gateway.api_keys", host)


class _Formatter(logging.Formatter):
    """Access-log lines (already JSON) as they are; everything else as ``time level logger: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "mindgate.access":
            return record.getMessage()
        return super().format(record)


def configure_logging(level: str = "info") -> None:
    handler = LineHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("mindgate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def uvicorn_config(app: Any, config: MindgateConfig, *, host: str, port: int, log_level: str = "info",
                   **overrides: Any) -> Any:
    """The uvicorn configuration the gateway runs under: one worker, uvloop when installed, httptools with
    the header timeout and connection bound of :mod:`.connections`, and ``gateway.keep_alive_s`` of idle
    keep-alive (well above client pools' expiry, so a pooled connection is never reused just as the server
    closes it)."""
    import uvicorn

    from mindgate.gateway._connections import protocol_class

    section = config.gateway
    protocol = protocol_class(header_timeout_s=section.header_timeout_s, max_connections=section.max_connections)
    options: dict[str, Any] = {
        "host": host, "port": port, "workers": 1, "access_log": False, "log_level": log_level,
        "server_header": False, "http": protocol, "timeout_keep_alive": section.keep_alive_s,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio", **overrides}
    return uvicorn.Config(app, **options)


def serve(config: MindgateConfig, *, host: str | None = None, port: int | None = None,
          allow_remote: bool = False, log_level: str = "info") -> None:
    """Serve the gateway until interrupted. Components are built (and config errors raised) before the
    port is bound."""
    import uvicorn

    from mindgate.gateway._app import create_app

    host = host or config.gateway.host
    port = config.gateway.port if port is None else port
    configure_logging(log_level)
    check_bind(config, host, allow_remote=allow_remote)
    app = create_app(config, freeze_heap=True)
    log.info("mindgate gateway on http://%s:%d/v1 (OpenAI-compatible), memory API at /v1/memories",
             host if ":" not in host else f"[{host}]", port)
    server = uvicorn.Server(uvicorn_config(app, config, host=host, port=port, log_level=log_level))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after a graceful shutdown
        server.run()
    log.info("mindgate gateway stopped")
