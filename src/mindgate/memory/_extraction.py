"""``add(infer=True)``: one LLM call that extracts facts and decides ADD / UPDATE / DELETE / NONE.

The model sees the most similar existing memories under short integer ids (0, 1, 2, ...), never the real
ids, and answers JSON matching the schema of :func:`decision_model` (pydantic's ``model_json_schema()``).
:func:`decisions_validator` maps the integers back and rejects ids that were not shown, so a confused
model cannot touch a memory it was not given (the rejection is shown to the model for one retry by
:func:`mindgate.providers._structured.complete_json`).

Decoding is bounded so that a small model cannot loop (SmolLM2-135M, left alone, repeats "I'm a nurse."
inside one JSON string until the token cap): the schema caps the number of decisions (``maxItems``,
sized from the conversation) and each text's length (``maxLength``); ids and sources are enums of the
values that exist; with no existing memories only ADD can be chosen. A grammar-constrained engine
(llama.cpp, in process or as a server) therefore cannot produce an unbounded answer, and the token cap
of :func:`plan` covers the longest answer the schema allows. A mild repetition penalty keeps texts from
repeating themselves inside that bound, and :func:`clean_text` drops repeated sentences that remain.

The system prompt is ~250 tokens: with a conversation it fits a 4k-token local context comfortably
(mem0's prompt alone is ~8.6k tokens).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mindgate.memory.stores._base import MemoryRecord, content_hash

FACT_MAX_CHARS = 120
MAX_DECISIONS = 8
MAX_SOURCES = 3
# Tokens per decision at most: ~FACT_MAX_CHARS/3 for the text (short English words are ~4 chars a
# token; digits and names are worse), ~20 for the JSON around it.
_TOKENS_PER_DECISION = FACT_MAX_CHARS // 3 + 24
_TOKENS_OVERHEAD = 16
# One decision per ~200 characters the user and assistant wrote, at least 2.
_CHARS_PER_DECISION = 200
# Sampling for the decision call: greedy, with a light penalty on repeated tokens (OpenAI's
# frequency_penalty, which llama.cpp, LM Studio and Ollama accept too).
SAMPLING: dict[str, Any] = {"temperature": 0.0, "frequency_penalty": 0.3}

SYSTEM_PROMPT = """You maintain long-term memory about a user for an AI assistant.
1. From the CONVERSATION, extract durable facts about the user: preferences, biography, plans,
relationships, possessions, health, work, numbers and names they mention. Write each fact once, as one
short sentence in the third person without "the user" (e.g. "Has a cat named Luna").
Ignore greetings, questions, small talk and what the assistant said unless the user confirmed it.
2. Compare each fact with the EXISTING memories (shown as "id: text") and choose one event:
- ADD: a new fact. Give "text".
- UPDATE: the fact changes an existing memory (a new number, place, or preference). Give its "id" and
  the full new "text".
