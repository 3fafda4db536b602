"""Rolling summaries of the turns a conversation no longer has room for, and the cache that makes them cheap.

A :class:`Summarizer` turns ``(previous summary, newly dropped turns)`` into a new :class:`RollingSummary`:
an abstract summary written by a (small, local) chat model, chunk by chunk so every call fits the
summariser's own context, plus the user's own first-person statements carried verbatim (``I live in
Lisbon.``, ``My dog is called Biscuit.``), newest first within half of the block's budget. The verbatim part
is there because the default summariser is the cheapest local model, and a 135M-parameter model does not
reliably keep a name or a number through several rounds of re-summarising; what the user said about
themselves is what later turns most often need.

A :class:`StepCache` remembers, per conversation, what earlier requests already did to its oldest turns:
``"summary"`` entries (the rolling summary of the first ``covered`` messages) and ``"memory"`` entries (the
first ``covered`` messages were written to long-term memory). An entry is valid for a request only when the
digest of that request's first ``covered`` messages equals the entry's ``prefix``: an edited or different
history never reuses another's summary. Entries live in the memory store (SQLite or PostgreSQL, so they
survive restarts and are shared by workers) behind a small in-process LRU, so the hot path of a long
conversation reads no database at all.

A conversation is identified by the digest of its first non-system message; system messages are not part
of any digest, since the pipeline rewrites them (recalled memories) from one request to the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mindgate.context._tokens import DEFAULT_ESTIMATOR, TokenEstimator
from mindgate.memory.stores._base import ContextSummary
from mindgate.providers._base import message_text

if TYPE_CHECKING:
    from mindgate.memory.stores._base import MemoryStore
    from mindgate.providers._base import ChatModel

Message = dict[str, Any]
SUMMARY_PREFIX = "Summary of the earlier conversation:"
FACTS_PREFIX = "What the user said about themselves earlier (verbatim):"
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|[Mm]y|[Mm]e|[Mm]ine|[Ww]e|[Oo]ur|[Uu]s)\b")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_MAX_FACT_CHARS = 300
_SUMMARY_SYSTEM = ("You summarise conversations for an assistant that can no longer see them. Write a short, "
                   "factual summary in plain sentences. Always keep every fact the user stated about themselves "
                   "(names, places, numbers, preferences, dates), then what was asked and answered, decisions and "
                   "open questions. Keep the facts of the summary so far. No preamble.")


def _canonical(message: Message) -> bytes:
    """What identifies a message in a digest: its role, its text (incl. tool calls) and its tool call id."""
    text = "\x1e".join((str(message.get("role", "")), message_text(message), str(message.get("tool_call_id") or "")))
    try:
        return text.encode("utf-8") + b"\x1f"
    except UnicodeEncodeError:  # a lone surrogate: still a stable digest
        return text.encode("utf-8", "surrogatepass") + b"\x1f"


def conversation_key(rest: Sequence[Message]) -> str:
    """The digest of a conversation's first non-system message (``""`` for an empty one)."""
    return hashlib.sha256(_canonical(rest[0])).hexdigest()[:32] if rest else ""


def prefix_digests(rest: Sequence[Message], positions: Iterable[int]) -> dict[int, str]:
    """``{n: digest of rest[:n]}`` for each wanted ``n`` (one pass over the messages up to the largest)."""
    wanted = sorted({n for n in positions if 0 <= n <= len(rest)})
    out: dict[int, str] = {}
    digest = hashlib.sha256()
    done = 0
    for n in wanted:
        for message in rest[done:n]:
            digest.update(_canonical(message))
        done = n
        out[n] = digest.copy().hexdigest()[:32]
    return out


