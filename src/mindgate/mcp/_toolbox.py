"""The tools the gateway runs itself for one request: configured MCP servers' tools and, with
``memory.mode: tool``, ``search_memory`` over the request's own memory scope.

:func:`build_toolbox` picks them (the request's or route's servers, filtered by the API key's allowlists),
names them for the model (a tool's own name, or ``server__tool`` when two sources offer the same name or
the client already sends a tool of that name) and :meth:`Toolbox.run` executes one model tool call: the
arguments parsed, the tool run within its timeout, the output size-capped, and every failure turned into
an error result the model reads, never an exception that ends the request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mindgate.errors import MindgateError, PermissionDeniedError
from mindgate.mcp._client import RemoteTool, ToolOutput, ToolServers, capped, list_all
from mindgate.mcp._tools import MemoryTools, ScopeArgs, ToolFailure

Runner = Callable[[dict[str, Any]], Awaitable[ToolOutput]]
MEMORY_SOURCE = "memory"
_MEMORY_OUTPUT_CHARS = 16_000


@dataclass(frozen=True)
class OfferedTool:
    """A tool as the model sees it (``name``), where it comes from, and how to run it."""

    name: str
    source: str
    tool: str
    description: str
    parameters: dict[str, Any]
    run: Runner

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass
class ToolRecord:
    """One executed tool call, as shown in the response's ``mindgate.tool_calls``."""

    id: str
    name: str
    source: str
    tool: str
    arguments: str
    output: str
    is_error: bool
    duration_ms: float
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "server": self.source, "tool": self.tool,
               "arguments": self.arguments, "output": self.output, "is_error": self.is_error,
               "duration_ms": round(self.duration_ms, 3)}
        if self.truncated:
            out["truncated"] = True
        return out

    def message(self) -> dict[str, Any]:
        """The ``tool`` message that feeds the result back to the model."""
        return {"role": "tool", "tool_call_id": self.id, "content": f"Error: {self.output}" if self.is_error
                else self.output}


@dataclass
class Toolbox:
    """The gateway-run tools of one request, by the name the model sees."""

    tools: dict[str, OfferedTool] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def openai_tools(self) -> list[dict[str, Any]]:
        return [tool.openai() for tool in self.tools.values()]

    def owns(self, name: str) -> bool:
        return name in self.tools

    async def run(self, call: Mapping[str, Any], fallback_id: str) -> ToolRecord:
        """Execute one OpenAI-shaped tool call; any failure is an error record, not an exception."""
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        raw = function.get("arguments")
        arguments = raw if isinstance(raw, str) else json.dumps(raw if raw is not None else {})
        call_id = str(call.get("id") or fallback_id)
        started = time.perf_counter()
        tool = self.tools.get(name)
        if tool is None:
            return ToolRecord(call_id, name, "-", name, arguments, f"there is no tool named {name!r}; tools: "
                              f"{', '.join(self.tools)}", True, _ms(started))
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return ToolRecord(call_id, name, tool.source, tool.tool, arguments,
                              f"the arguments are not valid JSON ({exc}); send a JSON object", True, _ms(started))
        if not isinstance(parsed, dict):
            return ToolRecord(call_id, name, tool.source, tool.tool, arguments,
                              f"the arguments must be a JSON object, not {type(parsed).__name__}", True, _ms(started))
        try:
            output = await tool.run(parsed)
        except MindgateError as exc:
            output = ToolOutput(str(exc), True)
        return ToolRecord(call_id, name, tool.source, tool.tool, arguments, output.text, output.is_error,
                          _ms(started), output.truncated)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _remote_runner(servers: ToolServers, tool: RemoteTool) -> Runner:
    async def run(arguments: dict[str, Any]) -> ToolOutput:
        return await servers.call(tool.server, tool.name, arguments)
    return run


def _memory_runner(tools: MemoryTools, name: str, scope: ScopeArgs) -> Runner:
    async def run(arguments: dict[str, Any]) -> ToolOutput:
        try:
            payload = await tools.call(name, arguments, scope)
        except ToolFailure as exc:
            return ToolOutput(str(exc), True)
        text, truncated = capped(json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                                 _MEMORY_OUTPUT_CHARS)
        return ToolOutput(text, False, truncated)
    return run


def allowed_servers(requested: Iterable[str], key_servers: Sequence[str] | None, key_name: str | None) -> list[str]:
    """``requested`` in order without repeats, refusing any the API key may not use (a 403, not a silent drop)."""
    names = list(dict.fromkeys(requested))
    if key_servers is not None:
        refused = [n for n in names if n not in key_servers]
        if refused:
            raise PermissionDeniedError(f"API key {key_name!r} may not use MCP server(s) {', '.join(refused)}",
                                        hint=f"allowed: {', '.join(key_servers) or 'none'}")
    return names


def _key_allows(tool: RemoteTool, key_tools: Sequence[str] | None) -> bool:
    return key_tools is None or f"{tool.server}.{tool.name}" in key_tools


async def build_toolbox(servers: ToolServers | None, names: Sequence[str], *, key_tools: Sequence[str] | None = None,
                        memory: MemoryTools | None = None, memory_scope: ScopeArgs | None = None,
                        client_tools: Iterable[str] = ()) -> Toolbox:
    """The toolbox for a request: ``names`` (already checked against the key) and, when ``memory`` and a
    scope are given, ``search_memory`` for that scope. Servers that fail to start are left out and
    listed in ``unavailable``."""
    candidates: list[tuple[str, str, str, dict[str, Any], Runner]] = []
    unavailable: dict[str, str] = {}
    if servers is not None and names:
        remote, unavailable = await list_all(servers, names)
        candidates += [(t.server, t.name, t.description, t.input_schema, _remote_runner(servers, t))
                       for t in remote if _key_allows(t, key_tools)]
    if memory is not None and memory_scope:
        for spec in memory.specs.values():
            candidates.append((MEMORY_SOURCE, spec.name, spec.description, spec.input_schema,
                               _memory_runner(memory, spec.name, memory_scope)))
    taken = set(client_tools)
    counts: dict[str, int] = {}
    for _, tool, *_rest in candidates:
        counts[tool] = counts.get(tool, 0) + 1
    box = Toolbox(unavailable=unavailable)
    for source, tool, description, parameters, run in candidates:
        name = tool if counts[tool] == 1 and tool not in taken else f"{source}__{tool}"[:64]
        box.tools[name] = OfferedTool(name, source, tool, description, parameters, run)
    return box