- DELETE: the user says an existing memory is no longer true and nothing replaces it. Give its "id".
- NONE: already known. Give its "id".
Give "sources": the numbers of the conversation lines the fact comes from.
Answer with JSON only, e.g. {"memory": [{"event": "ADD", "text": "Works as a nurse", "sources": [1]}]}.
If nothing is worth remembering, answer {"memory": []}."""


# Typed as Any so that types built at run time can be indexed in (a static checker cannot follow them).
_LIST: Any = list
_LITERAL: Any = Literal


def decision_model(n_existing: int, n_messages: int, max_items: int = MAX_DECISIONS) -> type[BaseModel]:
    """The answer as a pydantic model, bounded so that a grammar built from its schema is finite.

    Built per call because the bounds are sized from the call: with no existing memories the only event
    is ADD and there is no ``id``; otherwise ``id`` is one of the shown ids. ``sources`` are line numbers
    1..n_messages. The model states what may be asked for; :func:`decisions_validator` accepts more
    (a long text, an unknown id on NONE) and explains the rest to the model.
    """
    events = ("ADD", "UPDATE", "DELETE", "NONE") if n_existing else ("ADD",)
    lines = tuple(range(1, max(n_messages, 1) + 1))
    strict = ConfigDict(extra="forbid")
    fields: dict[str, Any] = {"event": (_one_of(events), ...)}
    if n_existing:
        # Optional without a null branch (a default is not validated): a shown id or no "id" key at all.
        fields["id"] = (_one_of(tuple(range(n_existing))), None)
    fields["text"] = (str, Field(min_length=3, max_length=FACT_MAX_CHARS))
    fields["sources"] = (_LIST[_one_of(lines)], Field(default_factory=list, max_length=MAX_SOURCES))
    item = create_model("Decision", __config__=strict, **fields)
    return create_model("Decisions", __config__=strict, memory=(_LIST[item], Field(max_length=max_items)))


def _one_of(values: tuple[Any, ...]) -> Any:
    """``Literal[values]`` for values known at run time only."""
    return _LITERAL[values]


def decision_schema(n_existing: int, n_messages: int, max_items: int = MAX_DECISIONS) -> dict[str, Any]:
    """The JSON schema of :func:`decision_model` (pydantic's, with ``$defs``/``$ref``), as sent to the model."""
    return decision_model(n_existing, n_messages, max_items).model_json_schema()


@dataclass(frozen=True)
class Plan:
    """Everything one decision call needs: prompt, bounded schema, token cap and sampling options."""

    messages: list[dict[str, Any]]
    schema: dict[str, Any]
    max_tokens: int
    validate: Callable[[Any], list[Decision]]
    options: dict[str, Any] = field(default_factory=lambda: dict(SAMPLING))


def plan(conversation: Sequence[dict[str, Any]], existing: Sequence[MemoryRecord], *,
         custom_instructions: str | None = None, today: date | None = None) -> Plan:
    """The bounded decision call for ``conversation`` against ``existing`` memories.

    The number of decisions allowed grows with what was said (one per ~200 characters, at least 2, at
    most :data:`MAX_DECISIONS`, and at least one per existing memory shown so each can get an event);
    ``max_tokens`` is the longest answer that schema allows.
    """
    spoken = sum(len(m["content"]) for m in conversation if m["role"] in ("user", "assistant"))
    max_items = min(MAX_DECISIONS, max(2, -(-spoken // _CHARS_PER_DECISION), len(existing)))
    return Plan(messages=build_messages(conversation, existing, custom_instructions=custom_instructions,
                                        today=today),
                schema=decision_schema(len(existing), len(conversation), max_items),
                max_tokens=_TOKENS_OVERHEAD + max_items * _TOKENS_PER_DECISION,
                validate=decisions_validator(existing, len(conversation)))


class _Decision(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    id: int | None = None
    text: str | None = Field(default=None, max_length=2000)
    sources: list[int] = Field(default_factory=list)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    memory: list[_Decision]


@dataclass
class Decision:
    """One decision with the real memory id (for UPDATE / DELETE / NONE) and the source messages."""

    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    text: str | None
    target: MemoryRecord | None = None
    sources: list[int] = field(default_factory=list)


def build_messages(conversation: Sequence[dict[str, Any]], existing: Sequence[MemoryRecord], *,
                   custom_instructions: str | None = None, today: date | None = None) -> list[dict[str, Any]]:
    """The prompt: system instructions, then existing memories and numbered conversation lines."""
    system = SYSTEM_PROMPT
    if custom_instructions:
        system += f"\nAdditional instructions:\n{custom_instructions.strip()}"
    system += f"\nToday is {(today or date.today()).isoformat()}."
    memories = "\n".join(f"{i}: {record.memory}" for i, record in enumerate(existing)) or "(none)"
    lines = "\n".join(f"[{n}] {m['role']}: {m['content']}" for n, m in enumerate(conversation, start=1)
                      if m["role"] != "system")
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"EXISTING MEMORIES:\n{memories}\n\nCONVERSATION:\n{lines}"}]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def clean_text(text: str | None) -> str | None:
    """A fact's text without repeated sentences and surrounding space; None when nothing is left.

    A text cut at ``maxLength`` in the middle of a repetition ("Is a nurse. Is a nurse. Is a n") keeps
    its first sentence only.
    """
    if text is None:
        return None
    kept: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text.strip())):
        norm = _norm(sentence)
        if norm and not any(_norm(k).startswith(norm) for k in kept):
            kept.append(sentence)
    return " ".join(kept) or None


def _norm(sentence: str) -> str:
    return " ".join(sentence.lower().rstrip(".!?").split())


def decisions_validator(existing: Sequence[MemoryRecord], n_messages: int) -> Callable[[Any], list[Decision]]:
    """A validator for complete_json: parses the answer and maps short ids back to records.
    Raises ValueError (with a message meant for the model) on anything it cannot apply safely.
    Repeated decisions (same event and text) are kept once."""

    def validate(parsed: Any) -> list[Decision]:
        if isinstance(parsed, list):  # a bare list of decisions is a common small-model answer
            parsed = {"memory": parsed}
        try:
            answer = _Answer.model_validate(parsed)
        except ValidationError as exc:
            raise ValueError(f"the JSON does not match the schema: {exc.errors()[0]['msg']} at "
                             f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}") from None
        out = []
        seen: set[tuple[str, str | None, int | None]] = set()
        for n, item in enumerate(answer.memory):
            text = clean_text(item.text)
            target = None
            if item.event in ("UPDATE", "DELETE", "NONE"):
                if item.id is None or not 0 <= item.id < len(existing):
                    if item.event == "NONE":
                        continue  # "nothing to do" needs no valid id to be harmless
                    shown = f"0..{len(existing) - 1}" if existing else "none were shown"
                    raise ValueError(f"memory[{n}] is {item.event} with id {item.id!r}, but the existing memory "
                                     f"ids are {shown}; use ADD for new facts")
                target = existing[item.id]
            if item.event in ("ADD", "UPDATE") and not text:
                raise ValueError(f"memory[{n}] is {item.event} without a text")
            key = (item.event, content_hash(text) if text else None, item.id if target else None)
            if key in seen:
                continue
            seen.add(key)
            sources = sorted({s for s in item.sources if 1 <= s <= n_messages})
            out.append(Decision(item.event, text, target, sources))
        return out

    return validate
