"""The Memory API (mem0 v1 shapes; mem0 v2's ``filters=`` accepted too).

:class:`AsyncMemory` is the one implementation; :class:`Memory` is its synchronous facade, generated
method by method (no copy-pasted twin). Every read and write is scoped by at least one of user_id /
agent_id / run_id; every change is one store transaction that also writes its history row.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from mindgate._sync import run_sync
from mindgate.config import MemorySettings, MindgateConfig
from mindgate.errors import ConfigurationError, InvalidRequestError, NotFoundError
from mindgate.memory._expand import comparison_parts, expand
from mindgate.memory._extraction import Decision, plan
from mindgate.memory._filters import parse_filters
from mindgate.memory._inputs import (
    check_limit,
    check_memory_id,
    check_text,
    check_threshold,
    message_ref,
    normalize_messages,
    scope_from,
    validate_metadata,
)
from mindgate.memory._keys import CONVERSATION_ROLES, context_text, fact_text, follows, key_identity, mix
from mindgate.memory._rerank import Reranker, create_reranker
from mindgate.memory._rerank import rerank as _rerank
from mindgate.memory._retrieval import Hit, QueryVectors, SearchMode, fuse, single
from mindgate.memory._search_pool import SearchPool
from mindgate.memory._speaker import query_speaker
from mindgate.memory._timeinfo import TimeQuery, parse_time, query_windows
from mindgate.memory.stores import create_store
from mindgate.memory.stores._base import (
    AddChange,
    Candidate,
    Change,
    ChangeResult,
    DeleteChange,
    MemoryRecord,
    MemoryStore,
    Scope,
    UpdateChange,
    content_hash,
    utcnow,
)
from mindgate.providers import create_embedder
from mindgate.providers._base import ChatModel, Embedder, EmbedderIdentity
from mindgate.providers._structured import complete_json

log = logging.getLogger("mindgate.memory")
P = ParamSpec("P")
T = TypeVar("T")
ProgressCallback = Callable[[int, int], None]

_QUERY_CHARS = 2000  # how much of a conversation is embedded to find similar memories


def _reference(reference_time: datetime | str | None) -> datetime | None:
    """``search``'s ``reference_time`` as a datetime (None: now), or a clear error."""
    if reference_time is None:
        return None
    reference = parse_time(reference_time)
    if reference is None or isinstance(reference_time, int | float):
        raise InvalidRequestError(f"reference_time must be a datetime or an ISO 8601 date-time string, "
                                  f"got {reference_time!r}", hint='e.g. "2024-05-13T12:00:00Z"')
    return reference


def _optional_scope(user_id: str | None, agent_id: str | None, run_id: str | None) -> Scope | None:
    return Scope(user_id, agent_id, run_id) if (user_id or agent_id or run_id) else None


