"""The Responses API's wire format, translated to and from chat completions (the form every target takes).

Request side: ``input`` (a string, or items: messages with ``input_text`` / ``input_image`` / ``output_text``
parts, ``function_call``, ``function_call_output``; ``reasoning`` items are dropped) becomes chat messages;
function ``tools`` (also those grouped in ``namespace`` tools) and ``tool_choice`` become their chat forms;
``text.format`` becomes a response format (``json_schema`` goes through the structured-output ladder of
:mod:`mindgate.providers._structured`). A hosted tool that is merely offered (``web_search``) is left out of
what the model sees; anything else the gateway cannot serve (forcing such a tool, an ``input_file`` part,
an item reference) is a 400 that names it.

Response side: a :class:`~mindgate.providers._base.ChatResponse` becomes the ``output`` items (a message with
``output_text``, and one ``function_call`` item per tool call) of a ``response`` object.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mindgate.errors import InvalidRequestError
from mindgate.providers._base import Usage

log = logging.getLogger("mindgate.gateway")

Message = dict[str, Any]
Item = dict[str, Any]
_MESSAGE_ROLES = ("user", "assistant", "system", "developer")


class _RandomHex:
    """128-bit random ids from the OS's cryptographic source, read 64 ids at a time: one system call where a
    Responses request makes three ids; each id still gets 16 bytes of its own."""

    _BATCH = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)  # a forked child must not repeat the parent's ids

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(16 * self._BATCH), 0
            start = self._at
            self._at = start + 16
            return self._pool[start:start + 16].hex()


_random_hex = _RandomHex()


def new_id(prefix: str) -> str:
    """An OpenAI-style id: ``resp_...``, ``msg_...``, ``fc_...``, ``call_...`` (32 random hex digits)."""
    return f"{prefix}_{_random_hex()}"


# -- request: input items -> chat messages ---------------------------------------------------------------


def normalise_input(raw: str | Sequence[Any]) -> list[Item]:
    """The request's ``input`` as a list of items (a string is one user message), each given an ``id`` if it
    has none (so ``GET /v1/responses/{id}/input_items`` can list them)."""
    if isinstance(raw, str):
        return [{"type": "message", "id": new_id("msg"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": raw}]}]
    items: list[Item] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"`input[{index}]` is a {type(item).__name__}, not an object",
                                      hint="send input items as objects (e.g. {\"role\": \"user\", \"content\": ...})")
        kind = item.get("type", "message" if "role" in item else None)
        if kind is None:
            raise InvalidRequestError(f"`input[{index}]` has neither `type` nor `role`",
                                      hint="give each input item a `type` (message, function_call, "
                                           "function_call_output) or a `role`")
        out = {**item, "type": kind}
        if "id" not in out or not out["id"]:
            out["id"] = new_id({"message": "msg", "function_call": "fc", "function_call_output": "fco"}
                               .get(kind, "item"))
        items.append(out)
    return items


def _parts(content: Any, where: str, role: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"`{where}.content` must be a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text"):
            key = "refusal" if kind == "refusal" else "text"
            parts.append({"type": "text", "text": str(part.get(key, ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not url:
                raise InvalidRequestError(f"`{where}.content[{index}]` is an input_image without `image_url`",
                                          hint="this gateway has no Files API: send the image as a URL or a "
                                               "data: URL in `image_url`")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequestError(f"`{where}.content[{index}]` has type {kind!r}, which this gateway cannot "
                                      "pass to its models", hint="use input_text or input_image parts (an "
                                                                 "input_file needs OpenAI's Files API)")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    if role != "user":
        raise InvalidRequestError(f"`{where}` holds an image in a {role} message; only user messages may")
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "\n".join(str(p.get("text", "")) for p in output if isinstance(p, dict) and "text" in p)
    return json.dumps(output, ensure_ascii=False)


def items_to_messages(items: Sequence[Item]) -> list[Message]:
    """Chat messages for input items (consecutive function calls form one assistant message)."""
    messages: list[Message] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        kind = item["type"]
        if kind == "message":
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                raise InvalidRequestError(f"`{where}.role` is {role!r}", hint=f"use one of {', '.join(_MESSAGE_ROLES)}")
            if "content" not in item:
                raise InvalidRequestError(f"`{where}` is a message without `content`")
            # "developer" is the Responses name of the system role; the chat servers behind the gateway
            # (llama.cpp, vLLM, LM Studio) only know "system", which every chat API accepts
            chat_role = "system" if role == "developer" else str(role)
            messages.append({"role": chat_role, "content": _parts(item["content"], where, chat_role)})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not call_id or not name:
                raise InvalidRequestError(f"`{where}` is a function_call without `call_id` and `name`")
            call = {"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": str(item.get("arguments") or "{}")}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # parallel calls, or text then calls
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not item.get("call_id"):
                raise InvalidRequestError(f"`{where}` is a function_call_output without `call_id`")
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            log.debug("dropping a reasoning input item (chat completions has no place for it)")
        else:
            raise InvalidRequestError(f"`{where}` has type {kind!r}, which this gateway cannot serve",
                                      hint="send message, function_call and function_call_output items "
                                           "(item references and built-in tool calls need OpenAI's own servers)")
    return messages


# -- request: tools, tool_choice, text.format -------------------------------------------------------------


@dataclass
class ToolSet:
    """Function ``tools`` in the chat form, plus what the translation needs to answer in Responses terms.

    ``namespaces`` maps a function that came from a ``namespace`` tool to that namespace (its calls carry it
    back); ``ignored`` names the offered tools the gateway cannot run (hosted built-ins such as
    ``web_search``, freeform ``custom`` tools): they are left out of what the model sees."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _chat_function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if not tool.get("name"):
        raise InvalidRequestError(f"`{where}` is a function tool without `name`")
    function = {"name": tool["name"]}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def chat_tools(tools: Sequence[Any]) -> ToolSet:
    """The offered tools as a :class:`ToolSet`. Function tools, and the function tools grouped in a
    ``namespace`` tool, become chat functions; a tool the gateway cannot run is only offered (the model
    never sees it) and listed in ``ignored``, because agents such as Codex CLI always offer hosted tools.
    Forcing such a tool with ``tool_choice`` is a 400 (see :func:`chat_tool_choice`)."""
    out = ToolSet()
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(kind, str):
            raise InvalidRequestError(f"`tools[{index}]` has no `type`",
                                      hint='declare function tools as {"type": "function", "name": ...}')
        members: list[tuple[dict[str, Any], str, str | None]] = \
            [(tool, f"tools[{index}]", None)] if kind == "function" else []
        if kind == "namespace":
            group = str(tool.get("name") or "")
            members = [(member, f"tools[{index}].tools[{position}]", group)
                       for position, member in enumerate(tool.get("tools") or []) if isinstance(member, dict)
                       and member.get("type") == "function"]
            out.ignored += [f"{group}.{member.get('name')}" for member in tool.get("tools") or []
                            if isinstance(member, dict) and member.get("type") != "function"]
        elif kind != "function":
            out.ignored.append(str(tool.get("name") or kind))
        for member, where, space in members:
            function = _chat_function(member, where)
            name = function["function"]["name"]
            if name in seen:
                raise InvalidRequestError(f"`{where}` declares the function {name!r} a second time",
                                          hint="give every function tool (namespaces included) its own name")
            seen.add(name)
            out.tools.append(function)
            if space:
                out.namespaces[name] = space
    if out.ignored:
        log.info("/v1/responses: tools the gateway cannot run are not offered to the model: %s",
                 ", ".join(out.ignored))
    return out


