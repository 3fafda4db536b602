"""OpenAI's Responses API: ``POST /v1/responses`` (streamed or not), ``GET`` / ``DELETE /v1/responses/{id}``
and ``GET /v1/responses/{id}/input_items``.

A translation onto the request pipeline: input items become chat messages (after the stored conversation
of ``previous_response_id`` and the ``instructions``), the pipeline answers them on any target (memory
recall and background memory writes as on chat), and the answer becomes output items, or the semantic
event stream. With ``store`` (OpenAI's default) the response, its input items and the conversation are
kept in the memory store, owned by the acting user (see :mod:`mindgate.pipeline._conversations`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from mindgate.context._policy import CONTEXT_HEADER, requested_policy
from mindgate.errors import InvalidRequestError, MindgateError, NotFoundError
from mindgate.gateway._auth import Principal
from mindgate.gateway._observability import annotate, request_id
from mindgate.gateway._on_behalf import memory_writes
from mindgate.gateway._openai_responses import (
    ToolSet,
    chat_tool_choice,
    chat_tools,
    items_to_messages,
    mcp_call_items,
    new_id,
    normalise_input,
    output_items,
    output_messages,
    response_object,
    text_format,
)
from mindgate.gateway._openai_responses_stream import ResponseEvents
from mindgate.gateway._responses import EventStream, JSONBytes, LastFrame
from mindgate.gateway._responses_native import NativeTurn, configured, conversation, pass_through, upstream_body
from mindgate.gateway._schemas_responses import ResponsesRequest
from mindgate.gateway._scoping import mindgate_headers, requested_scope
from mindgate.gateway._state import Gateway, gateway_of
from mindgate.gateway._tool_options import tool_stage_options
from mindgate.gateway._wire import SSE_HEADERS, charger, check_unicode
from mindgate.pipeline._conversations import ResponseLog
from mindgate.pipeline._core import ChatRequest, ChatStream
from mindgate.pipeline._passthrough import NativeRequest
from mindgate.pipeline._scope import ChatScope, acting_user
from mindgate.providers._base import Usage

log = logging.getLogger("mindgate.gateway")
IGNORED_TOOLS_HEADER = "X-Mindgate-Ignored-Tools"
"""Names the offered tools the gateway left out (hosted tools such as web_search it cannot run)."""
router = APIRouter(tags=["openai"])


class _Turn:
    """What one request sends and, with ``store``, keeps."""

    def __init__(self, body: ResponsesRequest, owner: str | None, items: list[dict[str, Any]],
                 conversation: list[dict[str, Any]]) -> None:
        self.body = body
        self.owner = owner
        self.items = items
        self.conversation = conversation
        self.id = new_id("resp")
        self.created = int(time.time())
        self.echo = body.echo()

    def response(self, model: str, status: str, output: list[dict[str, Any]], usage: Usage | None, *,
                 error: dict[str, Any] | None = None, finish_reason: str | None = None) -> dict[str, Any]:
        incomplete = "max_output_tokens" if finish_reason == "length" else None
        if incomplete and status == "completed":
            status = "incomplete"
        return response_object(self.echo, response_id=self.id, model=model, status=status, output=output,
                               usage=usage, created_at=self.created, error=error, incomplete=incomplete)

    async def keep(self, responses: ResponseLog | None, response: dict[str, Any]) -> None:
        """Store the response (``store: true``); a store failure is logged, the answer still goes out."""
        if responses is None or not self.body.store:
            return
        try:
            await responses.save(response, self.owner, self.items,
                                 self.conversation + output_messages(response["output"]))
        except MindgateError as exc:
            log.error("storing response %s failed (it cannot be retrieved or continued): %s", self.id, exc)


def _owner(request: Request, principal: Principal | None) -> str | None:
    return acting_user(requested_scope(request.headers, None, None), principal)


def _log_of(gateway: Gateway) -> ResponseLog:
    if gateway.responses is None:
        raise NotFoundError("stored responses are turned off on this gateway",
                            hint="set gateway.store_responses: true in the config")
    return gateway.responses


def _options(body: ResponsesRequest) -> tuple[dict[str, Any], dict[str, Any], ToolSet]:
    """(ChatModel options, stage options, the offered tools) for the request."""
    options: dict[str, Any] = {}
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        value = getattr(body, name)
        if value is not None:
            options[name] = value
    if body.max_output_tokens is not None:
        options["max_tokens"] = body.max_output_tokens
    tools = chat_tools(body.tools or [])
    if tools.tools:
        options["tools"] = tools.tools
    if body.tool_choice is not None:
        options["tool_choice"] = chat_tool_choice(body.tool_choice)
    response_format, schema = text_format(body.text)
    if response_format is not None:
        options["response_format"] = response_format
    effort = (body.reasoning or {}).get("effort")
    if effort:  # chat completions' name for it; sent to targets whose spec takes it (see docs)
        options["reasoning_effort"] = effort
    return options, ({"json_schema": schema} if schema is not None else {}), tools


@router.post("/v1/responses")
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    """Create a model response (OpenAI's Responses API), memory-augmented when the request names a user."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    if principal is not None:
        principal.check_model(body.model)
    if body.model_extra:
        log.debug("/v1/responses: ignoring unknown field(s) %s", ", ".join(sorted(body.model_extra)))
    sent = mindgate_headers(request.scope)
    requested = requested_scope(sent, body.user, body.memory)
    owner = acting_user(requested, principal)
    scope = gateway.pipeline.scope(requested, principal)
    gateway.admit(principal, uses_tokens=True)
    items = normalise_input(body.input)
    history: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        history = list((await _log_of(gateway).load(body.previous_response_id, owner)).context)
    headers: dict[str, str] = {}
    policy = requested_policy(sent.get(CONTEXT_HEADER.lower()), body.mindgate.context if body.mindgate else None)
    gateway_tools = tool_stage_options(gateway, principal, body.mindgate, sent, body.model, scope)
    if configured(gateway):
        passed = await _pass_through(request, gateway, principal, body, scope, owner, items, history,
                                     {**gateway_tools, **({"fit": policy} if policy else {})}, headers)
        if passed is not None:
            return passed
    turn = _Turn(body, owner, items, history + items_to_messages(items))
    messages = ([{"role": "system", "content": body.instructions}] if body.instructions else []) + turn.conversation
    if not messages:
        raise InvalidRequestError("`input` is empty", hint="send at least one input item")
    options, stage_options, tools = _options(body)
    check_unicode("the request", [messages, options])
    if policy is None and body.truncation is not None:
        policy = "truncate" if body.truncation == "auto" else "error"
    if policy is not None:
        stage_options["fit"] = policy
    remember, memory_llm = memory_writes(gateway, principal, headers) if scope is not None else (False, None)
    stage_options.update(gateway_tools)
    # with gateway-run tools, each model call of the loop is charged on behalf of the key as it happens
    charged_per_call = "tools" in stage_options and principal is not None
    chat = ChatRequest(body.model, messages, options, scope, request_id(request.scope), stage_options,
                       None if charged_per_call else charger(gateway, principal), remember=remember,
                       memory_llm=memory_llm)
    prepared = await gateway.pipeline.prepare(chat)
    annotate(request.scope, key=principal.name if principal else None, model=body.model, stream=body.stream,
             user=scope.user_id if scope else None, memories=len(prepared.memories))
    gateway.metrics.chats[(prepared.label, body.stream)] += 1
    if scope is not None:
        headers["X-Mindgate-Memories"] = str(len(prepared.memories))
    if tools.ignored:
        headers[IGNORED_TOOLS_HEADER] = ", ".join(tools.ignored)[:1000]
    if body.stream:
        stream = await gateway.pipeline.stream(prepared)
        if stream.context is not None:
            headers[CONTEXT_HEADER] = stream.context
        events = _events(gateway, turn, stream, chat.request_id, tools.namespaces)
        return EventStream(events, headers={**SSE_HEADERS, **headers})
    result = await gateway.pipeline.complete(prepared)
    if result.context is not None:
        headers[CONTEXT_HEADER] = result.context
    answer = result.response
    output = mcp_call_items(answer.raw.get("mindgate")) + output_items(
        answer.content, answer.tool_calls, namespaces=tools.namespaces, cut=answer.finish_reason == "length")
    response = turn.response(answer.model, "completed", output, result.usage, finish_reason=answer.finish_reason)
    await turn.keep(gateway.responses, response)
    annotate(request.scope, prompt_tokens=result.usage.prompt_tokens,
             completion_tokens=result.usage.completion_tokens, served_by=answer.model)
    background = BackgroundTask(result.remember) if scope is not None else None
    return JSONBytes(response, headers=headers, background=background)


async def _pass_through(request: Request, gateway: Gateway, principal: Principal | None, body: ResponsesRequest,
                        scope: ChatScope | None, owner: str | None, items: list[dict[str, Any]],
                        history: list[dict[str, Any]], stage_options: dict[str, Any],
                        headers: dict[str, str]) -> Response | None:
    """The request passed through to the target's own ``/v1/responses`` (see :mod:`._responses_native`), or
    None when it is to be bridged."""
    sent = upstream_body(body, history)
    check_unicode("the request", sent)
    native = NativeRequest(body.model, sent, history + conversation(items), scope, stage_options,
                           request_id(request.scope), charger(gateway, principal))
    passed = await pass_through(gateway, NativeTurn(gateway, body, owner, items, history), native, headers)
    if passed is None:
        return None
    gateway.metrics.chats[(passed.routed.label, body.stream)] += 1
    annotate(request.scope, key=principal.name if principal else None, model=body.model, stream=body.stream,
             passthrough=True)
    if passed.usage is not None:
        annotate(request.scope, prompt_tokens=passed.usage.prompt_tokens,
                 completion_tokens=passed.usage.completion_tokens, served_by=passed.served_by)
    return passed.response


async def _events(gateway: Gateway, turn: _Turn, stream: ChatStream, rid: str | None,
                  namespaces: dict[str, str]) -> AsyncIterator[bytes]:
    events = ResponseEvents(namespaces)
    model, finish_reason = turn.body.model, None
    started = turn.response(model, "in_progress", [], None)
    # the events of one upstream chunk go out in one write (the first chunk is already here: no delay)
    pending = [events.event("response.created", response=started),
               events.event("response.in_progress", response=started)]
    try:
        async for chunk in stream:
            model = str(chunk.raw.get("model") or model) if chunk.raw else model
            finish_reason = chunk.finish_reason or finish_reason
            pending.extend(events.feed(chunk))
            if pending:
                yield b"".join(pending)
                pending = []
        pending.extend(events.finish(cut=finish_reason == "length"))
        await stream.aclose()
        final = turn.response(model, "completed", events.output, stream.usage, finish_reason=finish_reason)
        await turn.keep(gateway.responses, final)
        pending.append(events.event(f"response.{final['status']}", response=final))
        yield LastFrame(b"".join(pending))
    except Exception as exc:
        if isinstance(exc, MindgateError):
            log.warning("response stream of request %s failed mid-way: %s", rid, exc)
            message = str(exc)
        else:
            log.error("response stream of request %s failed mid-way", rid, exc_info=sys.exc_info())
            message = f"the stream failed: {type(exc).__name__}; request id {rid}"
        failed = turn.response(model, "failed", events.output, None,
                               error={"code": "server_error", "message": message})
        pending.append(events.event("response.failed", response=failed))
        yield LastFrame(b"".join(pending))
    finally:
        await stream.aclose()


@router.get("/v1/responses/{response_id}")
async def retrieve_response(response_id: str, request: Request) -> Response:
    """A stored response (its owner only)."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    found = await _log_of(gateway).load(response_id, _owner(request, principal))
    return JSONBytes(found.response)


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Response:
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    await _log_of(gateway).delete(response_id, _owner(request, principal))
    return JSONBytes({"id": response_id, "object": "response", "deleted": True})


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request,
                           limit: Annotated[int, Query(ge=1, le=100)] = 20,
                           order: Annotated[Literal["asc", "desc"], Query()] = "desc",
                           after: Annotated[str | None, Query(max_length=256)] = None) -> Response:
    """The input items of a stored response (OpenAI's list shape; ``order`` desc by default)."""
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    found = await _log_of(gateway).load(response_id, _owner(request, principal))
    items = list(found.input_items if order == "asc" else reversed(found.input_items))
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequestError(f"`after` names no input item of {response_id!r}")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return JSONBytes({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                      "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})