class AsyncMemory:
    """Long-term memory over an :class:`Embedder`, a :class:`MemoryStore` and (for ``infer=True``) a
    :class:`ChatModel`, which is created on first use so that ``infer=False`` never needs one. With a
    :class:`~mindgate.memory._rerank.Reranker`, search reranks its fused candidates."""

    def __init__(self, *, embedder: Embedder, store: MemoryStore,
                 llm: ChatModel | Callable[[], ChatModel] | None = None, settings: MemorySettings | None = None,
                 expected_dims: int | None = None, reranker: Reranker | None = None) -> None:
        self.embedder = embedder
        self.store = store
        self.reranker = reranker
        self.settings = settings or MemorySettings()
        self._llm = llm
        self._expected_dims = expected_dims
        self._opened = False
        self._open_lock = threading.Lock()
        self._query_vectors = QueryVectors(self.settings.query_cache)
        self._searches = SearchPool(self.settings.search_threads)
        # texts embedded by recent adds: the next turn's key context is usually one of them
        self._recent_vectors = QueryVectors(64)

    @classmethod
    def from_config(cls, config: dict[str, Any] | MindgateConfig | None = None) -> AsyncMemory:
        """Build from a mem0-shaped dict (or a :class:`MindgateConfig`); ``None`` means embedded defaults."""
        cfg = config if isinstance(config, MindgateConfig) else MindgateConfig.from_dict(config or {})
        embedder = create_embedder(cfg.embedder.provider, cfg.embedder.config)
        store = create_store(cfg.vector_store)
        memory = cls(embedder=embedder, store=store, llm=lambda: _chat_model(cfg), settings=cfg.memory,
                     expected_dims=cfg.vector_store.config.embedding_model_dims)
        memory.configure_reranker(cfg)
        return memory

    def configure_reranker(self, config: MindgateConfig) -> None:
        """Use ``config.reranker`` (none when it is absent); an ``llm_reranker`` naming no model scores with
        this memory's own chat model."""
        self.reranker = create_reranker(config.reranker, config, lambda: self.llm) if config.reranker else None

    @property
    def llm(self) -> ChatModel:
        if self._llm is None:
            raise ConfigurationError("add(infer=True) needs a chat model and none is configured",
                                     hint="configure `llm`, or call add(..., infer=False)")
        if not isinstance(self._llm, ChatModel):
            self._llm = self._llm()
        return self._llm

    async def _ready(self) -> None:
        if self._opened:
            return
        base = await self.embedder.aidentity()
        identity = key_identity(base, self.settings)
        if self._expected_dims is not None and self._expected_dims != identity.dims:
            # the probed value wins; a store holding vectors of another size refuses to open (naming reindex)
            log.warning("vector_store.config.embedding_model_dims is %d but the embedder %s produces %d; using %d "
                        "(set embedding_model_dims to %d or remove it: mindgate probes it)", self._expected_dims,
                        base.describe(), identity.dims, identity.dims, identity.dims)
        await asyncio.to_thread(self._open_once, base)

    def _open_once(self, base: EmbedderIdentity) -> None:
        with self._open_lock:
            if not self._opened:
                self.store.open(self._follow_plain_store(base))
                self._opened = True

    def _follow_plain_store(self, base: EmbedderIdentity) -> EmbedderIdentity:
        """Fact-augmented keys are on by default for new stores; a store built before (plain keys, same
        embedder) keeps working with plain keys unless ``memory.key_facts`` was set explicitly
        (``mindgate reindex`` then rebuilds it with fact keys). Returns the identity to open the store with."""
        identity = key_identity(base, self.settings)
        if not self.settings.key_facts or "key_facts" in self.settings.model_fields_set:
            return identity
        try:
            recorded = self.store.recorded_identity()
        except NotImplementedError:
            return identity
        plain = self.settings.model_copy(update={"key_facts": False})
        if recorded is not None and recorded != identity and recorded == key_identity(base, plain):
            log.info("this memory store holds keys without facts; searching it as it is (set memory.key_facts: "
                     "true and run `mindgate reindex` for fact-augmented keys)")
            self.settings = plain
            return recorded
        return identity

    async def _apply(self, changes: list[Change]) -> list[ChangeResult]:
        return await asyncio.to_thread(self.store.apply, changes) if changes else []

    # -- writes ----------------------------------------------------------------------------------------

    async def add(self, messages: Any, *, user_id: str | None = None, agent_id: str | None = None,
                  run_id: str | None = None, metadata: dict[str, Any] | None = None, infer: bool = True,
                  llm: ChatModel | None = None) -> dict[str, Any]:
        """Remember ``messages`` (a string, a message dict, or a list of them) in the given scope.

        ``infer=True``: one LLM call extracts facts and decides ADD/UPDATE/DELETE/NONE against the most
        similar existing memories; ``llm`` replaces the configured LLM for this call (the gateway passes
        the configured one wrapped for the calling key). ``infer=False``: each non-system message is
        stored as it is.
        Returns ``{"results": [{"id", "memory", "event"}, ...]}`` (NONE for facts already known).
        """
        scope = Scope(user_id, agent_id, run_id)
        conversation = normalize_messages(messages)
        meta = validate_metadata(metadata)
        await self._ready()
        if infer:
            results = await self._add_inferred(conversation, scope, meta, llm)
        else:
            results = await self._add_raw(conversation, scope, meta)
        return {"results": [r.to_result() for r in results]}

    async def _add_raw(self, conversation: list[dict[str, Any]], scope: Scope,
                       meta: dict[str, Any]) -> list[ChangeResult]:
        kept = [m for m in conversation if m["role"] != "system" and m["content"].strip()]
        if not kept:
            raise InvalidRequestError("nothing to store: every message is empty or a system message")
        texts = [m["content"] for m in kept]
        facts = [fact_text(m["content"], m["role"]) for m in kept] if self.settings.key_facts else []
        vectors, known = await self._embed_with(texts, facts)
        now = utcnow()
        contexts = await self._key_contexts(kept, scope, meta, now) if self.settings.key_context else []
        if contexts:
            for text, vector in zip(texts, vectors, strict=True):
                self._recent_vectors.put(context_text(text), vector)
        if contexts or facts:
            vectors = await self._keys(vectors, contexts, facts, known)
        changes: list[Change] = []
        for i, (message, vector) in enumerate(zip(kept, vectors, strict=True)):
            record_meta = {**meta, "role": message["role"]}
            if (ref := message_ref(message)) is not None:
                record_meta["source_message_ids"] = [ref]
            # a microsecond apart, so that newest-first reads (and the next add's key context) keep the
            # conversation's order
            record = MemoryRecord(id=str(uuid.uuid4()), memory=message["content"],
                                  hash=content_hash(message["content"]), scope=scope, metadata=record_meta,
                                  created_at=now + timedelta(microseconds=i),
                                  key_context=contexts[i] if contexts else None)
            changes.append(AddChange(record, vector, actor="api"))
        return await self._apply(changes)

    async def _key_contexts(self, kept: list[dict[str, Any]], scope: Scope, meta: dict[str, Any],
                            now: datetime) -> list[str | None]:
        """Each conversation message's key context (see :mod:`.keys`): the message before it in this call,
        or for the first one the scope's newest memory when it is the previous turn."""
        previous = await asyncio.to_thread(self.store.list, scope, None, limit=1)
        first = follows(previous[0] if previous else None, scope, meta, now, self.settings.key_context_window)
        out: list[str | None] = []
        for i, message in enumerate(kept):
            if message["role"] not in CONVERSATION_ROLES:
                out.append(None)
            elif i == 0:
                out.append(first)
            else:
                out.append(context_text(kept[i - 1]["content"]) if kept[i - 1]["role"] in CONVERSATION_ROLES
                           else None)
        return out

    async def _embed_with(self, texts: list[str], facts: list[str | None]) -> tuple[list[Any], dict[str, Any]]:
        """The texts' vectors, and the fact sentences' vectors by text, embedded in one batch."""
        extra = sorted({f for f in facts if f is not None} - set(texts))
        vectors = list(await self.embedder.aembed_batch(texts + extra))
        known = dict(zip(texts + extra, vectors, strict=True))
        return vectors[:len(texts)], known

    async def _keys(self, vectors: list[Any], contexts: list[str | None], facts: list[str | None],
                    known: dict[str, Any] | None = None) -> list[Any]:
        """Vector keys (see :mod:`.keys`): each vector mixed with its context's vector (``contexts``; cached
        from recent adds, else embedded) and its fact sentences' vector (``facts``); an empty list adds
        nothing. ``known``: vectors already embedded, by text."""
        known = dict(known or {})
        for context in contexts:
            if context is not None and context not in known and (cached := self._recent_vectors.get(context)) \
                    is not None:
                known[context] = cached
        missing = sorted({c for c in (*contexts, *facts) if c is not None and c not in known})
        if missing:
            known.update(zip(missing, await self.embedder.aembed_batch(missing), strict=True))
        n = len(vectors)
        contexts = contexts or [None] * n
        facts = facts or [None] * n
        return [mix(vector, None if context is None else known[context], self.settings.key_context_weight,
                    [] if fact is None else [(known[fact], self.settings.key_facts_weight)])
                if context is not None or fact is not None else vector
                for vector, context, fact in zip(vectors, contexts, facts, strict=True)]

    async def _add_inferred(self, conversation: list[dict[str, Any]], scope: Scope,
                            meta: dict[str, Any], llm: ChatModel | None = None) -> list[ChangeResult]:
        spoken = [m["content"] for m in conversation if m["role"] in ("user", "assistant") and m["content"].strip()]
        if not spoken:
            raise InvalidRequestError("nothing to learn from: no user or assistant message has text")
        existing: list[MemoryRecord] = []
        if self.settings.similar_memories:
            hits = await self._search_hits(scope, "\n".join(spoken)[-_QUERY_CHARS:], None,
                                           self.settings.similar_memories, "hybrid")
            existing = [h.record for h in hits]
        llm = llm or self.llm
        call = plan(conversation, existing, custom_instructions=self.settings.custom_instructions)
        decisions: list[Decision] = await complete_json(
            llm, call.messages, call.schema, name="memory_decisions", validate=call.validate,
            max_tokens=call.max_tokens, **call.options)
        return await self._apply_decisions(decisions, conversation, scope, meta, actor=f"llm:{llm.model}")

    async def _apply_decisions(self, decisions: list[Decision], conversation: list[dict[str, Any]], scope: Scope,
                               meta: dict[str, Any], *, actor: str) -> list[ChangeResult]:
        to_embed = [d.text for d in decisions if d.event in ("ADD", "UPDATE") and d.text]
        vectors = iter(await self.embedder.aembed_batch(to_embed)) if to_embed else iter(())
        now = utcnow()
        changes: list[Change] = []
        unchanged: list[ChangeResult] = []
        touched: set[str] = set()
        for decision in decisions:
            target = decision.target
            if target is not None and target.id in touched:
                continue  # one change per memory per add(); later decisions on it are ignored
            if decision.event == "ADD" and decision.text:
                record_meta = dict(meta)
                refs = [r for s in decision.sources if (r := message_ref(conversation[s - 1])) is not None]
                if refs:
                    record_meta["source_message_ids"] = refs
                record = MemoryRecord(id=str(uuid.uuid4()), memory=decision.text, hash=content_hash(decision.text),
                                      scope=scope, metadata=record_meta, created_at=now)
                changes.append(AddChange(record, next(vectors), actor=actor))
            elif decision.event == "UPDATE" and target is not None and decision.text:
                vector = next(vectors)
                touched.add(target.id)
                if content_hash(decision.text) == target.hash:
                    unchanged.append(ChangeResult(target.id, target.memory, "NONE"))
                else:
                    changes.append(UpdateChange(target.id, target.scope, decision.text, vector, actor=actor))
            elif decision.event == "DELETE" and target is not None:
                touched.add(target.id)
                changes.append(DeleteChange(target.id, target.scope, actor=actor))
            elif decision.event == "NONE" and target is not None:
                touched.add(target.id)
                unchanged.append(ChangeResult(target.id, target.memory, "NONE"))
        return [*await self._apply(changes), *unchanged]

    async def update(self, memory_id: str, data: str, *, metadata: dict[str, Any] | None = None,
                     user_id: str | None = None, agent_id: str | None = None,
                     run_id: str | None = None) -> dict[str, Any]:
        """Replace a memory's text (and metadata, when given). With a scope, the memory must be in it."""
        if not isinstance(data, str) or not data.strip():
            raise InvalidRequestError("update needs the new memory text as a non-empty string")
        check_text("the new memory text", data)
        meta = validate_metadata(metadata) if metadata is not None else None
        await self._ready()
        record = await self._get_record(memory_id, _optional_scope(user_id, agent_id, run_id))
        facts = [fact_text(data, (meta or record.metadata).get("role"))] if self.settings.key_facts else []
        [vector], known = await self._embed_with([data], facts)
        contexts: list[str | None] = [record.key_context] if self.settings.key_context and record.key_context else []
        if contexts or facts:
            [vector] = await self._keys([vector], contexts, facts, known)
        [result] = await self._apply([UpdateChange(record.id, record.scope, data, vector, meta, actor="api")])
        return {"message": "Memory updated successfully!", **result.to_result()}

    async def delete(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                     run_id: str | None = None) -> dict[str, Any]:
        """Soft-delete one memory (history keeps it). With a scope, the memory must be in it."""
        await self._ready()
        record = await self._get_record(memory_id, _optional_scope(user_id, agent_id, run_id))
        await self._apply([DeleteChange(record.id, record.scope, actor="api")])
        return {"message": "Memory deleted successfully!", "id": record.id}

    async def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                         run_id: str | None = None) -> dict[str, Any]:
        """Soft-delete every memory in the scope, in one transaction."""
        scope = Scope(user_id, agent_id, run_id)
        await self._ready()
        count = await asyncio.to_thread(self.store.delete_scope, scope, "api")
        return {"message": f"{count} memories deleted", "deleted": count}

    async def reset(self) -> None:
        """Delete everything, history included (not a soft delete)."""
        await asyncio.to_thread(self.store.reset)
        self._opened = False

    # -- reads -----------------------------------------------------------------------------------------

    async def _get_record(self, memory_id: str, scope: Scope | None) -> MemoryRecord:
        check_memory_id(memory_id)
        record = await asyncio.to_thread(self.store.get, memory_id, scope)
        if record is None:
            raise NotFoundError(f"memory {memory_id!r} not found" + (" in this scope" if scope else ""),
                                hint="list memories with get_all() to see valid ids")
        return record

    async def get(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                  run_id: str | None = None) -> dict[str, Any] | None:
        """One live memory, or None (also when a scope is given and the memory is outside it)."""
        check_memory_id(memory_id)
        await self._ready()
        record = await asyncio.to_thread(self.store.get, memory_id, _optional_scope(user_id, agent_id, run_id))
        return record.to_result() if record else None

    async def get_all(self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None,
                      filters: dict[str, Any] | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """Live memories in scope, newest first, with metadata filters and paging."""
        scope, rest = scope_from(user_id, agent_id, run_id, filters)
        flt = parse_filters(rest)
        check_limit("limit", limit)
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**63:
            raise InvalidRequestError(f"offset must be a non-negative 64-bit integer, got {offset!r}")
        await self._ready()
        records = await asyncio.to_thread(self.store.list, scope, flt, limit=limit, offset=offset)
        return {"results": [r.to_result() for r in records]}

    async def count(self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None,
                    filters: dict[str, Any] | None = None) -> int:
        scope, rest = scope_from(user_id, agent_id, run_id, filters)
        flt = parse_filters(rest)
        await self._ready()
        return await asyncio.to_thread(self.store.count, scope, flt)

    async def scopes(self, *, limit: int = 1000) -> dict[str, Any]:
        """The scopes that hold live memories, largest first:
        ``{"results": [{"kind": "user_id", "id": "alice", "count": 4}, ...]}``."""
        check_limit("limit", limit, maximum=10000)
        await self._ready()
        rows = await asyncio.to_thread(self.store.scopes, limit=limit)
        return {"results": [{"kind": kind, "id": scope_id, "count": n} for kind, scope_id, n in rows]}

    async def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
                     run_id: str | None = None, filters: dict[str, Any] | None = None, limit: int = 10,
                     threshold: float | None = None, mode: SearchMode = "hybrid",
                     explain: bool = False, rerank: bool = True,
                     reference_time: datetime | str | None = None) -> dict[str, Any]:
        """Memories in scope relevant to ``query``, best first.

        ``mode="hybrid"`` (default) fuses vector and full-text ranks (see :mod:`.retrieval` for what
        ``score`` means; ``threshold`` applies to it); ``"vector"`` / ``"text"`` use one retriever, with
        its raw score. ``explain=True`` adds to each result how its score was made (mem0 2.x's
        option): the fusion method and, per signal, its rank, raw and normalised value and contribution.
        With a configured reranker (and ``rerank=True``, mem0's parameter), the best fused candidates are
        reordered by the reranker's ``rerank_score`` and cut to ``min(limit, top_k)``; ``threshold``
        still applies to the fused ``score`` (see :mod:`.rerank`).
        ``reference_time`` (a datetime or an ISO 8601 / ``YYYY/MM/DD HH:MM`` string; default now) is what
        time expressions in the query are relative to ("last week", "in May", "3 days ago"): with
        ``memory.time_aware`` on, hybrid search boosts memories that happened then (see :mod:`.timeinfo`).
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("query must be a non-empty string")
        check_text("query", query)
        if mode not in ("hybrid", "vector", "text"):
            raise InvalidRequestError(f"mode must be hybrid, vector or text, got {mode!r}")
        scope, rest = scope_from(user_id, agent_id, run_id, filters)
        flt = parse_filters(rest)
        check_limit("limit", limit, maximum=1000)
        minimum = check_threshold(threshold)
        if not isinstance(rerank, bool):
            raise InvalidRequestError(f"rerank must be true or false, got {rerank!r}")
        reference = _reference(reference_time)
        reranker = self.reranker if rerank else None
        pool = max(limit, reranker.candidates) if reranker else limit
        await self._ready()
        hits = await self._search_hits(scope, query, flt, pool, mode, timed=True, reference=reference)
        if minimum is not None:
            hits = [h for h in hits if h.score >= minimum]
        if reranker is not None:
            hits = await _rerank(reranker, query, hits)
            limit = min(limit, reranker.top_k or limit)
        return {"results": [h.to_result(explain) for h in hits[:limit]]}

    async def _search_hits(self, scope: Scope, query: str, flt: Any, limit: int, mode: SearchMode, *,
                           timed: bool = False, reference: datetime | None = None) -> list[Hit[MemoryRecord]]:
        vector = await self._query_vector(query) if mode != "text" else None
        parts = comparison_parts(query) if mode == "hybrid" and self.settings.expansion_weight > 0 else []
        expansions = [(part, await self._query_vector(part)) for part in parts]
        # one hop into a search thread per search (retrievers, time expressions and fusion together):
        # each hop back wakes the event loop from a thread that holds the GIL, and the loop then waits
        return await self._searches.run(self._hits, scope, query, vector, flt, limit, mode, timed, reference,
                                        expansions)

    def _hits(self, scope: Scope, query: str, vector: Any, flt: Any, limit: int, mode: SearchMode,
              timed: bool, reference: datetime | None,
              expansions: list[tuple[str, Any]]) -> list[Hit[MemoryRecord]]:
        # the retrievers return candidates (what fusion needs); full records are read for the top limit only
        k = max(self.settings.candidates, limit)
        if mode == "text":
            return self._with_records(single(self.store.text_candidates(scope, query, k, flt), "text")[:limit])
        vector_hits = self.store.vector_candidates(scope, vector, k, flt)
        if mode == "vector":
            return self._with_records(single(vector_hits, "vector")[:limit])
        when = query_windows(query, reference) if timed and self.settings.time_aware else None

        def fused(text: str, vectors: list[tuple[Candidate, float]], when: TimeQuery | None) -> list[Hit[Candidate]]:
            return fuse(vectors, self.store.text_candidates(scope, text, k, flt), fusion=self.settings.fusion,
                        alpha=self.settings.fusion_alpha, rrf_k=self.settings.rrf_k, recency=self.settings.recency,
                        when=when, time_weight=self.settings.time_weight, speaker=query_speaker(query),
                        speaker_weight=self.settings.speaker_weight)

        hits = fused(query, vector_hits, when)
        if expansions:
            parts = [fused(part, self.store.vector_candidates(scope, v, k, flt), None) for part, v in expansions]
            hits = expand(hits, parts, self.settings.expansion_weight)
        return self._with_records(hits[:limit])

    def _with_records(self, hits: list[Hit[Candidate]]) -> list[Hit[MemoryRecord]]:
        """The hits with their full records (one deleted since the search is left out)."""
        found = self.store.records([h.record for h in hits])
        return [h.with_record(found[h.record.id]) for h in hits if h.record.id in found]

    async def _query_vector(self, query: str) -> Any:
        vector = self._query_vectors.get(query)
        if vector is None:
            vector = await self.embedder.aembed(query)
            self._query_vectors.put(query, vector)
        return vector

    async def history(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                      run_id: str | None = None) -> list[dict[str, Any]]:
        """Every change to a memory, oldest first (deleted memories too). With a scope, the memory must be
        in it; without one, an unknown id has an empty history (mem0's behaviour)."""
        check_memory_id(memory_id)
        scope = _optional_scope(user_id, agent_id, run_id)
        await self._ready()
        if scope is not None:
            record = await asyncio.to_thread(self.store.get, memory_id, scope, include_deleted=True)
            if record is None:
                raise NotFoundError(f"memory {memory_id!r} not found in this scope")
        rows = await asyncio.to_thread(self.store.history, memory_id)
        return [row.to_result() for row in rows]

    # -- maintenance -----------------------------------------------------------------------------------

    async def reindex(self, *, batch_size: int = 256, progress: ProgressCallback | None = None) -> int:
        """Re-embed every live memory with the configured embedder (after changing embedders, or
        ``memory.key_context`` / ``memory.key_facts`` or their weights: keys are rebuilt from each memory's stored
        key context and its text's fact sentences).

        Resumable: an interrupted run continues where it stopped; no memory is lost, because vectors of
        the new embedder are written beside the old ones and swapped in when all are done.
        Returns the number of memories re-embedded by this call.
        """
        identity = key_identity(await self.embedder.aidentity(), self.settings)
        done = 0
        while True:
            pending = await asyncio.to_thread(self.store.reindex_pending, identity, limit=batch_size)
            if not pending:
                break
            facts = [fact_text(r.memory, r.metadata.get("role")) for r in pending] if self.settings.key_facts else []
            vectors, known = await self._embed_with([r.memory for r in pending], facts)
            if self.settings.key_context or facts:
                vectors = await self._keys(vectors, [r.key_context for r in pending] if self.settings.key_context
                                           else [], facts, known)
            await asyncio.to_thread(self.store.write_vectors, identity,
                                    [(r.id, v) for r, v in zip(pending, vectors, strict=True)])
            done += len(pending)
            self._query_vectors.clear()
            if progress:
                progress(done, len(pending))
        self._opened = False
        return done

    async def close(self) -> None:
        await asyncio.to_thread(self._searches.close)
        await asyncio.to_thread(self.store.close)
        await self.embedder.aclose()
        if self.reranker is not None:
            await self.reranker.aclose()
        if isinstance(self._llm, ChatModel):
            await self._llm.aclose()


def _facade(method: Callable[Concatenate[AsyncMemory, P], Awaitable[T]]) -> Callable[Concatenate[Memory, P], T]:
    @functools.wraps(method)
    def call(self: Memory, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(method(self.aio, *args, **kwargs))  # type: ignore[arg-type]

    return call


class Memory:
    """The synchronous Memory API: the same methods as :class:`AsyncMemory`, blocking."""

    def __init__(self, aio: AsyncMemory | None = None) -> None:
        self.aio = aio or AsyncMemory.from_config(None)

    @classmethod
    def from_config(cls, config: dict[str, Any] | MindgateConfig | None = None) -> Memory:
        return cls(AsyncMemory.from_config(config))

    @property
    def embedder(self) -> Embedder:
        return self.aio.embedder

    @property
    def store(self) -> MemoryStore:
        return self.aio.store

    @property
    def llm(self) -> ChatModel:
        return self.aio.llm

    add = _facade(AsyncMemory.add)
    search = _facade(AsyncMemory.search)
    get = _facade(AsyncMemory.get)
    get_all = _facade(AsyncMemory.get_all)
    count = _facade(AsyncMemory.count)
    scopes = _facade(AsyncMemory.scopes)
    update = _facade(AsyncMemory.update)
    delete = _facade(AsyncMemory.delete)
    delete_all = _facade(AsyncMemory.delete_all)
    history = _facade(AsyncMemory.history)
    reset = _facade(AsyncMemory.reset)
    reindex = _facade(AsyncMemory.reindex)
    close = _facade(AsyncMemory.close)

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chat_model(config: MindgateConfig) -> ChatModel:
    """The ``llm`` section's model (the ``auto`` chain when it says ``auto``), built at first use."""
    from mindgate.routing._chains import chat_model_for

    return chat_model_for(config.llm, config)