def _spoken(message: Message) -> str:
    """A message's text for a transcript: its content, and tool calls as ``name(arguments)``."""
    text = message_text({k: v for k, v in message.items() if k != "tool_calls"})
    calls = [c.get("function") or {} for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    return " ".join([text, *(f"[{f.get('name')}({f.get('arguments') or ''})]" for f in calls)]).strip()


def transcript(turns: Sequence[Message], limit_chars: int) -> str:
    """``role: text`` lines, each cut to ``limit_chars``."""
    lines = []
    for message in turns:
        text = " ".join(_spoken(message).split())
        if len(text) > limit_chars:
            text = text[:limit_chars] + " ..."
        lines.append(f"{message.get('role', 'user')}: {text}")
    return "\n".join(lines)


def stated_facts(turns: Sequence[Message]) -> list[str]:
    """The user's first-person statements in ``turns`` (sentences, not questions), in order."""
    out: list[str] = []
    for message in turns:
        if message.get("role") != "user":
            continue
        for sentence in _SENTENCE.findall(message_text(message)):
            sentence = " ".join(sentence.split())
            if sentence and not sentence.endswith("?") and _FIRST_PERSON.search(sentence):
                out.append(sentence[:_MAX_FACT_CHARS])
    return out


@dataclass(frozen=True)
class RollingSummary:
    """What stands for the dropped turns: the model's ``summary`` and the user's verbatim ``facts``."""

    summary: str = ""
    facts: tuple[str, ...] = ()

    def render(self) -> str:
        """The text of the system block sent to the model ("" when empty)."""
        parts = [f"{SUMMARY_PREFIX} {self.summary}"] if self.summary else []
        if self.facts:
            parts.append(f"{FACTS_PREFIX} " + " ".join(self.facts))
        return "\n".join(parts)

    def dumps(self) -> str:
        return json.dumps({"summary": self.summary, "facts": list(self.facts)}, ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> RollingSummary:
        try:
            data = json.loads(text)
            return cls(str(data.get("summary") or ""), tuple(str(f) for f in data.get("facts") or []))
        except (ValueError, AttributeError):
            return cls(text)


@dataclass
class Summarizer:
    """Rolling summaries by ``model``.

    ``max_summary_tokens`` caps the model's summary and, separately, the verbatim facts (estimated tokens);
    each call's prompt (instructions, the summary so far, a chunk of turns) fits ``context_length``
    (default: the model's own, else 2048) with room for the reply. ``calls`` counts model calls.
    """

    model: ChatModel
    max_summary_tokens: int = 256
    context_length: int | None = None
    estimator: TokenEstimator = DEFAULT_ESTIMATOR
    calls: int = 0

    def chunk_budget(self) -> int:
        """Tokens of turns one call may carry."""
        context = self.context_length or self.model.context_length or 2048
        overhead = self.estimator.text_tokens(_SUMMARY_SYSTEM) + 64
        return max(64, context - overhead - 2 * self.max_summary_tokens)

    def chunks(self, turns: Sequence[Message]) -> list[Sequence[Message]]:
        """Greedy runs of turns within :meth:`chunk_budget` (a turn alone over it is cut in the transcript)."""
        budget = self.chunk_budget()
        out: list[Sequence[Message]] = []
        start = used = 0
        for i, message in enumerate(turns):
            line = f"{message.get('role', 'user')}: {_spoken(message)}"
            cost = min(self.estimator.text_tokens(line) + 1, budget)
            if used and used + cost > budget:
                out.append(turns[start:i])
                start, used = i, 0
            used += cost
        if start < len(turns):
            out.append(turns[start:])
        return out

    async def extend(self, previous: RollingSummary, turns: Sequence[Message], *,
                     cap: int | None = None) -> tuple[RollingSummary, int]:
        """The summary of (what ``previous`` summarises) followed by ``turns``, and the model calls it took;
        ``cap`` (default ``max_summary_tokens``, never above it) bounds the summary and the facts each."""
        cap = min(cap or self.max_summary_tokens, self.max_summary_tokens)
        summary = previous.summary
        chunks = self.chunks(turns)
        for chunk in chunks:
            summary = await self._summarize_chunk(summary, chunk, cap)
        facts: list[str] = []
        used = 0
        for fact in reversed(list(dict.fromkeys([*previous.facts, *stated_facts(turns)]))):
            used += self.estimator.text_tokens(fact) + 1
            if used > cap:
                break
            facts.append(fact)
        return RollingSummary(summary, tuple(reversed(facts))), len(chunks)

    async def _summarize_chunk(self, previous: str, turns: Sequence[Message], cap: int) -> str:
        limit_chars = max(200, self.chunk_budget() * 3 // max(1, len(turns)))
        prompt = (f"Summary so far:\n{previous}\n\n" if previous else "") + (
            f"Conversation:\n{transcript(turns, limit_chars)}\n\nWrite the updated summary.")
        self.calls += 1
        response = await self.model.acomplete([{"role": "system", "content": _SUMMARY_SYSTEM},
                                               {"role": "user", "content": prompt}],
                                              max_tokens=cap, temperature=0.0)
        text = " ".join((response.content or "").split())
        if not text:  # a model that returns nothing must still not lose the turns: keep an extract
            text = " ".join(filter(None, [previous, transcript(turns, 160).replace("\n", " ")]))
        while (tokens := self.estimator.text_tokens(text)) > cap:
            text = text[: max(1, len(text) * cap // tokens - 8)].rstrip() + " ..."
        return text


@dataclass
class StepCache:
    """Per-conversation fitting steps (see the module docstring): the store when there is one, behind an
    in-process LRU of ``size`` conversations. Store reads and writes run in worker threads."""

    store: MemoryStore | None = None
    size: int = 1024
    per_conversation: int = 8
    _lru: OrderedDict[tuple[str, str, str], list[ContextSummary]] = field(default_factory=OrderedDict)

    async def entries(self, partition: str, conversation: str, kind: str) -> list[ContextSummary]:
        """The conversation's entries of ``kind``, most covered first."""
        key = (partition, conversation, kind)
        cached = self._lru.get(key)
        if cached is None:
            cached = [] if self.store is None else await asyncio.to_thread(
                self.store.context_summaries, partition, conversation, kind, limit=self.per_conversation)
            self._remember(key, cached)
        else:
            self._lru.move_to_end(key)
        return cached

    async def put(self, entry: ContextSummary) -> None:
        key = (entry.partition, entry.conversation, entry.kind)
        if self.store is not None:
            await asyncio.to_thread(self.store.put_context_summary, entry)
        entries = [e for e in self._lru.get(key, []) if e.prefix != entry.prefix]
        entries.append(entry)
        entries.sort(key=lambda e: e.covered, reverse=True)
        self._remember(key, entries[: self.per_conversation])

    def _remember(self, key: tuple[str, str, str], entries: list[ContextSummary]) -> None:
        self._lru[key] = entries
        self._lru.move_to_end(key)
        while len(self._lru) > self.size:
            self._lru.popitem(last=False)