def chat_tool_choice(choice: Any) -> Any:
    """``tool_choice`` in the chat form; forcing a tool that is not a function (``{"type": "web_search"}``)
    is a 400 naming it, since the gateway cannot run it."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequestError(f"`tool_choice` {json.dumps(choice)[:100]} is not supported here",
                              hint='use "auto", "none", "required" or {"type": "function", "name": ...}')


def text_format(text: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(chat ``response_format``, json_schema spec for the structured-output ladder) for ``text.format``."""
    fmt = (text or {}).get("format")
    if fmt is None or fmt.get("type") == "text":
        return None, None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}, None
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequestError("`text.format` of type json_schema needs a `schema` object")
        return None, {"name": str(fmt.get("name") or "response"), "schema": fmt["schema"]}
    raise InvalidRequestError(f"`text.format.type` {fmt.get('type')!r} is not one of text, json_object, json_schema")


# -- response: chat answer -> output items -----------------------------------------------------------------


def output_items(content: str | None, tool_calls: Sequence[dict[str, Any]], *,
                 namespaces: dict[str, str] | None = None, cut: bool = False) -> list[Item]:
    """The ``output`` of a response: the answer's text as a message item (``incomplete`` when the output
    limit ``cut`` it, as OpenAI marks it), then one item per tool call (with its ``namespace`` when the
    function came from a namespace tool)."""
    items: list[Item] = []
    if content:
        items.append(message_item(new_id("msg"), content, "incomplete" if cut else "completed"))
    for call in tool_calls:
        function = call.get("function") or {}
        item = function_call_item(call.get("id"), str(function.get("name") or ""), namespaces or {})
        item.update(arguments=function.get("arguments") or "{}", status="completed")
        items.append(item)
    return items


