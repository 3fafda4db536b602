"""Token counting: the llama.cpp server's tokenizer, servers without one (remembered), and the calibrated
estimate measured against the real SmolLM2 tokenizer on real chat text."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import LMStudioFake
from fixtures_servers import LlamaServer
from mindgate._assets import default_gguf_path
from mindgate.context._tokens import DEFAULT_ESTIMATOR, TokenCounter, byte_bound
from mindgate.providers._base import chatml_prompt, message_text
from routing_helpers import ScriptedServer, chat_model, closed_port_url
from shared_data import LONGMEMEVAL_ORACLE, shared_file

LONGMEMEVAL = shared_file(LONGMEMEVAL_ORACLE)
CONVERSATION = [{"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "I moved to Lisbon in March and I'm learning Portuguese."},
                {"role": "assistant", "content": "Boa sorte! How are the lessons going so far?"},
                {"role": "user", "content": "Slowly: 3 classes a week, 90 minutes each."}]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(default_gguf_path()), vocab_only=True, verbose=False)


def real_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=True))


@pytest.fixture(scope="module")
def sessions() -> list[list[dict[str, str]]]:
    with gzip.open(LONGMEMEVAL) as file:
        questions = json.loads(file.read())
    out = [[{"role": t["role"], "content": t["content"]} for t in session]
           for question in questions[::5] for session in question["haystack_sessions"]]
    return out[:80]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


def test_llama_server_count_equals_the_prompt_tokens_it_bills(llama_server: LlamaServer) -> None:
    model = chat_model(llama_server.base_url)
    counted = model.count_tokens(CONVERSATION)
    billed = model.complete(CONVERSATION, max_tokens=1).usage.prompt_tokens
    assert counted == billed
    result = asyncio.run(TokenCounter().count(CONVERSATION, model))
    assert result.exact and result.tokens == billed


def test_server_without_tokenizer_is_estimated_and_remembered(scripted: ScriptedServer) -> None:
    model = chat_model(f"{scripted.base_url}/v1")
    assert model.count_tokens(CONVERSATION) is None
    assert model.count_tokens(CONVERSATION) is None
    assert len(scripted.requests_to("/extras/tokenize")) == 1  # HTTP 404 once, then remembered
    counter = TokenCounter()
    result = asyncio.run(counter.count(CONVERSATION, model))
    assert not result.exact and result.tokens == DEFAULT_ESTIMATOR.prompt_tokens(CONVERSATION)
    assert counter.has_tokenizer(model) is False


def test_lmstudio_unexpected_endpoint_body_means_no_tokenizer(lmstudio_fake: LMStudioFake) -> None:
    model = chat_model(f"{lmstudio_fake.base_url}/v1", "qwen2.5-7b-instruct")
    assert model.count_tokens(CONVERSATION) is None  # HTTP 200 {"error": "Unexpected endpoint ..."}
    assert model.count_tokens(CONVERSATION) is None
    assert len(lmstudio_fake.requests_to("/extras/tokenize")) == 1


def test_unreachable_server_is_estimated_but_asked_again_later() -> None:
    counter = TokenCounter()
    model = chat_model(closed_port_url())
    result = asyncio.run(counter.count(CONVERSATION, model))
    assert not result.exact and result.tokens > 0
    assert counter.has_tokenizer(model) is None  # down is not "has no tokenizer"


def test_estimate_error_on_real_chat_turns(tokenizer: Any, sessions: list[list[dict[str, str]]]) -> None:
    turns = [t["content"] for s in sessions for t in s if t["content"].strip()][:800]
    real = [real_count(tokenizer, t) for t in turns]
    raw = [DEFAULT_ESTIMATOR.raw_text_tokens(t) for t in turns]
    with_margin = [DEFAULT_ESTIMATOR.text_tokens(t) for t in turns]
    mean_abs = sum(abs(e - r) / r for e, r in zip(raw, real, strict=True)) / len(real)
    under = sum(e < r for e, r in zip(with_margin, real, strict=True)) / len(real)
    four = sum(abs(len(t) / 4 - r) / r for t, r in zip(turns, real, strict=True)) / len(real)
    assert mean_abs < 0.07, f"estimate mean abs error {mean_abs:.1%}"
    assert mean_abs < four  # better than the 4-characters rule
    assert under < 0.10, f"{under:.1%} of turns undercounted despite the margin"

    whole = [(DEFAULT_ESTIMATOR.prompt_tokens(s), real_count(tokenizer, chatml_prompt(s))) for s in sessions]
    assert sum(e < r for e, r in whole) / len(whole) < 0.05
    assert all(e >= 0.9 * r for e, r in whole)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=0, max_size=300), min_size=1, max_size=4))
def test_byte_bound_is_never_below_the_real_count(tokenizer: Any, texts: list[str]) -> None:
    messages = [{"role": "user", "content": t} for t in texts]
    assert byte_bound(messages) >= real_count(tokenizer, chatml_prompt(messages))


def test_message_text_covers_parts_tool_calls_and_names() -> None:
    parts = {"role": "user", "content": [{"type": "text", "text": "look at"},
                                         {"type": "image_url", "image_url": {"url": "data:..."}},
                                         {"type": "text", "text": "this"}]}
    assert message_text(parts) == "look at this"
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}
    assert "weather" in message_text(call) and "Oslo" in message_text(call)
    assert message_text({"role": "tool", "content": "12C", "name": "weather"}) == "12C weather"
    prompt = chatml_prompt([{"role": "user", "content": "hi"}])
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert DEFAULT_ESTIMATOR.message_tokens(call) > DEFAULT_ESTIMATOR.per_message
