"""``mindgate chat``: an interactive, streaming chat with long-term memory, over the Python API (no HTTP).

Each turn retrieves the user's relevant memories into the prompt (the same code as the gateway's
memory-augmented chat), streams the answer, and remembers the turn in the background while the user
types the next message; leaving the chat waits for the pending memory writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from rich.console import Console

from mindgate.config import MemorySettings
from mindgate.gateway.memory_chat import ChatScope, inject_memories, new_turn
from mindgate.memory.memory import AsyncMemory
from mindgate.providers.base import ChatModel

log = logging.getLogger("mindgate.chat")

EXIT_COMMANDS = {"/exit", "/quit", "/bye"}
HELP = "Type a message; /memories lists what is remembered about you; /exit (or Ctrl-D) leaves."


class ChatSession:
    """One conversation: history, memory retrieval before each turn, memory writes after it."""

    def __init__(self, chat: ChatModel, memory: AsyncMemory | None, scope: ChatScope | None,
                 settings: MemorySettings, *, system: str | None = None, max_messages: int = 20,
                 options: dict[str, Any] | None = None) -> None:
        self.chat = chat
        self.memory = memory
        self.scope = scope
        self.settings = settings
        self.system = system
        self.max_messages = max_messages
        self.options = dict(options or {})
        self.history: list[dict[str, Any]] = []
        self.pending: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.remembered = 0
        self.events: Counter[str] = Counter()

    def _prompt(self) -> list[dict[str, Any]]:
        recent = self.history[-self.max_messages:]
        return ([{"role": "system", "content": self.system}] if self.system else []) + recent

    async def turn(self, text: str) -> AsyncIterator[str]:
        """Send ``text``; yield the answer as it streams; then remember the turn in the background."""
        self.history.append({"role": "user", "content": text})
        messages = self._prompt()
        if self.memory is not None and self.scope is not None:
            messages, _ = await inject_memories(self.memory, messages, self.scope, self.settings)
        parts: list[str] = []
        async for chunk in self.chat.astream(messages, **self.options):
            if chunk.content:
                parts.append(chunk.content)
                yield chunk.content
        answer = "".join(parts)
        self.history.append({"role": "assistant", "content": answer})
        if self.memory is not None and self.scope is not None:
            task = asyncio.get_running_loop().create_task(self._remember(new_turn([self.history[-2]], answer)))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _remember(self, turn: list[dict[str, Any]]) -> None:
        assert self.memory is not None and self.scope is not None
        try:
            result = await self.memory.add(turn, **self.scope.kwargs(), infer=True)
        except Exception as exc:  # reported, and counted for the goodbye message
            self.failures += 1
            log.error("remembering a turn failed: %s", exc)
            return
        self.remembered += 1
        self.events.update(item["event"] for item in result["results"])

    def summary(self) -> str:
        """What happened to memory in this session, e.g. ``memory: 2 turns remembered (1 added, ...)``."""
        changes = ", ".join(f"{self.events[e]} {word}" for e, word in (("ADD", "added"), ("UPDATE", "updated"),
                                                                        ("DELETE", "deleted")) if self.events[e])
        text = f"memory: {self.remembered} turn(s) remembered ({changes or 'nothing new'})"
        if self.failures:
            text += f"; {self.failures} turn(s) could not be remembered (see the log above)"
        return text

    async def memories(self) -> list[str]:
        if self.memory is None or self.scope is None:
            return []
        result = await self.memory.get_all(**self.scope.kwargs(), limit=50)
        return [str(item["memory"]) for item in result["results"]]

    async def finish(self) -> None:
        """Wait for the memory writes still running."""
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)


async def run_interactive(session: ChatSession, console: Console,
                          read: Callable[[str], str] = input) -> None:
    """The read-stream-print loop; ``read`` is blocking (``input``) and runs in a worker thread, so
    memory writes go on while the user types."""
    console.print(f"[dim]{HELP}[/dim]")
    try:
        while True:
            try:
                text = (await asyncio.to_thread(read, "you> ")).strip()
            except EOFError:
                console.print()
                break
            if not text:
                continue
            if text in EXIT_COMMANDS:
                break
            if text == "/memories":
                remembered = await session.memories()
                console.print("\n".join(f"- {m}" for m in remembered) or "[dim]nothing remembered yet[/dim]")
                continue
            console.print("[bold green]assistant>[/bold green] ", end="")
            async for piece in session.turn(text):
                console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
            console.print()
    finally:
        if session.pending:
            with console.status("saving memories...", spinner="dots"):
                await session.finish()
        if session.memory is not None and (session.remembered or session.failures):
            console.print(session.summary(), style="red" if session.failures else "dim", markup=False)
