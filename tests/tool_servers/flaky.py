"""A real MCP server (official SDK, stdio) whose tools misbehave on purpose, for the gateway's failure
containment tests: ``echo`` answers, ``hang`` never does, ``crash`` kills the process, ``big`` returns far
more text than any cap, ``fail`` is a tool error. Run: ``python tests/tool_servers/flaky.py``."""

from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("flaky")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged, with this process's id."""
    return f"echo {text} (pid {os.getpid()})"


@server.tool()
async def hang(seconds: float = 3600) -> str:
    """Sleep for a long time."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool()
def crash() -> str:
    """Kill this server process without answering."""
    os._exit(3)


@server.tool()
def big(chars: int = 200_000) -> str:
    """Return a very long text."""
    return "x" * chars


@server.tool()
def fail() -> str:
    """Always fail with a tool error."""
    raise ToolError("the flaky tool failed on purpose")


if __name__ == "__main__":
    server.run("stdio")
