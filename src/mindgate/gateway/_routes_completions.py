"""OpenAI's legacy ``POST /v1/completions``: raw prompt completion, a translation onto the pipeline's text
entry (:mod:`mindgate.pipeline._text`). Served natively by targets with raw completion (llama.cpp server,
LM Studio, vLLM, the local engine, Ollama's generate with ``raw``); any other target is a 400 naming it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from starlette.responses import Response

from mindgate.errors import InvalidRequestError
from mindgate.gateway._observability import annotate, request_id
from mindgate.gateway._responses import EventStream, JSONBytes
from mindgate.gateway._schemas_responses import CompletionRequest
from mindgate.gateway._state import gateway_of
from mindgate.gateway._wire import SSE_DONE, SSE_HEADERS, charger, check_unicode, failed_stream_end, json_bytes
from mindgate.pipeline._text import TextRequest, TextStream, usage_body

log = logging.getLogger("mindgate.gateway")
router = APIRouter(tags=["openai"])


def _prompts(raw: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    items = [raw] if isinstance(raw, str) else list(raw)
    if not all(isinstance(item, str) for item in items):
        raise InvalidRequestError("`prompt` holds token ids; the gateway's targets take text",
                                  hint="send the prompt text as a string or a list of strings")
    if not items:
        raise InvalidRequestError("`prompt` is an empty list", hint="send at least one prompt")
    for index, item in enumerate(items):
        # llama.cpp's server answers an empty prompt with HTTP 500; a clear 400 here instead of a 502
        if not str(item).strip():
            raise InvalidRequestError(f"`prompt{'' if isinstance(raw, str) else f'[{index}]'}` is empty",
                                      hint="send the text to complete")
    return [str(item) for item in items]


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Text completion of ``prompt`` (streamed or not) on a target with raw completion."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    if principal is not None:
        principal.check_model(body.model)
    gateway.admit(principal, uses_tokens=True)
    prompts = _prompts(body.prompt)
    if body.stream and len(prompts) > 1:
        raise InvalidRequestError(f"`prompt` holds {len(prompts)} prompts; a streamed completion takes one",
                                  hint="stream one prompt per request, or send the list without `stream`")
    options = body.text_options()
    check_unicode("the request", [prompts, options])
    text = TextRequest(body.model, prompts, options, request_id(request.scope), charger(gateway, principal))
    annotate(request.scope, key=principal.name if principal else None, model=body.model, stream=body.stream)
    if body.stream:
        stream = await gateway.pipeline.stream_text(text)
        return EventStream(_relay(stream, text.request_id, include_usage=body.include_usage), headers=SSE_HEADERS)
    return JSONBytes(await gateway.pipeline.complete_text(text))


async def _relay(stream: TextStream, rid: str | None, *, include_usage: bool) -> AsyncIterator[bytes]:
    try:
        async for event in stream:
            yield b"data: " + json_bytes(event) + b"\n\n"
        if include_usage and stream.reported is None:
            await stream.aclose()
            assert stream.usage is not None
            last = stream.last
            yield b"data: " + json_bytes({"id": last.get("id", "cmpl-mindgate"), "object": "text_completion",
                                          "created": last.get("created", 0), "model": last.get("model", ""),
                                          "choices": [], "usage": usage_body(stream.usage)}) + b"\n\n"
        yield SSE_DONE
    except Exception as exc:
        yield failed_stream_end(exc, rid, "completion stream")
    finally:
        await stream.aclose()
