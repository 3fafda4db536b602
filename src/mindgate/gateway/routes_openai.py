"""The OpenAI-compatible surface: ``/v1/models``, ``/v1/chat/completions`` and ``/v1/embeddings``.

Chat responses are the upstream's own bodies. Streams are relayed chunk by chunk: when an upstream chunk
carries its raw SSE payload (``ChatChunk.wire``) those bytes are forwarded as they came, otherwise the
chunk object is serialised once. An error before the first chunk is an ordinary error response with its
status; an error after it ends the stream with an SSE error event and ``[DONE]``, never a silent cut.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from mindgate.errors import InvalidRequestError, MindgateError, ModelNotFoundError
from mindgate.gateway.auth import Principal
from mindgate.gateway.memory_chat import (
    ChatScope,
    LLMFor,
    chat_scope,
    estimate_tokens,
    inject_memories,
    new_turn,
    text_of,
)
from mindgate.gateway.observability import annotate, request_id
from mindgate.gateway.on_behalf import on_behalf
from mindgate.gateway.responses import EventStream, JSONBytes
from mindgate.gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from mindgate.gateway.state import Gateway, gateway_of
from mindgate.providers.base import ChatChunk, ChatModel

log = logging.getLogger("mindgate.gateway")
router = APIRouter()

MAX_EMBEDDING_INPUTS = 2048
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _check_unicode(what: str, value: Any) -> None:
    """A lone surrogate (an unpaired ``\\udXXX`` escape in the request JSON) can be neither sent upstream nor
    embedded: a 400 naming it, not a 500 from deep inside an encoder."""
    try:
        _json(value)
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"{what} holds a lone surrogate (\\u{ord(exc.object[exc.start]):04x})",
                                  hint="send proper UTF-8 text; U+D800-U+DFFF alone is not a character") from None


# -- models ----------------------------------------------------------------------------------------------


@router.get("/v1/models", tags=["openai"])
async def list_models(request: Request) -> Response:
    """The model names requests may use (OpenAI list shape, with a ``mindgate`` object of extra fields)."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    models = [m for m in await gateway.targets.listing() if principal is None or principal.allows_model(m["id"])]
    return JSONBytes({"object": "list", "data": models})


@router.get("/v1/models/{model_id:path}", tags=["openai"])
async def retrieve_model(model_id: str, request: Request) -> Response:
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    for model in await gateway.targets.listing():
        if model["id"] == model_id and (principal is None or principal.allows_model(model_id)):
            return JSONBytes(model)
    raise ModelNotFoundError(f"model {model_id!r} is not served by this gateway", provider="mindgate",
                             status_code=404, hint="GET /v1/models lists the names it serves")


# -- chat ------------------------------------------------------------------------------------------------


@router.post("/v1/chat/completions", tags=["openai"])
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI chat completions, streaming or not, memory-augmented when the request names a user."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    if principal is not None:
        principal.check_model(body.model)
    scope = chat_scope(request.headers, body.user, body.memory, principal, enabled=gateway.writer is not None)
    gateway.admit(principal, uses_tokens=True)
    messages = body.message_dicts()
    options = body.chat_options()
    _check_unicode("the request", [messages, options])
    model = await gateway.targets.resolve(body.model, messages)
    injected: list[str] = []
    if scope is not None:
        messages, injected = await _with_memories(gateway, messages, scope)
    annotate(request.scope, key=principal.name if principal else None, model=body.model, stream=body.stream,
             user=scope.user_id if scope else None, memories=len(injected))
    label = gateway.targets.label(body.model)
    gateway.metrics.chats[(label, body.stream)] += 1
    headers = {"X-Mindgate-Memories": str(len(injected))} if scope is not None else {}
    remember, llm_for = _writer_llm(gateway, principal, scope, headers)
    remember = remember and gateway.writer is not None
    if body.stream:
        return await _stream(gateway, request, body, model, messages, options, scope if remember else None,
                             principal, headers, label, llm_for)
    try:
        response = await model.acomplete(messages, **options)
    except MindgateError as exc:
        gateway.metrics.upstream_errors[exc.code or type(exc).__name__] += 1
        raise
    prompt, completion = response.usage.prompt_tokens, response.usage.completion_tokens
    if not (prompt or completion):
        prompt, completion = _estimate(messages), estimate_tokens(response.content or "")
    gateway.charge(principal, label, prompt, completion)
    annotate(request.scope, prompt_tokens=prompt, completion_tokens=completion, served_by=response.model)
    payload = response.raw or _completion_body(response.content, response.model, response.finish_reason)
    background = None
    if remember and scope is not None and gateway.writer is not None:
        background = BackgroundTask(gateway.writer.submit, new_turn(body.message_dicts(), response.content),
                                    scope, request_id(request.scope), llm_for=llm_for)
    return JSONBytes(payload, headers=headers, background=background)


def _writer_llm(gateway: Gateway, principal: Principal | None, scope: ChatScope | None,
                headers: dict[str, str]) -> tuple[bool, LLMFor | None]:
    """Whether the turn is remembered after this chat, and how the background write gets its LLM: wrapped
    for the key (bound and charged: :mod:`.on_behalf`; None when auth is off). A key that may not use the
    memory model is answered, but its turn is not remembered and ``X-Mindgate-Memory-Write`` says so."""
    if scope is None:
        return False, None
    if principal is None:
        return True, None
    if not principal.allows_model(gateway.memory_model):
        headers["X-Mindgate-Memory-Write"] = f"skipped: key may not use model {gateway.memory_model}"
        return False, None
    return True, lambda llm: on_behalf(gateway, principal, llm, gateway.memory_model, enforce=False)


