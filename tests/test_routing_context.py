"""Context-window fallback: a request goes to the first target whose context holds it, without a call to
the ones that cannot; a request that fits nowhere is a ContextOverflowError with sizes."""

from __future__ import annotations

import functools
import gzip
import json
from typing import Any

import pytest

from fixtures_servers import LlamaServer
from mindgate.errors import ContextOverflowError
from mindgate.routing import Router, Target
from routing_helpers import ScriptedServer, chat_model
from shared_data import LONGMEMEVAL_ORACLE, shared_file

LONGMEMEVAL = shared_file(LONGMEMEVAL_ORACLE)


@functools.cache
def _questions() -> list[dict[str, Any]]:
    with gzip.open(LONGMEMEVAL) as file:
        return list(json.loads(file.read()))


def real_text(chars: int) -> str:
    """Real chat text (LongMemEval assistant turns) of about ``chars`` characters."""
    out = ""
    for question in _questions():
        for session in question["haystack_sessions"]:
            for turn in session:
                if turn["role"] == "assistant":
                    out += turn["content"] + "\n"
                    if len(out) >= chars:
                        return out[:chars]
    raise AssertionError("not enough text")


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"{text}\n\nSummarise the above in one word."}]


def row(router: Router, name: str) -> dict[str, Any]:
    return next(r for r in router.status() if r["name"] == name)


@pytest.fixture
def two_servers() -> Any:
    small, big = ScriptedServer(reply="small").start(), ScriptedServer(reply="big").start()
    yield small, big
    small.stop()
    big.stop()


def test_request_too_long_for_the_first_target_goes_to_the_next_without_a_call(two_servers: Any) -> None:
    small, big = two_servers
    router = Router([Target(chat_model(f"{small.base_url}/v1"), name="small", context_length=300),
                     Target(chat_model(f"{big.base_url}/v1"), name="big", context_length=8192)])
    assert router.complete(ask(real_text(3000)), max_tokens=16).content == "big"
    assert small.chat_requests == 0 and big.chat_requests == 1
    assert row(router, "small")["requests"] == 0

    assert router.complete(ask("Hello"), max_tokens=16).content == "small"  # a short one still goes first
    assert small.chat_requests == 1


def test_max_tokens_counts_against_the_context(two_servers: Any) -> None:
    small, big = two_servers
    router = Router([Target(chat_model(f"{small.base_url}/v1"), name="small", context_length=300),
                     Target(chat_model(f"{big.base_url}/v1"), name="big", context_length=8192)])
    assert router.complete(ask("Hello"), max_tokens=290).content == "big"
    assert small.chat_requests == 0


def test_request_that_fits_nowhere_raises_context_overflow_with_sizes(two_servers: Any) -> None:
    small, big = two_servers
    router = Router([Target(chat_model(f"{small.base_url}/v1"), name="small", context_length=300),
                     Target(chat_model(f"{big.base_url}/v1"), name="big", context_length=2048)], name="main")
    with pytest.raises(ContextOverflowError) as caught:
        router.complete(ask(real_text(20000)), max_tokens=100)
    error = caught.value
    assert error.available == 2048 and error.needed is not None and error.needed > 2048
    text = str(error)
    assert "fits no target of chain 'main'" in text
    assert "small: the conversation needs" in text and "context of 300 tokens" in text
    assert "big: the conversation needs" in text and "context of 2048 tokens" in text
    assert "estimated" in text  # the scripted servers have no tokenizer endpoint
    assert small.chat_requests == 0 and big.chat_requests == 0
    assert error.to_openai()["error"]["code"] == "context_length_exceeded"


def test_near_the_limit_the_models_own_tokenizer_decides(llama_server: LlamaServer) -> None:
    spare = ScriptedServer(reply="spare").start()
    try:
        tight = chat_model(llama_server.base_url)
        router = Router([Target(tight, name="tight", context_length=300),
                         Target(chat_model(f"{spare.base_url}/v1"), name="spare")])
        fits = ask(real_text(700))  # ~170 tokens: over the byte bound, under the real count
        counted = tight.count_tokens(fits)
        assert counted is not None and counted + 16 <= 300 < len(str(fits))
        assert router.complete(fits, max_tokens=16).content != "spare"
        assert spare.chat_requests == 0 and row(router, "tight")["successes"] == 1

        too_long = ask(real_text(1600))
        assert (tight.count_tokens(too_long) or 0) + 16 > 300
        assert router.complete(too_long, max_tokens=16).content == "spare"
        assert row(router, "tight")["requests"] == 1  # skipped without a call
    finally:
        spare.stop()


def test_server_side_overflow_of_an_unsized_target_falls_back(llama_server_factory: type[LlamaServer],
                                                              llama_server: LlamaServer) -> None:
    small = llama_server_factory(n_ctx=256).start()
    router = Router([Target(chat_model(small.base_url), name="small"),  # context not declared: no pre-check
                     Target(chat_model(llama_server.base_url), name="big")])
    response = router.complete(ask(real_text(1400)), max_tokens=8)
    assert response.content is not None
    small_row = row(router, "small")
    assert small_row["errors"] == {"context_overflow": 1}
    assert small_row["state"] == "closed" and small_row["failures"] == 0  # not the server's fault