def mcp_call_item(record: dict[str, Any]) -> Item:
    """A tool call the gateway ran (one ``mindgate.tool_calls`` record) as OpenAI's ``mcp_call`` item."""
    failed = bool(record.get("is_error"))
    return {"type": "mcp_call", "id": new_id("mcp"), "server_label": record.get("server", ""),
            "name": record.get("tool", ""), "arguments": record.get("arguments") or "{}",
            "output": None if failed else record.get("output"),
            "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": record.get("output")}]}
            if failed else None, "status": "failed" if failed else "completed"}


def mcp_call_items(trace: Any) -> list[Item]:
    """The ``mcp_call`` items of a finished answer's ``mindgate`` trace (none without one)."""
    records = trace.get("tool_calls") if isinstance(trace, dict) else None
    return [mcp_call_item(r) for r in records or [] if isinstance(r, dict)]


def function_call_item(call_id: str | None, name: str, namespaces: dict[str, str]) -> Item:
    """A ``function_call`` output item (in progress, no arguments yet)."""
    item: Item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id or new_id("call"),
                  "name": name, "arguments": "", "status": "in_progress"}
    if name in namespaces:
        item["namespace"] = namespaces[name]
    return item


def message_item(item_id: str, text: str, status: str = "completed") -> Item:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def usage_body(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def output_messages(output: Sequence[Item]) -> list[Message]:
    """A response's output as chat messages (to continue the conversation with ``previous_response_id``)."""
    return items_to_messages([item for item in output if item.get("type") in ("message", "function_call")])


def response_object(request: dict[str, Any], *, response_id: str, model: str, status: str,
                    output: list[Item], usage: Usage | None, created_at: int | None = None,
                    error: dict[str, Any] | None = None, incomplete: str | None = None) -> dict[str, Any]:
    """The ``response`` object, echoing the request's settings as OpenAI does."""
    text = request.get("text") or {"format": {"type": "text"}}
    return {
        "id": response_id, "object": "response", "created_at": created_at or int(time.time()), "status": status,
        "background": False, "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None, "model": model, "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request.get("store", True), "temperature": request.get("temperature", 1.0), "text": text,
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0), "truncation": request.get("truncation") or "disabled",
        "usage": usage_body(usage) if usage is not None else None, "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
