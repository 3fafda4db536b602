"""The OpenAI-compatible surface: ``/v1/models``, ``/v1/chat/completions`` and ``/v1/embeddings``.

Chat responses are the upstream's own bodies. Streams are relayed chunk by chunk: when an upstream chunk
carries its raw SSE payload (``ChatChunk.wire``) those bytes are forwarded as they came, otherwise the
chunk object is serialised once. An error before the first chunk is an ordinary error response with its
status; an error after it ends the stream with an SSE error event and ``[DONE]``, never a silent cut.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from mindgate.context._policy import CONTEXT_HEADER, requested_policy
from mindgate.context._tokens import DEFAULT_ESTIMATOR
from mindgate.errors import InvalidRequestError, ModelNotServedError
from mindgate.gateway._observability import annotate, request_id
from mindgate.gateway._on_behalf import memory_writes
from mindgate.gateway._responses import EventStream, JSONBytes, LastFrame
from mindgate.gateway._schemas import ChatCompletionRequest, EmbeddingRequest
from mindgate.gateway._scoping import mindgate_headers, requested_scope
from mindgate.gateway._state import gateway_of
from mindgate.gateway._tool_options import tool_stage_options
from mindgate.gateway._wire import SSE_DONE, SSE_HEADERS, charger, check_unicode, failed_stream_end, json_bytes
from mindgate.pipeline._core import ChatRequest, ChatStream
from mindgate.providers._base import ChatChunk, Usage
from mindgate.routing._trace import HEADER as ROUTE_HEADER

log = logging.getLogger("mindgate.gateway")
router = APIRouter()

MAX_EMBEDDING_INPUTS = 2048


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
    sent = mindgate_headers(request.scope)
    scope = pipeline.scope(requested_scope(sent, body.user, body.memory), principal)
    gateway.admit(principal, uses_tokens=True)
    messages = body.message_dicts()
    options = body.chat_options()
    check_unicode("the request", [messages, options])
    headers: dict[str, str] = {}
    remember, memory_llm = memory_writes(gateway, principal, headers) if scope is not None else (False, None)
    stage_options = tool_stage_options(gateway, principal, body.mindgate, sent, body.model, scope)
    policy = requested_policy(sent.get(CONTEXT_HEADER.lower()), body.mindgate.context if body.mindgate else None)
    if policy is not None:
        stage_options["fit"] = policy
    # with gateway-run tools, each model call of the loop is charged on behalf of the key as it happens
    charged_per_call = "tools" in stage_options and principal is not None
    chat = ChatRequest(body.model, messages, options, scope, request_id(request.scope), stage_options,
                       on_usage=None if charged_per_call else charger(gateway, principal), remember=remember,
                       memory_llm=memory_llm)
    prepared = await pipeline.prepare(chat)
    annotate(request.scope, key=principal.name if principal else None, model=body.model, stream=body.stream,
             user=scope.user_id if scope else None, memories=len(prepared.memories))
    gateway.metrics.chats[(prepared.label, body.stream)] += 1
    if scope is not None:
        headers["X-Mindgate-Memories"] = str(len(prepared.memories))
    if body.stream:
        stream = await pipeline.stream(prepared)
        if stream.route is not None:
            headers[ROUTE_HEADER] = stream.route
        if stream.context is not None:
            headers[CONTEXT_HEADER] = stream.context
        return EventStream(_relay(stream, chat.request_id, include_usage=body.include_usage),
                           headers={**SSE_HEADERS, **headers})
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


def _completion_body(content: str | None, model: str, finish_reason: str | None) -> dict[str, Any]:
    return {"object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}]}


def _usage_chunk(stream: ChatStream) -> dict[str, Any]:
    last = stream.last.raw if stream.last is not None else {}
    usage = stream.usage or Usage()
    return {"id": last.get("id", "chatcmpl-mindgate"), "object": "chat.completion.chunk",
            "created": last.get("created", int(time.time())), "model": last.get("model", stream.prepared.model.model),
            "choices": [], "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                     "total_tokens": usage.total_tokens}}


def _frame(chunk: ChatChunk) -> bytes:
    return b"data: " + (chunk.wire if chunk.wire is not None else json_bytes(chunk.raw)) + b"\n\n"


async def _relay(stream: ChatStream, rid: str | None, *, include_usage: bool) -> AsyncIterator[bytes]:
    """The chunks as SSE frames and ``[DONE]`` (the :class:`LastFrame`: closing the upstream and counting usage
    run after the client has it); a failure mid-way ends the stream with an error event.
    With ``include_usage``, a usage chunk (OpenAI's: empty ``choices``) ends the answer when the upstream
    sent none: its counts are the upstream's when it reported them, else estimated."""
    try:
        async for chunk in stream:
            yield _frame(chunk)
        if include_usage and not stream.upstream_usage:
            await stream.aclose()
            yield LastFrame(b"data: " + json_bytes(_usage_chunk(stream)) + b"\n\n" + SSE_DONE)
        else:
            yield LastFrame(SSE_DONE)
    except Exception as exc:
        yield LastFrame(failed_stream_end(exc, rid, "stream"))
    finally:
        await stream.aclose()


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
    """OpenAI embeddings with the embedder ``model`` names (see :meth:`Gateway.embedder_for`; strings only;
    ``float`` or ``base64``)."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    if principal is not None:
        principal.check_model(body.model)
    texts = _texts(body.input)
    check_unicode("`input`", texts)
    embedder = gateway.embedder_for(body.model)
    gateway.admit(principal, uses_tokens=True)
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
