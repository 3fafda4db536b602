"""A streamed chat answer as the Responses API's semantic events (each with its ``sequence_number``).

The sequence the official SDKs' stream helpers expect: ``response.created``, ``response.in_progress``; per
output item ``response.output_item.added``, then for a message ``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``, ``response.content_part.done``, and for
a function call ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``;
``response.output_item.done``; a tool the gateway ran itself (MCP tool loop) is an ``mcp_call`` item:
added, ``response.mcp_call.completed`` (or ``.failed``) and done at once; finally ``response.completed``
(or ``response.incomplete`` when the output limit cut the answer). A failure after the stream started
ends it with ``response.failed``.
"""

from __future__ import annotations

from typing import Any

from mindgate._json import dumps
from mindgate.gateway._openai_responses import Item, function_call_item, mcp_call_item, message_item, new_id
from mindgate.providers._base import ChatChunk


def _json(data: Any) -> bytes:
    return dumps(data)


class ResponseEvents:
    """Turns chat chunks into Responses events (``feed``), then closes the open items (``finish``).

    ``output`` holds the finished output items, in order, for the final response object; ``namespaces``
    maps functions of namespace tools to their namespace (see ``ToolSet``)."""

    def __init__(self, namespaces: dict[str, str] | None = None) -> None:
        self.namespaces = namespaces or {}
        self.sequence = 0
        self.output: list[Item] = []
        self._text: Item | None = None
        self._text_parts: list[str] = []
        self._calls: dict[int, Item] = {}
        self._delta_key: tuple[str, int] | None = None
        self._delta_head = b""

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + _json(data) + b"\n\n"

    def _text_delta(self, index: int, delta: str) -> bytes:
        """``event("response.output_text.delta", ...)`` byte for byte, with only the delta encoded per chunk:
        the event of every streamed piece of text. The part before the delta is built once per item."""
        assert self._text is not None
        key = (self._text["id"], index)
        if self._delta_key != key:
            self._delta_key = key
            self._delta_head = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                                b'"item_id":' + _json(self._text["id"]) + b',"output_index":' + _json(index)
                                + b',"content_index":0,"delta":')
        sequence = self.sequence
        self.sequence += 1
        return b"%b%b,\"logprobs\":[],\"sequence_number\":%d}\n\n" % (self._delta_head, _json(delta), sequence)

    def _index(self, item: Item) -> int:
        for index, candidate in enumerate(self.output):  # a loop, not next(genexpr): once per streamed delta
            if candidate is item:
                return index
        raise ValueError("not an output item of this response")

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        trace = chunk.raw.get("mindgate") if chunk.raw else None
        if isinstance(trace, dict) and isinstance(trace.get("tool_call"), dict):
            out.extend(self._mcp_call(mcp_call_item(trace["tool_call"])))
        if chunk.content:
            if self._text is None:
                self._text = message_item(new_id("msg"), "", "in_progress")
                self._text["content"] = []
                self.output.append(self._text)
                index = len(self.output) - 1
                out.append(self.event("response.output_item.added", output_index=index, item=self._text))
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                out.append(self.event("response.content_part.added", item_id=self._text["id"],
                                      output_index=index, content_index=0, part=part))
            self._text_parts.append(chunk.content)
            out.append(self._text_delta(self._index(self._text), chunk.content))
        for delta in chunk.tool_calls:
            out.extend(self._call_delta(delta))
        return out

    def _mcp_call(self, item: Item) -> list[bytes]:
        """A tool call the gateway already ran: added, completed (or failed) and done at once."""
        self.output.append(item)
        index = len(self.output) - 1
        return [self.event("response.output_item.added", output_index=index, item=item),
                self.event(f"response.mcp_call.{item['status']}", item_id=item["id"], output_index=index),
                self.event("response.output_item.done", output_index=index, item=item)]

    def _call_delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        position = int(delta.get("index") or 0)
        function = delta.get("function") or {}
        call = self._calls.get(position)
        if call is None:
            call = function_call_item(delta.get("id"), str(function.get("name") or ""), self.namespaces)
            self._calls[position] = call
            self.output.append(call)
            out.append(self.event("response.output_item.added", output_index=len(self.output) - 1,
                                  item=dict(call)))
        elif function.get("name"):
            call["name"] += function["name"]
        piece = function.get("arguments")
        if piece:
            call["arguments"] += piece
            out.append(self.event("response.function_call_arguments.delta", item_id=call["id"],
                                  output_index=self._index(call), delta=piece))
        return out

    def finish(self, *, cut: bool = False) -> list[bytes]:
        """Events that close every open item (the message ``incomplete`` when the output limit ``cut`` it);
        afterwards ``output`` is final."""
        out: list[bytes] = []
        if self._text is not None:
            index, text = self._index(self._text), "".join(self._text_parts)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(self.event("response.output_text.done", item_id=self._text["id"], output_index=index,
                                  content_index=0, text=text, logprobs=[]))
            out.append(self.event("response.content_part.done", item_id=self._text["id"], output_index=index,
                                  content_index=0, part=part))
            self._text.update(status="incomplete" if cut else "completed", content=[part])
            out.append(self.event("response.output_item.done", output_index=index, item=self._text))
            self._text = None
        for call in self._calls.values():
            index = self._index(call)
            call["arguments"] = call["arguments"] or "{}"
            if call["name"] in self.namespaces:  # a name streamed in pieces is only known whole now
                call["namespace"] = self.namespaces[call["name"]]
            out.append(self.event("response.function_call_arguments.done", item_id=call["id"], output_index=index,
                                  name=call["name"], arguments=call["arguments"]))
            call["status"] = "completed"
            out.append(self.event("response.output_item.done", output_index=index, item=call))
        self._calls = {}
        return out