async def _with_memories(gateway: Gateway, messages: list[dict[str, Any]],
                         scope: ChatScope) -> tuple[list[dict[str, Any]], list[str]]:
    """Inject memories; a memory failure degrades to an un-augmented chat (logged), it never fails it."""
    try:
        return await inject_memories(gateway.memory, messages, scope, gateway.config.memory)
    except MindgateError as exc:
        gateway.metrics.memory_writes["search_failed"] += 1
        log.warning("memory search for user %s failed, answering without memories: %s", scope.user_id, exc)
        return messages, []


def _estimate(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(text_of(m.get("content"))) + 4 for m in messages)


def _completion_body(content: str | None, model: str, finish_reason: str | None) -> dict[str, Any]:
    return {"object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}]}


def _frame(chunk: ChatChunk) -> bytes:
    return b"data: " + (chunk.wire if chunk.wire is not None else _json(chunk.raw)) + b"\n\n"


async def _stream(gateway: Gateway, request: Request, body: ChatCompletionRequest, model: ChatModel,
                  messages: list[dict[str, Any]], options: dict[str, Any], scope: ChatScope | None,
                  principal: Principal | None, headers: dict[str, str], label: str,
                  llm_for: LLMFor | None) -> Response:
    chunks = aiter(model.astream(messages, **options))
    try:
        first: ChatChunk | None = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except MindgateError as exc:
        gateway.metrics.upstream_errors[exc.code or type(exc).__name__] += 1
        raise
    rid = request_id(request.scope)

    async def relay() -> AsyncIterator[bytes]:
        parts: list[str] = []
        prompt = completion = 0
        finished = False
        try:
            chunk = first
            while chunk is not None:
                yield _frame(chunk)
                if chunk.content:
                    parts.append(chunk.content)
                if chunk.usage is not None:
                    prompt, completion = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                chunk = await anext(chunks, None)
            yield _DONE
            finished = True
        except MindgateError as exc:
            gateway.metrics.upstream_errors[exc.code or type(exc).__name__] += 1
            log.warning("stream of request %s failed mid-way: %s", rid, exc)
            yield b"data: " + _json(exc.to_openai()) + b"\n\n" + _DONE
        except Exception as exc:
            gateway.metrics.upstream_errors[type(exc).__name__] += 1
            log.error("stream of request %s failed mid-way", rid, exc_info=sys.exc_info())
            error = {"error": {"message": f"the stream failed: {type(exc).__name__}; request id {rid}",
                               "type": "server_error", "param": None, "code": "stream_failed"}}
            yield b"data: " + _json(error) + b"\n\n" + _DONE
        finally:
            await _close(chunks)
            text = "".join(parts)
            if not (prompt or completion):
                prompt, completion = _estimate(messages), estimate_tokens(text) if text else 0
            gateway.charge(principal, label, prompt, completion)
            if finished and scope is not None and gateway.writer is not None:
                gateway.writer.submit(new_turn(body.message_dicts(), text), scope, rid, llm_for=llm_for)

    return EventStream(relay(), headers={**_SSE_HEADERS, **headers})


async def _close(chunks: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as exc:
            log.debug("closing an upstream stream failed: %s", exc)


# -- embeddings ------------------------------------------------------------------------------------------


def _texts(raw: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    items: list[Any] = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise InvalidRequestError("`input` is empty", hint="pass a string or a non-empty list of strings")
    if not all(isinstance(item, str) for item in items):
        raise InvalidRequestError("`input` holds token ids; this gateway's embedders take text",
                                  hint="send the text itself as a string or a list of strings")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequestError(f"`input` has {len(items)} items; the limit is {MAX_EMBEDDING_INPUTS}",
                                  hint="split the request")
    for index, text in enumerate(items):
        if not text.strip():
            raise InvalidRequestError(f"`input[{index}]` is empty", hint="remove empty strings")
    return items


@router.post("/v1/embeddings", tags=["openai"])
async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
    """OpenAI embeddings with the configured embedder (strings only; ``float`` or ``base64``)."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    if principal is not None:
        principal.check_model(body.model)
    texts = _texts(body.input)
    _check_unicode("`input`", texts)
    gateway.admit(principal, uses_tokens=True)
    embedder = gateway.embedder
    vectors = await embedder.aembed_batch(texts)
    dims = int(vectors.shape[1])
    if body.dimensions is not None and body.dimensions != dims:
        raise InvalidRequestError(f"`dimensions` is {body.dimensions} but the embedder {embedder.model} "
                                  f"produces {dims}-dimensional vectors", hint="leave `dimensions` out")
    tokens = sum(estimate_tokens(t) for t in texts)
    gateway.charge(principal, embedder.model, tokens, 0)
    annotate(request.scope, key=principal.name if principal else None, model=body.model, inputs=len(texts))
    if body.encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        data = [{"object": "embedding", "index": i, "embedding": base64.b64encode(little[i].tobytes()).decode()}
                for i in range(len(texts))]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row}
                for i, row in enumerate(np.asarray(vectors, dtype=np.float64).tolist())]
    return JSONBytes({"object": "list", "data": data, "model": embedder.model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
