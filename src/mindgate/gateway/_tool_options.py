"""Which gateway-run tools a chat request gets: its opt-in, its route's, the API key's allowlists, and
``memory_mode``.

A request opts into configured MCP servers by name, with ``"mindgate": {"mcp_servers": [...]}`` in the
body or the ``X-Mindgate-Mcp: a,b`` header; a routing chain's ``mcp_servers`` apply to every request that
names the chain as its model. Only names configured under ``mcp_servers`` exist: anything else is a 400,
so a request can never make the gateway start a server of its choosing. A key with an ``mcp_servers``
allowlist gets a 403 for a server it asked for outside it (a route's servers outside it are just not
offered); its ``mcp_tools`` (``server.tool``) narrow the tools. ``memory_mode: tool`` (body ``mindgate``,
``X-Mindgate-Memory-Mode`` header, or ``memory.mode`` in the config) gives the model ``search_memory`` over
the request's own scope instead of injecting memories.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mindgate.config import MindgateConfig
from mindgate.errors import InvalidRequestError
from mindgate.gateway._auth import Principal
from mindgate.gateway._on_behalf import on_behalf
from mindgate.gateway._schemas import MindgateOptions
from mindgate.gateway._state import Gateway
from mindgate.mcp._toolbox import allowed_servers
from mindgate.mcp._toolloop import ToolRequest
from mindgate.pipeline._scope import ChatScope
from mindgate.providers._base import ChatModel

MCP_HEADER = "x-mindgate-mcp"
MEMORY_MODE_HEADER = "x-mindgate-memory-mode"
MAX_SERVERS = 16


def _header_names(headers: Mapping[str, str]) -> list[str]:
    raw = headers.get(MCP_HEADER) or ""
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > MAX_SERVERS:
        raise InvalidRequestError(f"{MCP_HEADER} names {len(names)} servers; the limit is {MAX_SERVERS}")
    return names


def _memory_mode(config: MindgateConfig, options: MindgateOptions | None, headers: Mapping[str, str]) -> str:
    if options is not None and options.memory_mode is not None:
        return options.memory_mode
    header = (headers.get(MEMORY_MODE_HEADER) or "").strip().lower()
    if header and header not in ("inject", "tool"):
        raise InvalidRequestError(f"{MEMORY_MODE_HEADER} is {header!r}; use inject or tool")
    return header or config.memory.mode


def tool_stage_options(gateway: Gateway, principal: Principal | None, options: MindgateOptions | None,
                       headers: Mapping[str, str], model: str, scope: ChatScope | None) -> dict[str, Any]:
    """The pipeline ``stage_options`` for the request's tools (empty when it gets none). With tools, every
    model call of the loop goes through :func:`~mindgate.gateway._on_behalf.on_behalf` (checked against the
    key's token bucket and charged as it happens)."""
    config = gateway.config
    if (options is None or (not options.mcp_servers and options.memory_mode is None)) \
            and MCP_HEADER not in headers and MEMORY_MODE_HEADER not in headers \
            and (scope is None or config.memory.mode != "tool"):
        chain = config.routing.chains.get(model)
        if chain is None or not chain.mcp_servers:
            return {}  # the common case, nothing asked for: what the full path below gives, for less
    requested = [*(options.mcp_servers or [] if options is not None else []), *_header_names(headers)]
    unknown = sorted({n for n in requested if n not in config.mcp_servers})
    if unknown:
        raise InvalidRequestError(f"unknown MCP server(s): {', '.join(unknown)}; only servers configured under "
                                  "mcp_servers can run", hint="configured: "
                                  f"{', '.join(sorted(config.mcp_servers)) or 'none'}")
    key_servers = principal.mcp_servers if principal is not None else None
    names = allowed_servers(requested, key_servers, principal.name if principal else None)
    chain = config.routing.chains.get(model)
    for name in chain.mcp_servers if chain is not None else []:
        if name not in names and (key_servers is None or name in key_servers):
            names.append(name)
    memory_tool = _memory_mode(config, options, headers) == "tool" and scope is not None
    if not names and not memory_tool:
        return {}
    def for_key(routed: ChatModel) -> ChatModel:
        return on_behalf(gateway, principal, routed, model)

    tools = ToolRequest(tuple(names), principal.mcp_tools if principal is not None else None,
                        scope.kwargs() if memory_tool and scope is not None else None, for_key)
    return {"tools": tools, "recall": False} if memory_tool else {"tools": tools}
