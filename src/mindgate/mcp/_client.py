"""The configured tool servers (``mcp_servers``), reached with the official ``mcp`` client SDK.

:class:`ToolServers` starts a server on first use (a stdio ``command`` as a child process with a minimal
environment, or a streamable-HTTP ``url``), lists its tools once, keeps the connection, and calls tools
with the server's per-call timeout. Each connection lives in one task of its own (the SDK's transports
are task-scoped); requests only send over it.

Failure containment: a call that times out, a server that crashes, or one that cannot be started ends
*that* call (or that server's offer) with a :class:`ToolServerError`; a dead connection is started again
on the next use. Servers never get to call back into the gateway's models: no sampling or elicitation
handler is installed. Only servers named in the configuration exist here; nothing a request says can
start another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED, CallToolResult

from mindgate.config import McpServerConfig
from mindgate.errors import MindgateError, ToolServerError

log = logging.getLogger("mindgate.mcp._client")


@dataclass(frozen=True)
class RemoteTool:
    """A tool a configured server lists (and its allowlist lets through)."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolOutput:
    """What a tool call gave back, as the text a model reads."""

    text: str
    is_error: bool
    truncated: bool = False


def output_text(result: CallToolResult) -> str:
    """The text of a tool result: its text blocks; other blocks named, not inlined; else the structured JSON."""
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'non-text')} content omitted]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(parts)


def capped(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters with a note saying how much was cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}\n[output truncated: {len(text) - limit} more characters]", True


class _Connection:
    """One server's connection, owned by a task that enters the SDK client and holds it open."""

    def __init__(self, name: str, config: McpServerConfig) -> None:
        self.name = name
        self.config = config
        self.client: Client | None = None
        self.tools: dict[str, RemoteTool] = {}
        self.failure: BaseException | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.client is not None and self._task is not None and not self._task.done()

    def _target(self) -> Any:
        cfg = self.config
        if cfg.command is not None:
            return StdioServerParameters(command=cfg.command, args=cfg.args, env=cfg.env or None, cwd=cfg.cwd)
        assert cfg.url is not None
        http = httpx2.AsyncClient(headers=cfg.headers, timeout=httpx2.Timeout(cfg.timeout,
                                                                                 connect=cfg.connect_timeout))
        return streamable_http_client(cfg.url, http_client=http)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._own(), name=f"mcp-server-{self.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.connect_timeout)
        except TimeoutError:
            await self.stop()
            raise ToolServerError(f"MCP server {self.name!r} did not start within {self.config.connect_timeout:g}s",
                                  hint="check its command/url, or raise mcp_servers.<name>.connect_timeout") from None
        if self.client is None:
            reason = self.failure
            raise ToolServerError(f"MCP server {self.name!r} could not be started: {_describe(reason)}",
                                  hint=self._hint()) from None

    def _hint(self) -> str:
        if self.config.command is not None:
            return f"run `{' '.join([self.config.command, *self.config.args])}` by hand to see why"
        return f"check that {self.config.url} is an MCP streamable-HTTP endpoint and reachable"

    async def _own(self) -> None:
        try:
            async with Client(self._target(), read_timeout_seconds=self.config.timeout) as client:
                listing = await client.list_tools()
                allowed = set(self.config.tools) if self.config.tools is not None else None
                self.tools = {t.name: RemoteTool(self.name, t.name, t.description or "", dict(t.input_schema))
                              for t in listing.tools if allowed is None or t.name in allowed}
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # the task's end is the connection's end, whatever ended it
            self.failure = exc
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %r stopped: %s", self.name, _describe(exc))
        finally:
            self.client = None
            self._ready.set()

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        client = self.client
        if client is None:
            raise ToolServerError(f"MCP server {self.name!r} is not connected")
        return await client.call_tool(tool, dict(arguments))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason given"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class ToolServers:
    """The configured tool servers, started on first use and kept; see the module docstring."""

    def __init__(self, configs: Mapping[str, McpServerConfig]) -> None:
        self.configs = dict(configs)
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _connection(self, name: str) -> _Connection:
        config = self.configs.get(name)
        if config is None:
            raise ToolServerError(f"MCP server {name!r} is not configured",
                                  hint=f"configured servers: {', '.join(sorted(self.configs)) or 'none'}")
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            current = self._connections.get(name)
            if current is not None and current.alive:
                return current
            if current is not None:
                await current.stop()
            connection = _Connection(name, config)
            await connection.start()
            self._connections[name] = connection
            return connection

    async def tools(self, server: str) -> list[RemoteTool]:
        """The tools ``server`` offers (after its allowlist); starts it when needed."""
        return list((await self._connection(server)).tools.values())

    async def call(self, server: str, tool: str, arguments: Mapping[str, Any]) -> ToolOutput:
        """Call ``tool`` on ``server`` within its timeout; the output is size-capped.

        The server's own failure (``isError``) is an output with ``is_error``; a timeout, a crash or a
        server that cannot be reached is a :class:`ToolServerError`."""
        config = self.configs[server]
        connection = await self._connection(server)
        try:
            result = await asyncio.wait_for(connection.call(tool, arguments), config.timeout)
        except TimeoutError:
            raise ToolServerError(f"tool {server}.{tool} did not answer within {config.timeout:g}s",
                                  hint=f"raise mcp_servers.{server}.timeout if it is slow") from None
        except MindgateError:
            raise
        except Exception as exc:
            if not isinstance(exc, MCPError) or exc.code == CONNECTION_CLOSED:
                await self._drop(server, connection)  # the next use starts it again
            raise ToolServerError(f"tool {server}.{tool} failed: {_describe(exc)}") from None
        text, truncated = capped(output_text(result), config.max_output_chars)
        return ToolOutput(text, bool(result.is_error), truncated)

    async def _drop(self, name: str, connection: _Connection) -> None:
        async with self._locks[name]:
            if self._connections.get(name) is connection:
                del self._connections[name]
        await connection.stop()

    async def aclose(self) -> None:
        """Stop every server (child processes are ended by the SDK's stdio transport)."""
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.stop() for c in connections), return_exceptions=True)


async def list_all(servers: ToolServers, names: Sequence[str]) -> tuple[list[RemoteTool], dict[str, str]]:
    """The tools of several servers, listed concurrently; servers that fail are reported, not raised."""
    results = await asyncio.gather(*(servers.tools(name) for name in names), return_exceptions=True)
    tools: list[RemoteTool] = []
    failures: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            failures[name] = str(result)
        else:
            tools.extend(result)
    return tools, failures
