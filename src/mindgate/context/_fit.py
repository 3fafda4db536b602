"""The fit stage: a conversation made to fit the window of the target that will serve it.

For each target the router considers, :meth:`ContextFitter.fit` is called with that target's context window
and the request's ``max_tokens``; ``budget = window - max_tokens - reserve``. A conversation within the budget
is sent unchanged. One over it is handled by the policy:

* ``error``: :class:`~mindgate.errors.ContextOverflowError` (HTTP 400, code ``context_length_exceeded``)
  naming the tokens needed and the tokens available; the router tries the next target.
* ``truncate``: the sliding window (:func:`~mindgate.context._window.sliding_window`): system messages, then
  the longest run of recent whole turns that fits, starting on a user message; tool calls stay with their
  results.
* ``summarize``: the oldest turns are replaced by a rolling summary (a system block
  ``Summary of the earlier conversation: ...``) written by the summariser model.
* ``memory``: the oldest turns are written to long-term memory in the request's scope (as they are, no LLM
  call), and the memories most relevant to the latest user message are recalled into a system block.

``summarize`` and ``memory`` cut the conversation at *sticky* points: when a cut is needed, the recent turns
kept are brought down to ``keep_ratio`` of the room, and the step (the summary, or the fact that the turns
were stored) is cached per conversation prefix (:class:`~mindgate.context._summary.StepCache`). The next
requests reuse that cut as long as what follows it fits, so a long conversation costs one summariser call
(or one memory write) every several turns, not one per turn, and the prompt prefix stays stable between
cuts. Only when the turns after the cut outgrow the room is a new cut made, extending the summary from the
previous one.

Counting: the calibrated estimate (memoised per message text) picks the cut; when the target has a
tokenizer (the llama.cpp server, the in-process engine, LM Studio's SDK) the result is counted exactly and
trimmed further if the estimate was low. A summariser that fails degrades the request to ``truncate``
(logged, and named in the report) rather than failing it: a request that can be fitted is never refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from mindgate.context._summary import RollingSummary, StepCache, Summarizer, conversation_key, prefix_digests
from mindgate.context._tokens import TokenCount, TokenCounter, byte_bound
from mindgate.context._window import (
    leading_system,
    sliding_window,
    split_system,
    token_budget,
    trim_memories,
    turn_units,
)
from mindgate.errors import ContextOverflowError, MindgateError
from mindgate.memory.stores._base import ContextSummary
from mindgate.providers._base import message_text

if TYPE_CHECKING:
    from mindgate.memory._memory import AsyncMemory
    from mindgate.providers._base import ChatModel

log = logging.getLogger("mindgate.context")

Message = dict[str, Any]
Policy = Literal["error", "truncate", "summarize", "memory"]
POLICIES: tuple[Policy, ...] = ("error", "truncate", "summarize", "memory")
RECALL_HEADER = "Earlier in this conversation (recalled from memory):"
_MAX_REFITS = 3


@dataclass(frozen=True)
class FitReport:
    """What the fit stage did to one request, for the ``X-Mindgate-Context`` response header.

    ``kept``/``dropped`` count non-system messages; ``summarized`` / ``remembered`` how many of the dropped
    ones a summary covers / were written to memory; ``recalled`` memories put back; ``tokens`` the prompt
    sent (``exact`` when counted by the target's tokenizer) out of ``window``; ``summarizer_calls`` made by
    this request; ``fit_ms`` the stage's own time, model calls (summariser, embedder) excluded; ``note`` a
    degradation (e.g. ``summarize-failed``)."""

    policy: str
    target: str
    kept: int
    dropped: int = 0
    summarized: int = 0
    remembered: int = 0
    recalled: int = 0
    tokens: int = 0
    window: int | None = None
    exact: bool = False
    summarizer_calls: int = 0
    fit_ms: float = 0.0
    note: str | None = None

    def header(self) -> str:
        """``policy=summarize kept=12 dropped=30 summarized=30 tokens=3650/4096 fit_ms=0.41``."""
        parts = [f"policy={self.policy}", f"kept={self.kept}", f"dropped={self.dropped}"]
        if self.summarized:
            parts.append(f"summarized={self.summarized}")
        if self.policy == "memory":
            parts += [f"remembered={self.remembered}", f"recalled={self.recalled}"]
        parts.append(f"tokens={self.tokens}/{self.window if self.window is not None else '?'}")
        parts.append(f"fit_ms={self.fit_ms:.2f}")
        if self.note:
            parts.append(f"note={self.note}")
        return " ".join(parts)


@dataclass
class _Cut:
    """The outcome of a sticky cut: where the kept messages start and the block that stands for the rest."""

    start: int
    block: str
    summarized: int = 0
    remembered: int = 0
    recalled: int = 0


@dataclass
class ContextFitter:
    """One request's fit stage (see the module docstring). Built by
    :class:`~mindgate.context._policy.ContextService`; handed to :meth:`Router.acomplete
    <mindgate.routing._router.Router.acomplete>` as ``fit=``, which calls :meth:`fit` per target.

    ``policy`` applies unless ``per_model`` names the target's name or model id. ``memory`` and ``scope``
    (Memory API keyword arguments) enable the ``memory`` policy; without them it falls back to ``summarize``
    (with a summariser) or ``truncate``. ``partition`` keys the step cache (the request's scope partition,
    else the API key's name). ``block_tokens`` caps the summary (and, separately, the verbatim facts) or the
    recalled block, at most 1/8 of a target's budget each.
    After a successful call, :attr:`report` describes it.
    """

    policy: Policy = "error"
    per_model: Mapping[str, Policy] = field(default_factory=dict)
    reserve: int = 64
    counter: TokenCounter = field(default_factory=TokenCounter)
    summarizer: Summarizer | None = None
    cache: StepCache = field(default_factory=StepCache)
    memory: AsyncMemory | None = None
    scope: Mapping[str, str] | None = None
    partition: str = "anonymous"
    keep_ratio: float = 0.4
    block_tokens: int = 256
    recall_limit: int = 5
    report: FitReport | None = None
    summarizer_calls: int = 0
    _model_seconds: float = 0.0
    _done: dict[tuple[int | None, int, str], tuple[Sequence[Message], list[Message], FitReport]] = field(
        default_factory=dict)

    def policy_for(self, target: str, model_id: str | None = None) -> Policy:
        """The policy for one target: ``per_model`` by target name, then by model id, else ``policy``."""
        chosen = self.per_model.get(target) or (self.per_model.get(model_id) if model_id else None) or self.policy
        if chosen == "memory" and (self.memory is None or not self.scope):
            return "summarize" if self.summarizer is not None else "truncate"
        if chosen == "summarize" and self.summarizer is None:
            return "truncate"
        return chosen

    async def fit(self, messages: Sequence[Message], *, window: int | None, max_tokens: int,
                  model: ChatModel | None = None, target: str = "", model_id: str | None = None) -> list[Message]:
        """``messages`` fitted to ``window`` (unchanged when they fit or the window is unknown); raises
        :class:`ContextOverflowError` when the policy is ``error`` or nothing fits. ``model`` is asked for
        exact counts (None: estimate only)."""
        policy = self.policy_for(target, model_id)
        key = (window, max_tokens, f"{policy}:{target}")
        done = self._done.get(key)
        if done is not None and done[0] is messages:  # the same call again (a retry, the next target)
            self.report = done[2]
            return done[1]
        start, model_before = time.perf_counter(), self._model_seconds
        budget = None if window is None else token_budget(window, max_tokens, self.reserve)
        if window is None or budget is None or byte_bound(messages, stop_above=budget) <= budget:
            # the common case, sent as it is: the estimate is the report's count, no tokenizer is asked
            fitted = list(messages)
            report = FitReport(policy, target, kept=len(fitted) - leading_system(fitted), window=window,
                               tokens=self.counter.estimate(fitted),
                               fit_ms=round((time.perf_counter() - start) * 1000, 3))
        else:
            fitted, report = await self._fit(list(messages), window, max_tokens, budget, model, target, policy)
            own = time.perf_counter() - start - (self._model_seconds - model_before)
            report = replace(report, fit_ms=round(own * 1000, 3))
        self._done[key] = (messages, fitted, report)
        self.report = report
        return fitted

    async def _fit(self, messages: list[Message], window: int, max_tokens: int, budget: int, model: ChatModel | None,
                   target: str, policy: Policy) -> tuple[list[Message], FitReport]:
        """A conversation whose byte bound is over ``budget``: counted, then sent or cut by the policy."""
        system, rest = split_system(messages)
        whole = FitReport(policy, target, kept=len(rest), window=window)
        counted = await self.counter.count(messages, model)
        if counted.tokens <= budget:
            return messages, replace(whole, tokens=counted.tokens, exact=counted.exact)
        if policy == "error":
            raise self._overflow(counted, window, max_tokens, budget, target)
        estimated = self.counter.estimate(messages) if counted.exact else counted.tokens
        # work in estimate units; an exact count tells how far the estimate is off for this conversation
        limit = budget if not counted.exact else budget * estimated // max(1, counted.tokens)
        calls_before = self.summarizer_calls
        note = None
        for _ in range(_MAX_REFITS):
            try:
                fitted, report = await self._trim(policy, system, rest, limit, target, window)
            except ContextOverflowError as exc:
                raise self._unfittable(exc, window, max_tokens, budget, target) from None
            except MindgateError as exc:
                if policy not in ("summarize", "memory"):
                    raise
                log.warning("context %s failed for target %s, truncating instead: %s", policy, target, exc)
                policy, note = "truncate", f"{policy}-failed"
                continue
            result = await self.counter.count(fitted, model) if counted.exact else TokenCount(
                self.counter.estimate(fitted), exact=False)
            if result.tokens <= budget:
                return fitted, replace(report, tokens=result.tokens, exact=result.exact,
                                       summarizer_calls=self.summarizer_calls - calls_before, note=note)
            limit -= result.tokens - budget + 8
        raise ContextOverflowError(f"could not fit the conversation into {budget} tokens for target {target!r}",
                                   needed=counted.tokens + max_tokens + self.reserve, available=window,
                                   hint="shorten the last message or raise context.reserve")

    def _overflow(self, counted: TokenCount, window: int, max_tokens: int, budget: int,
                  target: str) -> ContextOverflowError:
        how = "counted" if counted.exact else "estimated"
        needed = counted.tokens + max_tokens + self.reserve
        return ContextOverflowError(
            f"the conversation needs {needed} tokens ({counted.tokens} prompt ({how}) + {max_tokens} output + "
            f"{self.reserve} reserve) but target {target!r} has a context of {window} tokens "
            f"({budget} available for the prompt)", needed=needed, available=window,
            hint="shorten the conversation, lower max_tokens, or let mindgate fit it: set the context policy to "
                 "truncate, summarize or memory (header X-Mindgate-Context or the request's mindgate.context)")

    def _unfittable(self, exc: ContextOverflowError, window: int, max_tokens: int, budget: int,
                    target: str) -> ContextOverflowError:
        needed = (exc.needed or budget) + max_tokens + self.reserve
        return ContextOverflowError(
            f"target {target!r} (context {window}, {budget} tokens for the prompt) cannot hold even the latest "
            f"turn: {exc.message}", needed=needed, available=window,
            hint="shorten the last message or the system prompt, lower max_tokens, or use a larger context")

    # -- the policies -----------------------------------------------------------------------------------

    async def _trim(self, policy: Policy, system: list[Message], rest: list[Message], limit: int, target: str,
                    window: int) -> tuple[list[Message], FitReport]:
        estimator = self.counter.estimator
        if policy == "truncate" or policy == "error":
            kept = sliding_window([*system, *rest], limit - estimator.per_prompt, estimator.message_tokens)
            tail = len(kept) - len(system)
            return kept, FitReport("truncate", target, kept=tail, dropped=len(rest) - tail, window=window)
        cut = await self._sticky_cut(policy, system, rest, limit)
        fitted = [*_with_block(system, cut.block), *rest[cut.start:]]
        return fitted, FitReport(policy, target, kept=len(rest) - cut.start, dropped=cut.start,
                                 summarized=cut.summarized, remembered=cut.remembered, recalled=cut.recalled,
                                 window=window)

    async def _sticky_cut(self, policy: Policy, system: list[Message], rest: list[Message], limit: int) -> _Cut:
        estimator = self.counter.estimator
        costs = [estimator.message_tokens(m) for m in rest]
        suffix = [0] * (len(rest) + 1)
        for i in range(len(rest) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + costs[i]
        block = min(self.block_tokens, limit // 8)  # a small window keeps a small block
        # summarize's block holds a summary and the verbatim facts, each up to `block`
        block_room = (2 if policy == "summarize" else 1) * block + estimator.per_message + 32
        room = limit - estimator.per_prompt - sum(estimator.message_tokens(m) for m in system) - block_room
        starts = _user_starts(rest)
        if not starts or suffix[starts[-1]] > room:
            tail = suffix[starts[-1]] if starts else suffix[0]
            raise ContextOverflowError(f"the system prompt, the room for the {policy} block ({block_room}) and the "
                                       f"last user turn with what follows ({tail}) exceed the budget",
                                       needed=limit - room + tail, available=limit)
        kind: Literal["summary", "memory"] = "summary" if policy == "summarize" else "memory"
        conversation = conversation_key(rest)
        valid = set(starts)
        entries = [e for e in await self.cache.entries(self.partition, conversation, kind) if e.covered in valid]
        digests = prefix_digests(rest, [e.covered for e in entries])
        best = next((e for e in entries if digests.get(e.covered) == e.prefix), None)
        start, text = (best.covered, best.text) if best is not None else (0, "")
        if best is None or suffix[start] > room:
            low = int(room * self.keep_ratio)
            new = next((s for s in starts if s > start and suffix[s] <= low), starts[-1])
            if new <= start:  # cannot happen: the last start fits the room and `start`'s suffix does not
                raise ContextOverflowError("no cut point left", needed=suffix[start], available=room)
            text = await self._step(kind, text, rest[start:new], block)
            await self.cache.put(ContextSummary(self.partition, conversation, new,
                                                prefix_digests(rest, [new])[new], kind, text))
            start = new
        if kind == "summary":
            return _Cut(start, RollingSummary.loads(text).render() if text else "", summarized=start)
        recalled = await self._recall(system, rest, start, block)
        listing = RECALL_HEADER + "\n" + "\n".join(f"- {m}" for m in recalled) if recalled else ""
        return _Cut(start, listing, remembered=start, recalled=len(recalled))

    async def _step(self, kind: str, previous: str, turns: Sequence[Message], block: int) -> str:
        """Summarise ``turns`` onto ``previous`` (summary), or write them to memory (memory)."""
        start = time.perf_counter()
        try:
            return await self._step_call(kind, previous, turns, block)
        finally:
            self._model_seconds += time.perf_counter() - start

    async def _step_call(self, kind: str, previous: str, turns: Sequence[Message], block: int) -> str:
        if kind == "summary":
            assert self.summarizer is not None
            rolled, calls = await self.summarizer.extend(RollingSummary.loads(previous), turns, cap=block)
            self.summarizer_calls += calls
            return rolled.dumps()
        assert self.memory is not None and self.scope is not None
        spoken = [{"role": m["role"], "content": text} for m in turns
                  if m.get("role") in ("user", "assistant") and (text := message_text(m).strip())]
        if spoken:
            await self.memory.add(spoken, infer=False, metadata={"source": "context"},
                                  user_id=self.scope.get("user_id"), agent_id=self.scope.get("agent_id"),
                                  run_id=self.scope.get("run_id"))
        return ""

    async def _recall(self, system: list[Message], rest: list[Message], start: int, block: int) -> list[str]:
        """Memories relevant to the latest user message, within the block: not those already in the kept
        turns, nor those memory-augmented chat already put in the system prompt."""
        assert self.memory is not None and self.scope is not None
        query = next((message_text(m) for m in reversed(rest) if m.get("role") == "user"), "").strip()
        if not query or not self.recall_limit:
            return []
        began = time.perf_counter()
        try:
            found = await self.memory.search(query[:10_000], limit=self.recall_limit, user_id=self.scope.get("user_id"),
                                             agent_id=self.scope.get("agent_id"), run_id=self.scope.get("run_id"))
        finally:
            self._model_seconds += time.perf_counter() - began
        kept = {message_text(m).strip() for m in rest[start:]}
        shown = " ".join(" ".join(message_text(m).split()) for m in system)
        texts = [" ".join(str(r.get("memory", "")).split()) for r in found.get("results", [])]
        budget = block - self.counter.estimator.text_tokens(RECALL_HEADER)
        return trim_memories([t for t in texts if t and t not in kept and t not in shown], budget)


def _user_starts(rest: Sequence[Message]) -> list[int]:
    """Indexes where a kept run may start: the first message of a unit that is a user message."""
    out: list[int] = []
    index = 0
    for unit in turn_units(rest):
        if unit[0].get("role") == "user":
            out.append(index)
        index += len(unit)
    return out


def _with_block(system: list[Message], block: str) -> list[Message]:
    """The system messages with ``block`` added to the first one (many local chat templates take a single
    system message), or as a new system message when there is none with text content."""
    if not block:
        return system
    if system and isinstance(system[0].get("content"), str):
        return [{**system[0], "content": f"{system[0]['content']}\n\n{block}"}, *system[1:]]
    return [{"role": "system", "content": block}, *system]
