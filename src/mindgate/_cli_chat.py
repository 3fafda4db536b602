"""``mindgate chat``: an interactive, streaming chat with long-term memory, over the request pipeline (no
HTTP).

Each turn goes through the same :class:`~mindgate.pipeline._core.Pipeline` as the gateway's chat: the
user's relevant memories join the prompt, the whole conversation is fitted to the serving model's window by
the context policy (``--context``; ``/context`` shows what the last turn's fit did), the answer streams,
and the turn is remembered in the background while the user types the next message; leaving the chat waits
for the pending memory writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from rich.console import Console

from mindgate.pipeline._core import ChatRequest, Pipeline
from mindgate.pipeline._scope import ChatScope

log = logging.getLogger("mindgate.chat")

EXIT_COMMANDS = {"/exit", "/quit", "/bye"}
HELP = ("Type a message; /memories lists what is remembered about you; /context shows how the last turn was "
        "fitted; /exit (or Ctrl-D) leaves.")


class ChatSession:
    """One conversation: the whole history goes through the pipeline each turn, whose fit stage fits it to
    the model's window under ``context`` (a policy name; None: the config's)."""

    def __init__(self, pipeline: Pipeline, model: str, scope: ChatScope | None, *, system: str | None = None,
                 context: str | None = None, options: dict[str, Any] | None = None) -> None:
        self.pipeline = pipeline
        self.model = model
        self.scope = scope if pipeline.remembers else None
        self.system = system
        self.stage_options: dict[str, Any] = {"fit": context} if context else {}
        self.options = dict(options or {})
        self.history: list[dict[str, Any]] = []
        self.last_context: str | None = None

    def _prompt(self) -> list[dict[str, Any]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    async def turn(self, text: str) -> AsyncIterator[str]:
        """Send ``text``; yield the answer as it streams (the pipeline remembers the turn afterwards)."""
        self.history.append({"role": "user", "content": text})
        request = ChatRequest(self.model, self._prompt(), self.options, self.scope,
                              stage_options=dict(self.stage_options))
        stream = await self.pipeline.stream(await self.pipeline.prepare(request))
        self.last_context = stream.context
        try:
            async for chunk in stream:
                if chunk.content:
                    yield chunk.content
        finally:
            await stream.aclose()
        self.history.append({"role": "assistant", "content": stream.text})

    @property
    def pending(self) -> int:
        writer = self.pipeline.writer
        return writer.pending if writer is not None else 0

    @property
    def remembered(self) -> int:
        writer = self.pipeline.writer
        return writer.counts["ok"] if writer is not None else 0

    @property
    def failures(self) -> int:
        writer = self.pipeline.writer
        return writer.counts["failed"] + writer.counts["dropped"] if writer is not None else 0

    def summary(self) -> str:
        """What happened to memory in this session, e.g. ``memory: 2 turns remembered (1 added, ...)``."""
        events = self.pipeline.writer.events if self.pipeline.writer is not None else {}
        changes = ", ".join(f"{events[e]} {word}" for e, word in (("ADD", "added"), ("UPDATE", "updated"),
                                                                   ("DELETE", "deleted")) if events.get(e))
        text = f"memory: {self.remembered} turn(s) remembered ({changes or 'nothing new'})"
        if self.failures:
            text += f"; {self.failures} turn(s) could not be remembered (see the log above)"
        return text

    async def memories(self) -> list[str]:
        if self.pipeline.memory is None or self.scope is None:
            return []
        result = await self.pipeline.memory.get_all(**self.scope.kwargs(), limit=50)
        return [str(item["memory"]) for item in result["results"]]

    async def finish(self) -> None:
        """Wait for the memory writes still queued or running."""
        if self.pipeline.writer is not None:
            await self.pipeline.writer.join()


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
            if text == "/context":
                console.print(session.last_context or "[dim]nothing fitted yet[/dim]", markup=False)
                continue
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
        if session.scope is not None and (session.remembered or session.failures):
            console.print(session.summary(), style="red" if session.failures else "dim", markup=False)
