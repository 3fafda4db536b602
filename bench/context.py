"""Context management under a long conversation: 200 turns replayed one by one through the gateway, per policy.

Upstream (LABELLED: a SCRIPTED fast upstream, not a model): a raw asyncio loopback HTTP server that answers
every chat completion at once with a fixed ~40-word reply, and every summariser call (recognised by its
instructions) with a fixed ~50-word summary; it has no tokenizer, so the gateway counts with its calibrated
estimate. The gateway is the real one (uvicorn on loopback, the real router, fit stage, SQLite store); the
``memory`` policy uses the real MiniLM embedder. The target's context window is 4096 tokens; each request
asks for ``max_tokens`` 256; the conversation's turns are real chat turns from LongMemEval (shared data),
each message cut to ``--max-chars`` (default 300: about 75 tokens).

For each policy (``error``, ``truncate``, ``summarize``, ``memory``) a fresh conversation is replayed: at turn
``t`` the client sends the whole history so far plus the new user message, as a chat client does. Figures:

* overflow errors: responses that are not 200 (the target for the fitting policies is 0; ``error`` refuses
  by design once the history outgrows the window);
* summariser calls per turn, amortised over the 200 turns (target <= 0.1);
* fit-stage overhead: the ``fit_ms`` the gateway reports in ``X-Mindgate-Context`` (the stage's own time:
  summariser and embedder calls excluded), p50 and p99 over turns 151-200 (target p50 <= 2 ms);
* prompt tokens sent per turn (the header's ``tokens``), mean per 50-turn block: flat, not growing.

Usage: python bench/context.py [--turns 200] [--window 4096] [--max-chars 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from _loopback import http_response, pct, start_upstream
from mindgate.config import MindgateConfig
from mindgate.context._tokens import DEFAULT_ESTIMATOR
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers import create_embedder
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient
from mindgate.routing import Router, Target

DATA = Path("/work/shared/data/longmemeval/longmemeval_oracle.json.gz")
POLICIES = ("error", "truncate", "summarize", "memory")
REPLY = ("Here is a short, friendly answer that stays on topic, mentions one or two relevant details, and "
         "ends with a brief question so the conversation can go on naturally from here, as chat does.")
SUMMARY = ("The user and the assistant talked about several everyday topics: plans, purchases, a few "
           "recommendations and follow-up questions. The assistant answered briefly and asked questions "
           "back; no decisions are pending and nothing needs to be done next.")
SUMMARISER_MARK = b"You summarise conversations"


def _body(content: str) -> bytes:
    return json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "scripted",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}).encode()


class ScriptedUpstream:
    """The labelled scripted upstream: keep-alive HTTP/1.1 on loopback, in its own thread."""

    def __init__(self) -> None:
        self.chat_calls = 0
        self.summariser_calls = 0
        self.port = 0

    def start(self) -> ScriptedUpstream:
        answers = {kind: http_response(_body(text))
                   for kind, text in (("chat", REPLY), ("summary", SUMMARY), ("json", '{"memory": []}'))}
        models = http_response(json.dumps({"object": "list", "data": [{"id": "scripted"}]}).encode())

        def reply(head: bytes, body: bytes) -> bytes:
            if b"/models" in head.split(b"\r\n", 1)[0]:
                return models
            if SUMMARISER_MARK in body:
                self.summariser_calls += 1
                return answers["summary"]
            if b'"response_format"' in body:
                return answers["json"]
            self.chat_calls += 1
            return answers["chat"]

        self.port = start_upstream(reply)
        return self


def real_turns(count: int, max_chars: int = 900) -> list[tuple[str, str]]:
    """``count`` (user, assistant) pairs of real chat from LongMemEval, each side at most ``max_chars``."""
    with gzip.open(DATA) as file:
        questions = json.loads(file.read())
    pairs: list[tuple[str, str]] = []
    for question in questions:
        for session in question["haystack_sessions"]:
            for user, assistant in zip(session[::2], session[1::2], strict=False):
                if user["role"] == "user" and assistant["role"] == "assistant":
                    pairs.append((user["content"][:max_chars], assistant["content"][:max_chars]))
                    if len(pairs) == count:
                        return pairs
    raise SystemExit("not enough turns in the data")


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def header_fields(value: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", value))


def replay(base: str, policy: str, pairs: list[tuple[str, str]], upstream: ScriptedUpstream) -> dict[str, Any]:
    headers = {"X-Mindgate-Context": policy}
    if policy == "memory":
        headers["X-Mindgate-User"] = "bench-user"
    history: list[dict[str, Any]] = [{"role": "system", "content": f"You are a helpful assistant ({policy})."}]
    errors = 0
    unfitted: list[int] = []
    tokens: list[int] = []
    fit_ms: list[float] = []
    summariser_before = upstream.summariser_calls
    with httpx.Client(base_url=base, timeout=120) as client:
        for user, assistant in pairs:
            history.append({"role": "user", "content": user})
            unfitted.append(DEFAULT_ESTIMATOR.prompt_tokens(history))
            response = client.post("/v1/chat/completions", headers=headers,
                                   json={"model": "bench", "messages": history, "max_tokens": 256})
            if response.status_code != 200:
                errors += 1
                tokens.append(0)
                fit_ms.append(float("nan"))
            else:
                fields = header_fields(response.headers.get("x-mindgate-context", ""))
                tokens.append(int(fields.get("tokens", "0/0").split("/")[0]))
                fit_ms.append(float(fields.get("fit_ms", "nan")))
            history.append({"role": "assistant", "content": assistant})
    turns = len(pairs)
    late = [v for v in fit_ms[max(0, turns - 50):] if v == v]
    blocks = [tokens[i:i + 50] for i in range(0, turns, 50)]
    return {"policy": policy, "turns": turns, "overflow_errors": errors,
            "summariser_calls": upstream.summariser_calls - summariser_before,
            "summariser_calls_per_turn": round((upstream.summariser_calls - summariser_before) / turns, 3),
            "fit_ms_p50_last50": round(pct(late, 0.5), 3), "fit_ms_p99_last50": round(pct(late, 0.99), 3),
            "tokens_per_turn_by_50": [round(statistics.mean(b)) for b in blocks if b],
            "unfitted_tokens_by_50": [round(statistics.mean(b)) for b in
                                      (unfitted[i:i + 50] for i in range(0, turns, 50)) if b]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--max-chars", type=int, default=300, help="cut each user/assistant message to this")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    upstream = ScriptedUpstream().start()
    model = OpenAICompatChatModel(OpenAICompatClient(f"http://127.0.0.1:{upstream.port}/v1"), "scripted")
    router = Router([Target(model, name="scripted", context_length=args.window)], name="bench")
    with tempfile.TemporaryDirectory() as home:
        config = MindgateConfig.from_dict({"vector_store": {"config": {"path": f"{home}/memory.db"}},
                                           "context": {"policy": "auto"}}, env=False)
        embedder = create_embedder(config.embedder.provider, config.embedder.config)
        memory = AsyncMemory(embedder=embedder, store=SQLiteStore(f"{home}/memory.db"), llm=model)
        server, thread, base = serve(create_app(config, chat=router, embedder=embedder, memory=memory,
                                                warm_up=False))
        pairs = real_turns(args.turns, args.max_chars)
        results = [replay(base, policy, pairs, upstream) for policy in POLICIES]
        server.should_exit = True  # graceful: the memory writer drains before the store goes away
        thread.join(timeout=120)
    print(f"context bench: {args.turns} turns (messages cut to {args.max_chars} chars), window {args.window}, "
          f"max_tokens 256, SCRIPTED upstream (fixed replies, no tokenizer: estimated counts)\n")
    head = (f"{'policy':<10} {'errors':>6} {'summ./turn':>10} {'fit p50 ms':>10} {'fit p99 ms':>10}  "
            "tokens sent per turn, mean by 50 turns (unfitted history)")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['policy']:<10} {r['overflow_errors']:>6} {r['summariser_calls_per_turn']:>10} "
              f"{r['fit_ms_p50_last50']:>10} {r['fit_ms_p99_last50']:>10}  {r['tokens_per_turn_by_50']} "
              f"({r['unfitted_tokens_by_50']})")
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
