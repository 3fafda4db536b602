"""Memory as an MCP server, on the official ``mcp`` SDK's low-level :class:`~mcp.server.lowlevel.Server`.

:func:`memory_server` serves the tools of :mod:`mindgate.mcp._tools` over any transport; the transport
decides the scope through ``scope_of`` (stdio: fixed from the command line; streamable HTTP on the
gateway: the API key's user, put on the request by :mod:`mindgate.gateway._mcp_http`). :func:`run_stdio`
is ``mindgate mcp``.

A tool failure the model can correct is a result with ``isError: true`` and the message; an unknown tool
name is a JSON-RPC invalid-params error, as the MCP specification asks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from mindgate import __version__
from mindgate.mcp._tools import MemoryTools, ScopeArgs, ToolFailure, ToolSpec

log = logging.getLogger("mindgate.mcp")

ScopeOf = Callable[[ServerRequestContext[Any]], ScopeArgs]

INSTRUCTIONS = ("Long-term memory about the user. Call search_memory before answering questions about the "
                "user; call add_memory with one short fact when you learn something worth keeping.")


def tool_definition(spec: ToolSpec) -> types.Tool:
    """The MCP ``Tool`` for a spec (schema, description and annotations as published)."""
    notes = spec.annotations
    return types.Tool(name=spec.name, description=spec.description, input_schema=spec.input_schema,
                      annotations=types.ToolAnnotations(title=notes.title, read_only_hint=notes.read_only,
                                                        destructive_hint=notes.destructive,
                                                        idempotent_hint=notes.idempotent, open_world_hint=False))


def tool_result(payload: Any) -> types.CallToolResult:
    """A successful call: the JSON as text (what models read) and as structured content."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    structured = payload if isinstance(payload, dict) else {"result": payload}
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=structured)


def tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def memory_server(tools: MemoryTools, scope_of: ScopeOf) -> Server[Any]:
    """An MCP server exposing ``tools``; every call acts for ``scope_of(request context)``."""
    definitions = [tool_definition(spec) for spec in tools.specs.values()]

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=definitions)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if tools.get(params.name) is None:
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"unknown tool {params.name!r}; tools: {', '.join(tools.specs)}")
        try:
            return tool_result(await tools.call(params.name, params.arguments, scope_of(ctx)))
        except ToolFailure as exc:
            log.info("tool %s failed: %s", params.name, exc)
            return tool_error(str(exc))

    def input_schema(name: str) -> dict[str, Any] | None:
        spec = tools.get(name)
        return spec.input_schema if spec is not None else None

    return Server("mindgate-memory", version=__version__, title="mindgate memory", instructions=INSTRUCTIONS,
                  get_tool_input_schema=input_schema, on_list_tools=list_tools, on_call_tool=call_tool)


async def run_stdio(tools: MemoryTools, scope: ScopeArgs) -> None:
    """Serve ``tools`` for one fixed ``scope`` on stdin/stdout until the host closes the pipe."""
    server = memory_server(tools, lambda ctx: scope)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
