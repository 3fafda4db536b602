"""SCRIPTED UPSTREAM (labelled): an OpenAI-compatible ``/v1/chat/completions`` server whose answers are
given by a script, so a tool loop can be driven deterministically through real HTTP.

Each request takes the next step of the script: ``call(("name", {args}), ...)`` answers with those tool
calls (``finish_reason: tool_calls``), ``say("text")`` answers with text, where ``{tool}`` is replaced by
the content of the last ``tool`` message the request carried. ``stream: true`` is answered as OpenAI
streams: role chunk, content or tool-call deltas (arguments split in two fragments, as real servers
do), a finish chunk, a usage chunk (always, as some servers send it unasked) and ``[DONE]``. Every
answer reports usage of 10 prompt + 5 completion tokens. The requests are recorded (``requests``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from fakes._server import ASGIApp, FakeServer, Receive, Scope, Send

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@dataclass(frozen=True)
class Step:
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    text: str | None = None


def call(*calls: tuple[str, dict[str, Any]]) -> Step:
    return Step(calls=tuple(calls))


def say(text: str) -> Step:
    return Step(text=text)


class ScriptedChat(FakeServer):
    def __init__(self, *script: Step) -> None:
        super().__init__()
        self.script = list(script)
        self.served = 0

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self, body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        step = self.script[min(self.served, len(self.script) - 1)]
        self.served += 1
        if step.text is not None:
            tool = next((m.get("content") for m in reversed(body.get("messages", [])) if m.get("role") == "tool"), "")
            return step.text.replace("{tool}", str(tool)), []
        calls = [{"id": f"call_{self.served}_{i}", "type": "function",
                  "function": {"name": name, "arguments": json.dumps(args)}}
                 for i, (name, args) in enumerate(step.calls)]
        return None, calls

    def build_app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            if not scope["path"].endswith("/chat/completions"):
                await _send(send, 200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                return
            request = json.loads(body)
            text, calls = self._next(request)
            ident = f"chatcmpl-scripted-{self.served}"
            if not request.get("stream"):
                message = {"role": "assistant", "content": text}
                if calls:
                    message["tool_calls"] = calls
                await _send(send, 200, {"id": ident, "object": "chat.completion", "created": int(time.time()),
                                        "model": request.get("model", "scripted"),
                                        "choices": [{"index": 0, "message": message,
                                                     "finish_reason": "tool_calls" if calls else "stop"}],
                                        "usage": USAGE})
                return
            events = _stream_events(ident, request, text, calls)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for event in events:
                await send({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(),
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

        return app


def _stream_events(ident: str, request: dict[str, Any], text: str | None,
                   calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": request.get("model", "scripted")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    if text is not None:
        events += [chunk({"content": part}) for part in _halves(text)]
    for index, c in enumerate(calls):
        first, second = _halves(c["function"]["arguments"])
        events.append(chunk({"tool_calls": [{"index": index, "id": c["id"], "type": "function",
                                             "function": {"name": c["function"]["name"], "arguments": first}}]}))
        events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": second}}]}))
    events.append(chunk({}, "tool_calls" if calls else "stop"))
    events.append({**base, "choices": [], "usage": USAGE})
    return events


def _halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [part for part in (text[:middle], text[middle:]) if part]


async def _send(send: Send, status: int, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
