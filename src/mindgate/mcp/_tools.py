"""The memory tools: names, JSON schemas, descriptions, annotations and what each one does.

One table serves both the MCP server (:mod:`mindgate.mcp._server`) and the gateway's tool loop
(``memory_mode: tool`` offers ``search_memory`` from it), so a model sees the same tool everywhere.

Contracts:

* The scope (user / agent / run) is never a tool argument: the caller of :meth:`MemoryTools.call` fixes
  it (the API key's user over HTTP, ``--user`` over stdio). Metadata filters that name a scope key are
  refused, so no argument can widen or move the scope.
* Arguments are validated against the published schema before anything runs; a violation, like any
  :class:`~mindgate.errors.MindgateError` from the Memory API, is a :class:`ToolFailure` whose message
  says what was wrong and what to do (the same text the REST API gives). Nothing else is caught here.
* Results are JSON objects, trimmed for a model to read: no scope ids (they are the caller's own), no
  content hashes, no empty fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from mindgate.errors import InvalidRequestError, MindgateError, NotFoundError
from mindgate.memory._inputs import SCOPE_KEYS
from mindgate.pipeline._remember import ACTING_LLM

ScopeArgs = Mapping[str, Any]
Handler = Callable[[Any, ScopeArgs, dict[str, Any]], Awaitable[Any]]

MAX_TEXT = 100_000
_DROPPED = frozenset({"hash", *SCOPE_KEYS})


class ToolFailure(Exception):
    """A tool call that failed in a way the model can read and correct (an MCP ``isError`` result)."""


@dataclass(frozen=True)
class Annotations:
    """MCP tool annotations (hints for hosts, e.g. to ask before a destructive call)."""

    title: str
    read_only: bool
    destructive: bool
    idempotent: bool


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what a model sees (name, description, input schema, annotations) and what it runs."""

    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: Annotations
    handler: Handler

    def openai_function(self) -> dict[str, Any]:
        """The tool in OpenAI's chat ``tools`` shape."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.input_schema}}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_MEMORY_ID = {"type": "string", "minLength": 1, "maxLength": 128,
              "description": "The memory's id, as returned by search_memory, list_memories or add_memory."}
_FILTERS = {"type": "object",
            "description": 'Optional metadata filters, e.g. {"category": "food"}. Operators: '
                           '{"field": {"in": [...]}}, {"gte": n}, {"lte": n}, {"ne": v}, {"contains": "text"}; '
                           'combine with {"AND": [...]} / {"OR": [...]}.'}
_METADATA = {"type": "object", "description": 'Optional labels stored with the memory, e.g. {"category": "food"}.'}


# -- handlers --------------------------------------------------------------------------------------------


def _trim(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in _DROPPED and v is not None}


def _no_scope_in(filters: Any, where: str = "filters") -> None:
    """Refuse scope keys anywhere in ``filters``: the scope is fixed by the server, never by an argument."""
    if isinstance(filters, dict):
        for key, value in filters.items():
            if key in SCOPE_KEYS:
                raise InvalidRequestError(f"`{where}` may not name {key}: the scope is fixed by the server",
                                          hint="filter on metadata fields only")
            _no_scope_in(value, where)
    elif isinstance(filters, list):
        for value in filters:
            _no_scope_in(value, where)


async def _add(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    text, messages = args.get("text"), args.get("messages")
    if (text is None) == (messages is None):
        raise InvalidRequestError("give exactly one of `text` (one fact) or `messages` (a conversation)",
                                  hint='e.g. {"text": "Prefers green tea"}')
    payload = text if text is not None else messages
    infer = bool(args.get("infer", False))
    llm_for = ACTING_LLM.get()  # on the gateway: extraction is a model call made for the request's API key
    llm = llm_for(memory.llm) if infer and llm_for is not None else None
    result = await memory.add(payload, metadata=args.get("metadata"), infer=infer, llm=llm, **scope)
    return {"results": [_trim(r) for r in result.get("results", [])]}


async def _search(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    filters = args.get("filters")
    _no_scope_in(filters)
    result = await memory.search(args["query"], limit=int(args.get("limit", 5)), filters=filters, **scope)
    return {"results": [_trim(r) for r in result.get("results", [])]}


async def _list(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    filters = args.get("filters")
    _no_scope_in(filters)
    limit, offset = int(args.get("limit", 20)), int(args.get("offset", 0))
    result = await memory.get_all(filters=filters, limit=limit, offset=offset, **scope)
    items = [_trim(r) for r in result.get("results", [])]
    return {"results": items, "limit": limit, "offset": offset}


async def _get(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    found = await memory.get(args["memory_id"], **scope)
    if found is None:
        raise NotFoundError(f"memory {args['memory_id']!r} not found",
                            hint="search_memory or list_memories shows valid ids")
    return _trim(found)


async def _update(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    result = await memory.update(args["memory_id"], args["text"], metadata=args.get("metadata"), **scope)
    return _trim(result)


async def _delete(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    return await memory.delete(args["memory_id"], **scope)


async def _history(memory: Any, scope: ScopeArgs, args: dict[str, Any]) -> Any:
    rows = await memory.history(args["memory_id"], **scope)
    if not rows:
        raise NotFoundError(f"memory {args['memory_id']!r} has no history", hint="check the id")
    return {"history": [{k: v for k, v in row.items() if v is not None and k != "memory_id"} for row in rows]}


# -- the table -------------------------------------------------------------------------------------------

MEMORY_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "add_memory",
        "Remember something about the user for later conversations. Pass `text` with one short, "
        "self-contained fact (e.g. \"Prefers green tea\"), or `messages` with a conversation to learn from. "
        "Returns the stored memories with their ids; a fact that is already known comes back with event NONE.",
        _object({
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                     "description": "One fact to remember, as a short sentence."},
            "messages": {"type": "array", "minItems": 1, "maxItems": 200,
                         "description": "A conversation to remember instead of `text`.",
                         "items": _object({"role": {"type": "string", "enum": ["user", "assistant"]},
                                           "content": {"type": "string", "maxLength": MAX_TEXT}},
                                          ["role", "content"])},
            "infer": {"type": "boolean", "default": False,
                      "description": "true: a language model extracts the facts and merges them with what is "
                                     "already known (slower). false (default): store the text as given."},
            "metadata": _METADATA,
        }),
        Annotations("Remember a fact", read_only=False, destructive=False, idempotent=False),
        _add,
    ),
    ToolSpec(
        "search_memory",
        "Find what is remembered about the user that is relevant to a question or topic. Use it before "
        "answering anything about the user's preferences, plans, people or past conversations. Returns the "
        "best matches first, each with id, memory and score (higher is more relevant).",
        _object({
            "query": {"type": "string", "minLength": 1, "maxLength": 10_000,
                      "description": "What to look for, in plain words, e.g. \"favourite drink\"."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5,
                      "description": "How many memories to return at most."},
            "filters": _FILTERS,
        }, ["query"]),
        Annotations("Search memories", read_only=True, destructive=False, idempotent=True),
        _search,
    ),
    ToolSpec(
        "list_memories",
        "List the memories stored about the user, newest first, a page at a time.",
        _object({
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20,
                      "description": "Page size."},
            "offset": {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0,
                       "description": "How many memories to skip (for the next page, add the page size)."},
            "filters": _FILTERS,
        }),
        Annotations("List memories", read_only=True, destructive=False, idempotent=True),
        _list,
    ),
    ToolSpec(
        "get_memory",
        "Read one memory by its id.",
        _object({"memory_id": _MEMORY_ID}, ["memory_id"]),
        Annotations("Read a memory", read_only=True, destructive=False, idempotent=True),
        _get,
    ),
    ToolSpec(
        "update_memory",
        "Replace the text of one memory, e.g. when a fact about the user has changed. The old text stays "
        "in memory_history.",
        _object({"memory_id": _MEMORY_ID,
                 "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                          "description": "The new text of the memory."},
                 "metadata": _METADATA}, ["memory_id", "text"]),
        Annotations("Change a memory", read_only=False, destructive=True, idempotent=True),
        _update,
    ),
    ToolSpec(
        "delete_memory",
        "Forget one memory by its id (for example when the user asks you to). memory_history still shows it.",
        _object({"memory_id": _MEMORY_ID}, ["memory_id"]),
        Annotations("Forget a memory", read_only=False, destructive=True, idempotent=True),
        _delete,
    ),
    ToolSpec(
        "memory_history",
        "Show every change to one memory, oldest first: when it was added, updated (old and new text) or "
        "deleted.",
        _object({"memory_id": _MEMORY_ID}, ["memory_id"]),
        Annotations("Memory history", read_only=True, destructive=False, idempotent=True),
        _history,
    ),
)


def _argument_error(tool: str, error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        return f"{tool}: {error.message.replace(' is a required property', '')} is required"
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{tool}: {error.message}; valid arguments: {allowed}"
    return f"{tool}: argument `{where or 'arguments'}`: {error.message}"


class MemoryTools:
    """The memory tools over one memory (an :class:`~mindgate.memory._memory.AsyncMemory`).

    ``names`` picks a subset (in table order); unknown names are a configuration error."""

    def __init__(self, memory: Any, names: frozenset[str] | None = None) -> None:
        self.memory = memory
        known = {spec.name for spec in MEMORY_TOOLS}
        if names is not None and not names <= known:
            raise InvalidRequestError(f"unknown memory tool(s): {', '.join(sorted(names - known))}",
                                      hint=f"memory tools: {', '.join(sorted(known))}")
        self.specs = {s.name: s for s in MEMORY_TOOLS if names is None or s.name in names}
        self._validators = {name: jsonschema.Draft202012Validator(s.input_schema) for name, s in self.specs.items()}

    def get(self, name: str) -> ToolSpec | None:
        return self.specs.get(name)

    async def call(self, name: str, arguments: Mapping[str, Any] | None, scope: ScopeArgs) -> Any:
        """Run tool ``name`` for ``scope``; :class:`ToolFailure` for anything the caller can correct.

        An unknown ``name`` is a :class:`KeyError` (a protocol error, not a tool result)."""
        spec = self.specs[name]
        args = dict(arguments or {})
        error = jsonschema.exceptions.best_match(self._validators[name].iter_errors(args))
        if error is not None:
            raise ToolFailure(_argument_error(name, error))
        if not scope:
            raise ToolFailure(f"{name}: no memory scope is set for this connection; start the server with "
                              "--user (stdio) or use an API key bound to a user (HTTP)")
        try:
            return await spec.handler(self.memory, scope, args)
        except MindgateError as exc:
            raise ToolFailure(f"{name}: {exc}") from exc
