"""The fit stage through the router: each policy on a 100-turn history, what the upstream receives, the
summary cache, memory recall, and admission by fitted size (400 context_length_exceeded, never a 503).

Upstream: a scripted loopback server (not a vendor fake: the model's words do not matter here, what it
receives does; it records every request); memories on the real MiniLM and SQLite. The same policies with the
real llama.cpp server and the in-process engine, through the gateway: test_context_gateway.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from context_helpers import FACT, QUESTION, check_tool_pairs, history, turn
from mindgate.config import ContextSettings
from mindgate.context import ContextService, requested_policy
from mindgate.context._summary import SUMMARY_PREFIX
from mindgate.errors import ContextOverflowError, InvalidRequestError, RoutingError
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.routing import Router, Target
from routing_helpers import ScriptedServer, chat_model, closed_port_url

Message = dict[str, Any]
WINDOW = 1024


def ask(conversation: list[Message], question: str = QUESTION) -> list[Message]:
    return [*conversation, {"role": "user", "content": question}]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer(reply="ok").start()
    yield server
    server.stop()


def received(server: ScriptedServer) -> list[list[Message]]:
    return [r.json["messages"] for r in server.requests_to("/v1/chat/completions")]


def one_target(url: str, window: int = WINDOW) -> Router:
    return Router([Target(chat_model(f"{url}/v1"), name="small", context_length=window)], name="test")


# -- policies on a scripted upstream -------------------------------------------------------------------------


def test_truncate_sends_system_latest_turn_and_whole_tool_rounds(scripted: ScriptedServer) -> None:
    router = one_target(scripted.base_url)
    fitter = ContextService(ContextSettings(policy="truncate")).fitter(serving=router)
    conversation = ask(history(100))
    asyncio.run(router.acomplete(conversation, fit=fitter, max_tokens=16))
    [sent] = received(scripted)
    assert sent[0] == conversation[0] and sent[-1] == conversation[-1]
    assert sent[1]["role"] == "user" and sent == [conversation[0], *conversation[len(conversation) - len(sent) + 1:]]
    check_tool_pairs(sent)
    report = fitter.report
    assert report is not None and report.policy == "truncate"
    assert not report.exact  # the scripted server has no tokenizer: estimated
    assert report.kept == len(sent) - 1 and report.dropped == len(conversation) - len(sent)
    assert report.tokens <= WINDOW - 16 - 64
    assert report.header().startswith(f"policy=truncate kept={report.kept} dropped={report.dropped} "
                                      f"tokens={report.tokens}/1024 fit_ms=")


def test_error_policy_is_context_length_exceeded_naming_needed_and_available(scripted: ScriptedServer) -> None:
    router = one_target(scripted.base_url)
    fitter = ContextService(ContextSettings(policy="error")).fitter(serving=router)
    with pytest.raises(ContextOverflowError) as caught:
        asyncio.run(router.acomplete(ask(history(100)), fit=fitter, max_tokens=16))
    error = caught.value
    assert error.http_status == 400 and error.code == "context_length_exceeded"
    assert error.available == WINDOW and error.needed is not None and error.needed > WINDOW
    assert f"needs {error.needed} tokens" in str(error) and "context of 1024 tokens" in str(error)
    assert received(scripted) == []  # refused without a call


def test_a_context_skip_with_every_other_target_down_is_a_400_not_a_503(scripted: ScriptedServer) -> None:
    router = Router([Target(chat_model(closed_port_url(), connect_timeout=0.3), name="down", breaker_failures=1),
                     Target(chat_model(f"{scripted.base_url}/v1"), name="small", context_length=WINDOW)],
                    name="auto-like")
    service = ContextService(ContextSettings(policy="error"))
    with pytest.raises(ContextOverflowError, match="fits no target") as caught:
        asyncio.run(router.acomplete(ask(history(100)), fit=service.fitter(serving=router), max_tokens=16))
    assert "down: unavailable" in str(caught.value) and caught.value.http_status == 400
    # a target that fails for another reason (HTTP 500) after taking the request is an outage: 503
    failing = Router([Target(chat_model(closed_port_url()), name="x")], name="one")
    with pytest.raises(RoutingError):
        asyncio.run(failing.acomplete([{"role": "user", "content": "hi"}], max_tokens=4))
    # with truncate the same chain answers from the small target
    asyncio.run(router.acomplete(ask(history(100)), fit=ContextService(ContextSettings(policy="truncate"))
                                 .fitter(serving=router), max_tokens=16))
    assert len(received(scripted)) == 1


def test_summarize_reuses_its_cut_and_survives_a_restart(scripted: ScriptedServer, tmp_path: Path) -> None:
    summariser_server = ScriptedServer(reply="The user is Zorblax; the dog is Biscuit.").start()
    try:
        router = one_target(scripted.base_url)
        store = SQLiteStore(tmp_path / "summaries.db")
        summariser = chat_model(f"{summariser_server.base_url}/v1")
        service = ContextService(ContextSettings(policy="summarize", summary_tokens=64), store=store,
                                 summarizer=summariser)
        conversation = history(40)  # already over the window
        turns = 0
        for i in range(41, 101):  # 60 consecutive turns, each sent with the whole history
            new = turn(i)
            fitter = service.fitter(serving=router, scope={"user_id": "zorblax"})
            asyncio.run(router.acomplete([*conversation, new[0]], fit=fitter, max_tokens=16))
            conversation += new
            turns += 1
            sent = received(scripted)[-1]
            assert SUMMARY_PREFIX in sent[0]["content"] and sent[1]["role"] == "user"
            check_tool_pairs(sent)
        calls = summariser_server.chat_requests
        # amortised: after a cut the kept turns fill half the room, so ~9 turns of this size pass between cuts
        assert 1 <= calls <= turns / 6
        assert service.summarizer_calls() == calls

        restarted = ContextService(ContextSettings(policy="summarize", summary_tokens=64),
                                   store=SQLiteStore(tmp_path / "summaries.db"), summarizer=summariser)
        fitter = restarted.fitter(serving=router, scope={"user_id": "zorblax"})
        asyncio.run(router.acomplete(ask(conversation), fit=fitter, max_tokens=16))
        assert summariser_server.chat_requests == calls  # the stored summary is reused after a restart
        assert fitter.report is not None and fitter.report.summarized > 0
    finally:
        summariser_server.stop()


def test_memory_policy_writes_old_turns_and_recalls_the_relevant_one(scripted: ScriptedServer,
                                                                     memory_factory: Any) -> None:
    router = one_target(scripted.base_url)
    memory = memory_factory()
    service = ContextService(ContextSettings(policy="memory"), store=memory.store, memory=memory)
    fitter = service.fitter(serving=router, scope={"user_id": "zorblax"})
    asyncio.run(router.acomplete(ask(history(100)), fit=fitter, max_tokens=16))
    [sent] = received(scripted)
    assert FACT in sent[0]["content"]  # turn 1's fact reached the prompt of turn 101, recalled from memory
    assert sum(m["content"] == FACT for m in sent) == 0  # ... not as the old message itself
    report = fitter.report
    assert report is not None and report.policy == "memory" and report.remembered > 0 and report.recalled >= 1
    stored = asyncio.run(memory.get_all(user_id="zorblax", limit=500))["results"]
    assert any(r["memory"] == FACT and r["metadata"]["source"] == "context" for r in stored)
    # without a user there is nobody to remember for: the request is summarised instead (the chain's loopback
    # target is the default summariser), not refused
    anonymous = service.fitter(serving=router)
    asyncio.run(router.acomplete(ask(history(100)), fit=anonymous, max_tokens=16))
    assert anonymous.report is not None and anonymous.report.policy == "summarize"


def test_policy_choice_precedence_and_bad_names() -> None:
    settings = ContextSettings(policy="truncate", routes={"coding": "error"}, models={"big-model": "summarize"})
    service = ContextService(settings)
    assert service.policy() == "truncate"
    assert service.policy(route="coding") == "error"
    assert service.policy(route="coding", model="big-model") == "truncate"  # summarize without a summariser
    assert service.policy(route="coding", requested="memory") == "memory"
    assert requested_policy("Truncate", None) == "truncate"
    assert requested_policy("truncate", "error") == "error"  # the body's mindgate.context wins over the header
    assert requested_policy(" ", None) is None
    with pytest.raises(InvalidRequestError, match="unknown context policy 'shrink'"):
        requested_policy("shrink", None)


def test_mindgate_chat_sends_the_whole_history_fitted(scripted: ScriptedServer) -> None:
    """``mindgate chat`` keeps the whole conversation and lets the pipeline's fit stage trim it (``--context``)."""
    from mindgate._cli_chat import ChatSession
    from mindgate.config import MindgateConfig
    from mindgate.pipeline._build import pipeline_for
    from mindgate.routing._targets import ChatTargets

    router = one_target(scripted.base_url, window=512)
    pipeline = pipeline_for(MindgateConfig.from_dict({}, env=False), ChatTargets(router, default_name="test"), None)
    session = ChatSession(pipeline, "test", None, system="Be brief.", context="truncate")

    async def chat() -> None:
        for i in range(60):
            async for _ in session.turn(f"Message {i}: tell me something about the number {i}."):
                pass

    asyncio.run(chat())
    assert len(session.history) == 120  # nothing forgotten client-side
    sent = received(scripted)[-1]
    assert sent[0]["content"] == "Be brief." and sent[-1]["content"].startswith("Message 59:")
    assert len(sent) < 60 and session.last_context is not None and "policy=truncate" in session.last_context
