"""The request pipeline over the Python API (no HTTP), on the real llama.cpp server behind a recording
proxy and real MiniLM + SQLite memory: the pluggable fit and call stages see what they should and what
they return is what the upstream receives; usage is reported once; a streamed turn is remembered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fixtures_gateway import RecordingProxy, llama_chat
from mindgate.memory._memory import AsyncMemory
from mindgate.pipeline import INJECT_HEADER, ChatRequest, ChatScope, DirectCall, Fitted, MemoryWriter, Pipeline
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message
from mindgate.routing._targets import ChatTargets


class LastTurnOnly:
    """A context policy: keeps the system message(s) and the last user message."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[Message], ChatModel, dict[str, Any]]] = []

    async def fit(self, messages: list[Message], model: ChatModel, request: ChatRequest) -> Fitted:
        self.seen.append((messages, model, request.stage_options.get("fit", {})))
        return Fitted([m for m in messages if m["role"] == "system"] + [messages[-1]], model)


class CountingCall(DirectCall):
    """A call stage that wraps the direct call (where a server-side tool loop would run)."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
                       request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return await super().complete(model, messages, options, request)

    def stream(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
               request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        return super().stream(model, messages, options, request)


def test_fit_and_call_stages_plug_in_and_usage_is_reported_once(
        llama_proxy: RecordingProxy, memory_factory: Callable[..., AsyncMemory]) -> None:
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    memory = memory_factory(chat)
    fitter, caller = LastTurnOnly(), CountingCall()
    pipeline = Pipeline(ChatTargets(chat), memory=memory, settings=memory.settings, writer=MemoryWriter(memory),
                        fitter=fitter, caller=caller)
    usage: list[tuple[str, int, int]] = []
    long_history: list[Message] = [{"role": "system", "content": "Be terse."}]
    for i in range(6):
        long_history += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    long_history.append({"role": "user", "content": "Where do I live?"})

    async def run() -> tuple[Any, Any]:
        await memory.add("I live in Tromso.", user_id="ola", infer=False)
        request = ChatRequest("smollm2", long_history, {"max_tokens": 4, "temperature": 0}, ChatScope("ola"),
                              stage_options={"fit": {"policy": "last-turn"}},
                              on_usage=lambda *counts: usage.append(counts))
        result = await pipeline.complete(await pipeline.prepare(request))
        streamed = await pipeline.stream(await pipeline.prepare(
            ChatRequest("smollm2", [{"role": "user", "content": "I am a whale biologist."}],
                        {"max_tokens": 4, "temperature": 0}, ChatScope("ola"),
                        on_usage=lambda *counts: usage.append(counts))))
        try:
            pieces = [chunk.content async for chunk in streamed if chunk.content]
        finally:
            await streamed.aclose()
            await streamed.aclose()  # idempotent: usage reported once
        assert pipeline.writer is not None
        await pipeline.writer.join()
        return result, (streamed, pieces)

    result, (streamed, pieces) = asyncio.run(run())
    # the fit stage saw the recalled memories (after stage 3) and the chain the request was routed to
    fitted_input, routed, options = fitter.seen[0]
    assert INJECT_HEADER in fitted_input[0]["content"] and "Tromso" in fitted_input[0]["content"]
    assert routed is chat and options == {"policy": "last-turn"}
    # ... and what it returned is what the upstream received
    sent = llama_proxy.chat_requests()[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[1]["content"] == "Where do I live?"
    assert caller.calls == 2 and result.memories and result.response.content is not None
    # usage: once per request, the upstream's counts for the non-streamed answer
    assert len(usage) == 2 and usage[0][1] == result.usage.prompt_tokens > 0 and not result.estimated
    assert streamed.finished and "".join(pieces) == streamed.text and usage[1][2] == streamed.usage.completion_tokens
    # the streamed turn went to the background writer (counted ok or failed, never lost silently)
    assert pipeline.writer is not None and pipeline.writer.counts["queued"] == 1
    assert pipeline.writer.counts["ok"] + pipeline.writer.counts["failed"] == 1
