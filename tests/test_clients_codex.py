"""Codex CLI (OpenAI's coding agent, npm ``@openai/codex``) as a client of the gateway's ``/v1/responses``.

The real ``codex exec`` binary runs non-interactively against the gateway on a loopback port, configured as
a custom model provider (``wire_api = "responses"``) in a throwaway ``CODEX_HOME``; a recording proxy
between Codex and the gateway shows what Codex sent and which events it got back. The upstream behind the
gateway is a SCRIPTED UPSTREAM (tests/fakes/scripted.py: a 135M model cannot be relied on to say a given
sentence or call a tool on cue) or, for the format check, the real llama.cpp server.

Codex CLI is installed by ``make codex-cli`` (``make test`` does it when missing) into ``.codex-cli/``; a
missing binary fails these tests with that instruction instead of skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.responses_api import ResponsesAPIFake
from fakes.scripted import ScriptedUpstream, ToolCall
from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers._base import ChatModel
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]

# Not a MINDGATE_* variable: tests/conftest.py clears those before the tests import.
CODEX = Path(os.environ.get("CODEX_CLI_BIN")
             or Path(__file__).resolve().parents[1] / ".codex-cli" / "node_modules" / ".bin" / "codex")
ANSWER = "The scripted answer is forty-two."


def _codex_binary() -> Path:
    if not CODEX.exists():
        pytest.fail(f"Codex CLI is not installed at {CODEX}: run `make codex-cli` (npm installs the pinned "
                    "@openai/codex into .codex-cli/), or point CODEX_CLI_BIN at a codex binary")
    return CODEX


def _codex_home(root: Path, base_v1: str, model: str, *, trimmed: bool) -> Path:
    """A CODEX_HOME whose config.toml makes the gateway Codex's model provider; nothing else is contacted
    (no update check, no analytics, no feedback). ``trimmed`` keeps Codex's prompt small (short
    instructions, few tools) so that a 4096-token local model can take it."""
    home = root / "codex-home"
    home.mkdir()
    lines = [f'model = "{model}"', 'model_provider = "mindgate"', "check_for_update_on_startup = false"]
    if trimmed:
        (home / "instructions.md").write_text("You are a terse assistant. Answer in one short sentence.\n")
        lines += [f'model_instructions_file = "{home / "instructions.md"}"', 'web_search = "disabled"',
                  "[agents]", "enabled = false", "[skills]", "include_instructions = false",
                  "[skills.bundled]", "enabled = false",
                  "[features]", "goals = false", "apps = false", "view_image = false",
                  "image_generation = false", "shell_tool = false", "unified_exec = false"]
    lines += ["[analytics]", "enabled = false", "[feedback]", "enabled = false",
              "[model_providers.mindgate]", 'name = "mindgate gateway"', f'base_url = "{base_v1}"',
              'env_key = "MINDGATE_API_KEY"', 'wire_api = "responses"', "request_max_retries = 0",
              "stream_max_retries = 0"]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return home


def run_codex(tmp_path: Path, base_v1: str, prompt: str, *, model: str = "scripted",
              trimmed: bool = False, timeout: float = 120) -> tuple[list[dict[str, Any]], Path]:
    """``codex exec --json`` in a fresh work directory: (its JSONL events, the work directory)."""
    home = _codex_home(tmp_path, base_v1, model, trimmed=trimmed)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home),
           "MINDGATE_API_KEY": "unused", "NO_COLOR": "1"}
    # --strict-config: a config key this Codex version no longer knows fails here instead of being ignored
    command = [str(_codex_binary()), "exec", "--strict-config", "--json", "--ephemeral", "--skip-git-repo-check",
               "--dangerously-bypass-approvals-and-sandbox", "--color", "never", "-C", str(work), prompt]
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"codex exec failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    return events, work


def _items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == kind]


def _sse_types(raw: bytes) -> list[str]:
    return [json.loads(line[6:])["type"] for line in raw.decode().splitlines() if line.startswith("data: {")]


@pytest.fixture
def codex_gateway(serve_gateway: Serve, memory_factory: MakeMemory) -> Iterator[Callable[[ChatModel], RecordingProxy]]:
    """``front(chat)``: the gateway on ``chat`` with a recording proxy in front (Codex talks to the proxy)."""
    proxies: list[RecordingProxy] = []

    def front(chat: ChatModel) -> RecordingProxy:
        gateway = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(None)))
        proxy = RecordingProxy(gateway.base_url)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield front
    for proxy in proxies:
        proxy.stop()


def test_codex_exec_prints_the_answer_streamed_through_the_gateway(
        tmp_path: Path, codex_gateway: Callable[[ChatModel], RecordingProxy]) -> None:
    with ScriptedUpstream([ANSWER]) as upstream:
        proxy = codex_gateway(OpenAICompatChatModel(OpenAICompatClient(f"{upstream.base_url}/v1"), "scripted"))
        events, _ = run_codex(tmp_path, f"{proxy.base_url}/v1", "Say the answer.")
    assert [item["text"] for item in _items(events, "agent_message")] == [ANSWER]
    assert events[-1]["type"] == "turn.completed"
    [sent] = [r for r in proxy.requests if r.path == "/v1/responses"]
    assert sent.method == "POST" and sent.json["stream"] is True and sent.json["model"] == "scripted"
    # Codex offers hosted tools (web_search) and a namespace of functions: the model sees functions only
    [chat] = upstream.chat_bodies()
    offered = {tool["function"]["name"] for tool in chat["tools"]}
    assert "exec_command" in offered and all(tool["type"] == "function" for tool in chat["tools"])
    assert chat["messages"][-1] == {"role": "user", "content": "Say the answer."}
    types = _sse_types(proxy.responses[0])
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert "response.output_text.delta" in types


def test_codex_runs_a_shell_call_and_returns_its_output(
        tmp_path: Path, codex_gateway: Callable[[ChatModel], RecordingProxy]) -> None:
    command = "echo codex-ran-this > proof.txt && echo done-$((6*7))"
    with ScriptedUpstream([ToolCall("exec_command", {"cmd": command}), ANSWER]) as upstream:
        proxy = codex_gateway(OpenAICompatChatModel(OpenAICompatClient(f"{upstream.base_url}/v1"), "scripted"))
        events, work = run_codex(tmp_path, f"{proxy.base_url}/v1", "Write the proof file.")
    [run] = _items(events, "command_execution")
    assert run["exit_code"] == 0 and "done-42" in run["aggregated_output"]
    assert (work / "proof.txt").read_text() == "codex-ran-this\n"
    assert [item["text"] for item in _items(events, "agent_message")] == [ANSWER]
    # Codex sent the call and its output back as input items; the upstream got them as chat tool messages
    second = [r.json for r in proxy.requests if r.path == "/v1/responses"][1]
    output = next(item for item in second["input"] if item.get("type") == "function_call_output")
    assert output["call_id"] == "call_scripted_1"
    messages = upstream.chat_bodies()[1]["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "exec_command"
    assert messages[-1]["role"] == "tool" and "done-42" in messages[-1]["content"]
    first_events = _sse_types(proxy.responses[0])
    assert "response.function_call_arguments.done" in first_events and first_events[-1] == "response.completed"


def test_codex_on_the_real_local_model(tmp_path: Path, llama_proxy: RecordingProxy,
                                       codex_gateway: Callable[[ChatModel], RecordingProxy]) -> None:
    """Format level: whatever SmolLM2 says reaches Codex as its agent message, word for word."""
    proxy = codex_gateway(llama_chat(f"{llama_proxy.base_url}/v1"))
    events, _ = run_codex(tmp_path, f"{proxy.base_url}/v1", "Say hello.", model="smollm2", trimmed=True,
                          timeout=240)
    [message] = _items(events, "agent_message")
    relayed = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                      for line in llama_proxy.responses[-1].decode().splitlines()
                      if line.startswith("data: {") and json.loads(line[6:]).get("choices"))
    assert message["text"].strip() and message["text"].strip() == relayed.strip()
    assert events[-1]["type"] == "turn.completed"


def test_codex_passes_through_to_a_server_with_its_own_responses_api(
        tmp_path: Path, serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    """``responses_api: native``: Codex's request reaches the CONTRACT FAKE of a Responses API server
    (tests/fakes/responses_api.py) as Codex sent it, hosted tools included, and its events come back."""
    with ResponsesAPIFake(models=("codex-model",)) as fake:
        fake.reply = ANSWER
        config = {"llm": {"provider": "openai_compatible", "config": {
            "base_url": f"{fake.base_url}/v1", "model": "codex-model", "responses_api": "native"}}}
        gateway = serve_gateway(create_app(MindgateConfig.from_dict(config), memory=memory_factory(None)))
        events, _ = run_codex(tmp_path, gateway.v1, "Say the answer.", model="codex-model")
        [sent] = fake.response_bodies()
    assert [item["text"] for item in _items(events, "agent_message")] == [ANSWER]
    assert events[-1]["type"] == "turn.completed"
    assert sent["stream"] is True and sent["store"] is False and sent["model"] == "codex-model"
    # nothing left out: the server gets the hosted tools the bridge would have had to drop
    assert "web_search" in {tool.get("type") for tool in sent["tools"]}
    assert not fake.requests_to("/v1/chat/completions")
