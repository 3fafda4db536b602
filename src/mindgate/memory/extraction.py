"""``add(infer=True)``: one LLM call that extracts facts and decides ADD / UPDATE / DELETE / NONE.

The model sees the most similar existing memories under short integer ids (0, 1, 2, ...), never the real
ids, and answers JSON matching :data:`DECISION_SCHEMA`. :func:`decisions_validator` maps the integers back
and rejects ids that were not shown, so a confused model cannot touch a memory it was not given (the
rejection is shown to the model for one retry by :func:`mindgate.providers.structured.complete_json`).

The system prompt is ~300 tokens: with a conversation it fits a 4k-token local context comfortably
(mem0's prompt alone is ~8.6k tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mindgate.memory.stores.base import MemoryRecord

SYSTEM_PROMPT = """You maintain long-term memory about a user for an AI assistant.
1. From the CONVERSATION, extract durable facts worth remembering: preferences, biography, plans,
relationships, possessions, health, work. Write each as one short, self-contained sentence.
Ignore greetings, small talk and what the assistant said unless the user confirmed it.
2. Compare each fact with the EXISTING memories (shown as "id: text") and choose one event:
- ADD: new information. Give "text".
- UPDATE: changes or refines an existing memory (e.g. a move, a new preference). Give its "id" and the
  full new "text".
- DELETE: the conversation says an existing memory is no longer true and nothing replaces it. Give its "id".
- NONE: already known. Give its "id".
Give "sources": the numbers of the conversation lines the fact comes from.
Answer with JSON only: {"memory": [{"event": "ADD", "text": "...", "sources": [1]}]}.
If nothing is worth remembering, answer {"memory": []}."""

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "memory": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "event": {"type": "string", "enum": ["ADD", "UPDATE", "DELETE", "NONE"]},
                    "id": {"type": "integer"},
                    "text": {"type": "string"},
                    "sources": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["event"],
            },
        }
    },
    "required": ["memory"],
}


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


def decisions_validator(existing: Sequence[MemoryRecord], n_messages: int) -> Callable[[Any], list[Decision]]:
    """A validator for complete_json: parses the answer and maps short ids back to records.
    Raises ValueError (with a message meant for the model) on anything it cannot apply safely."""

    def validate(parsed: Any) -> list[Decision]:
        if isinstance(parsed, list):  # a bare list of decisions is a common small-model answer
            parsed = {"memory": parsed}
        try:
            answer = _Answer.model_validate(parsed)
        except ValidationError as exc:
            raise ValueError(f"the JSON does not match the schema: {exc.errors()[0]['msg']} at "
                             f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}") from None
        out = []
        for n, item in enumerate(answer.memory):
            text = (item.text or "").strip() or None
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
            sources = sorted({s for s in item.sources if 1 <= s <= n_messages})
            out.append(Decision(item.event, text, target, sources))
        return out

    return validate
