"""``mindgate mcp``: memory as an MCP server on stdin/stdout, for MCP hosts' config files.

The scope comes from ``--user`` / ``--agent`` / ``--run``, else from the config's ``mcp`` section
(``MINDGATE_MCP__USER_ID`` works too); with none of them the command refuses to start and says so.
stdout carries only the protocol: logs go to stderr.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from mindgate.config import MindgateConfig
from mindgate.errors import ScopeError
from mindgate.memory._commands import AgentOpt, ConfigOpt, RunOpt, UserOpt

READ_ONLY_TOOLS = frozenset({"search_memory", "list_memories", "get_memory", "memory_history"})


def mcp_command(user: UserOpt = None, agent: AgentOpt = None, run: RunOpt = None, config: ConfigOpt = None,
                read_only: Annotated[bool, typer.Option("--read-only", help="offer only the tools that do "
                                                        "not change memory")] = False) -> None:
    """Serve long-term memory as an MCP server on stdio (for LM Studio, Claude Desktop, Codex, ...)."""
    from mindgate.mcp._server import run_stdio
    from mindgate.mcp._tools import MemoryTools
    from mindgate.memory._memory import AsyncMemory

    cfg = MindgateConfig.load(config)
    settings = cfg.mcp
    ids = {"user_id": user or settings.user_id, "agent_id": agent or settings.agent_id,
           "run_id": run or settings.run_id}
    scope = {k: v for k, v in ids.items() if v}
    if not scope:
        raise ScopeError("mindgate mcp needs to know whose memories to serve",
                         hint="pass --user NAME (or --agent / --run), or set mcp.user_id in the config")
    memory = AsyncMemory.from_config(cfg)
    names = READ_ONLY_TOOLS if read_only or settings.read_only else None

    async def main() -> None:
        try:
            await run_stdio(MemoryTools(memory, names), scope)
        finally:
            await memory.close()

    asyncio.run(main())
