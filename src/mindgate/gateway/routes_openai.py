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

from mindgate.context.policy import CONTEXT_HEADER, requested_policy
from mindgate.context.tokens import DEFAULT_ESTIMATOR
from mindgate.errors import InvalidRequestError, MindgateError, ModelNotServedError
from mindgate.gateway.auth import Principal
from mindgate.gateway.observability import annotate, request_id
from mindgate.gateway.responses import EventStream, JSONBytes
from mindgate.gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from mindgate.gateway.scoping import requested_scope
from mindgate.gateway.state import Gateway, gateway_of
from mindgate.gateway.tool_options import tool_stage_options
from mindgate.pipeline.core import ChatRequest, ChatStream, UsageSink
from mindgate.providers.base import ChatChunk
from mindgate.routing.trace import HEADER as ROUTE_HEADER

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
    raise ModelNotServedError(f"model {model_id!r} is not served by this gateway",
                              hint="GET /v1/models lists the names it serves")


# -- chat ------------------------------------------------------------------------------------------------


@router.post("/v1/chat/completions", tags=["openai"])
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI chat completions, streaming or not, memory-augmented when the request names a user: a
    translation onto the request pipeline (:mod:`mindgate.pipeline`)."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    if principal is not None:
        principal.check_model(body.model)
    pipeline = gateway.pipeline
    scope = pipeline.scope(requested_scope(request.headers, body.user, body.memory), principal)
    gateway.admit(principal, uses_tokens=True)
    messages = body.message_dicts()
    options = body.chat_options()
    _check_unicode("the request", [messages, options])
    stage_options = tool_stage_options(gateway.config, principal, body.mindgate, request.headers, body.model, scope)
    policy = requested_policy(request.headers.get(CONTEXT_HEADER), body.mindgate.context if body.mindgate else None)
    if policy is not None:
        stage_options["fit"] = policy
    chat = ChatRequest(body.model, messages, options, scope, request_id(request.scope), stage_options,
                       on_usage=_charger(gateway, principal))
    prepared = await pipeline.prepare(chat)
    annotate(request.scope, key=principal.name if principal else None, model=body.model, stream=body.stream,
             user=scope.user_id if scope else None, memories=len(prepared.memories))
    gateway.metrics.chats[(prepared.label, body.stream)] += 1
    headers = {"X-Mindgate-Memories": str(len(prepared.memories))} if scope is not None else {}
    if body.stream:
        stream = await pipeline.stream(prepared)
        if stream.route is not None:
            headers[ROUTE_HEADER] = stream.route
        if stream.context is not None:
            headers[CONTEXT_HEADER] = stream.context
        return EventStream(_relay(stream, chat.request_id), headers={**_SSE_HEADERS, **headers})
    result = await pipeline.complete(prepared)
    if result.route is not None:
        headers[ROUTE_HEADER] = result.route
    if result.context is not None:
        headers[CONTEXT_HEADER] = result.context
    response = result.response
    annotate(request.scope, prompt_tokens=result.usage.prompt_tokens,
             completion_tokens=result.usage.completion_tokens, served_by=response.model)
    payload = response.raw or _completion_body(response.content, response.model, response.finish_reason)
    background = BackgroundTask(result.remember) if scope is not None else None
    return JSONBytes(payload, headers=headers, background=background)


def _charger(gateway: Gateway, principal: Principal | None) -> UsageSink:
    def charge(label: str, prompt: int, completion: int) -> None:
        gateway.charge(principal, label, prompt, completion)
    return charge


def _completion_body(content: str | None, model: str, finish_reason: str | None) -> dict[str, Any]:
    return {"object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}]}


def _frame(chunk: ChatChunk) -> bytes:
    return b"data: " + (chunk.wire if chunk.wire is not None else _json(chunk.raw)) + b"\n\n"


async def _relay(stream: ChatStream, rid: str | None) -> AsyncIterator[bytes]:
    """The chunks as SSE frames and ``[DONE]``; a failure mid-way ends the stream with an error event."""
    try:
        async for chunk in stream:
            yield _frame(chunk)
        yield _DONE
    except MindgateError as exc:
        log.warning("stream of request %s failed mid-way: %s", rid, exc)
        yield b"data: " + _json(exc.to_openai()) + b"\n\n" + _DONE
    except Exception as exc:
        log.error("stream of request %s failed mid-way", rid, exc_info=sys.exc_info())
        yield b"data: " + _json(stream_failure(exc, rid)) + b"\n\n" + _DONE
    finally:
        await stream.aclose()


def stream_failure(exc: BaseException, rid: str | None) -> dict[str, Any]:
    """OpenAI's error body for an unexpected failure in the middle of a stream."""
    return {"error": {"message": f"the stream failed: {type(exc).__name__}; request id {rid}",
                      "type": "server_error", "param": None, "code": "stream_failed"}}


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
    tokens = sum(DEFAULT_ESTIMATOR.text_tokens(t) for t in texts)
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
