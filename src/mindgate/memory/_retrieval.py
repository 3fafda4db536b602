"""Hybrid retrieval: vector and full-text candidates fused into one ranking.

Two fusions (``memory.fusion``):

* ``"rrf"``: reciprocal rank fusion, ``sum 1 / (rrf_k + rank)`` over the lists, divided by the best
  possible sum so that 1.0 means "first in every list".
* ``"convex"`` (default): ``score = alpha * v + (1 - alpha) * t``, where ``v`` is the cosine similarity
  min-max scaled over the vector candidates (1 for the best; the spread taken as at least
  :data:`MIN_COSINE_SPREAD`, so that a few near-identical candidates are not spread over the whole 0-1
  range) and ``t`` the text relevance divided by the best in its list (a candidate one retriever did not
  return gets 0 from it); ``alpha`` is ``memory.fusion_alpha`` (0.6), which ``bench/retrieval.py
  --calibrate`` fits on held-out questions. Unlike rank fusion it keeps how much better the first
  candidate is than the second.

Either way ``score`` lies in [0, 1] and ``threshold`` in search applies to it. Each result also carries
the raw ``vector_score`` (cosine similarity) and ``text_score`` (the store's BM25-style relevance) when
that retriever found it, and with ``explain=True`` the breakdown of its score (:meth:`Hit.explanation`).

The optional recency signal (``memory.recency``) is a third ranked list (newest first) over the
candidates the two retrievers found, so it reorders relevant memories but never brings in irrelevant ones.
A query that asks for recent things ("most recent", "currently") turns it on for that search, with the
time signal's weight (``memory.time_weight``; 0 leaves it off).

The time signal (``memory.time_aware``, weight ``memory.time_weight``) works the same way: when the query
names times (:func:`mindgate.memory._timeinfo.query_windows`), a candidate that happened inside one of them
gets the full weight, one outside gets less the further away it lies (nothing at one window length, taken
as 1 to 31 days).

The speaker signal (weight ``memory.speaker_weight``) goes to candidates stored from the role whose words
the query asks about (:func:`mindgate.memory._speaker.query_speaker`): the user's own messages for "How often
do I see my therapist?", the assistant's for "Which venue did you recommend?".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from mindgate.memory._speaker import Speaker
from mindgate.memory._timeinfo import TimeQuery, event_time
from mindgate.memory.stores._base import MemoryRecord
from mindgate.providers._base import Vector


class Rankable(Protocol):
    """What fusion reads of a hit: a :class:`MemoryRecord`, or a store's lighter
    :class:`~mindgate.memory.stores._base.Candidate` (the record read only for the fused top ``limit``)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Rankable)
S = TypeVar("S", bound=Rankable)
SearchMode = Literal["hybrid", "vector", "text"]
Fusion = Literal["convex", "rrf"]
RECENCY_WEIGHT = 0.5
MIN_COSINE_SPREAD = 0.2  # LongMemEval's 50 vector candidates spread 0.16-0.6 (median 0.36) in cosine


@dataclass
class Hit(Generic[R]):
    record: R
    score: float
    vector_score: float | None = None
    text_score: float | None = None
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    method: str = ""
    rerank_score: float | None = None  # set by a reranker (see .rerank), with the fused rank it started from
    fused_rank: int | None = None
    reranker: str = ""

    def with_record(self, record: S) -> Hit[S]:
        """This fused hit for ``record`` (its candidate's full record)."""
        return Hit(record, self.score, self.vector_score, self.text_score, self.parts, self.method,
                   self.rerank_score, self.fused_rank, self.reranker)

    def to_result(self: Hit[MemoryRecord], explain: bool = False) -> dict[str, object]:
        out = self.record.to_result(round(self.score, 6))
        out["vector_score"] = self.vector_score
        out["text_score"] = self.text_score
        if self.rerank_score is not None:
            out["rerank_score"] = round(self.rerank_score, 6)
        if explain:
            out["explain"] = self.explanation()
        return out

    def explanation(self) -> dict[str, Any]:
        """How ``score`` was made: the method, and per signal its rank, raw and normalised value and
        contribution (the contributions add up to ``score``); after reranking, ``rerank`` gives the
        reranker, its score and the fused rank the result had before."""
        out: dict[str, Any] = {
            "method": self.method, "score": round(self.score, 6),
            "signals": {name: {k: round(v, 6) for k, v in part.items()} for name, part in self.parts.items()}}
        if self.rerank_score is not None:
            out["rerank"] = {"reranker": self.reranker, "score": round(self.rerank_score, 6),
                             "fused_rank": self.fused_rank}
        return out


def fuse(vector_hits: Sequence[tuple[R, float]], text_hits: Sequence[tuple[R, float]], *,
         fusion: Fusion = "rrf", alpha: float = 0.5, rrf_k: int = 60, recency: bool = False,
         when: TimeQuery | None = None, time_weight: float = 0.0, speaker: Speaker | None = None,
         speaker_weight: float = 0.0) -> list[Hit[R]]:
    """Fuse ranked lists into hits sorted by score, best first (ties: newer first, then id). ``when``: the
    query's time expressions (its windows add the time signal, its "recent" words the recency signal);
    ``speaker``: whose words the query asks about (memories stored from that role get the speaker signal)."""
    if not vector_hits and not text_hits:
        return []
    hits = _convex(vector_hits, text_hits, alpha) if fusion == "convex" else _rrf(vector_hits, text_hits, rrf_k)
    best = 1.0 if fusion == "convex" else float(sum(1 for ranked in (vector_hits, text_hits) if ranked))
    asks_recent = when is not None and when.recent and time_weight > 0
    if recency or asks_recent:
        weight = RECENCY_WEIGHT if recency else time_weight
        _recency(hits, fusion, rrf_k, weight, by_event_time=not recency)
        best += weight
    if when is not None and when.windows and time_weight > 0:
        _time(hits, when, time_weight)
        best += time_weight
    if speaker is not None and speaker_weight > 0:
        for hit in hits.values():
            said = hit.record.metadata.get("role") == speaker
            hit.parts["speaker"] = {"raw": float(said), "weight": speaker_weight,
                                    "contribution": speaker_weight * float(said)}
        best += speaker_weight
    if fusion != "convex" or best != 1.0:  # else _convex's scores are final (its contributions sum to them)
        for hit in hits.values():
            for part in hit.parts.values():
                part["contribution"] /= best
            hit.score = sum(part["contribution"] for part in hit.parts.values())
    return sorted(hits.values(), key=lambda h: (-h.score, -(h.record.updated_at or h.record.created_at).timestamp(),
                                                h.record.id))


def _convex(vector_hits: Sequence[tuple[R, float]], text_hits: Sequence[tuple[R, float]],
            alpha: float) -> dict[str, Hit[R]]:
    """The hits by id, each signal's part complete and ``score`` the sum of their contributions (one pass
    per list: a search fuses ~100 candidates)."""
    cosines = [float(s) for _, s in vector_hits]
    low_cos, top_cos = (min(cosines), max(cosines)) if cosines else (0.0, 0.0)
    spread = max(top_cos - low_cos, MIN_COSINE_SPREAD)
    top_text = max((float(s) for _, s in text_hits), default=0.0)
    # With one list empty, the other carries the whole score (a text-only query still scores in [0, 1]).
    vector_weight, text_weight = (alpha if text_hits else 1.0), ((1.0 - alpha) if vector_hits else 1.0)
    hits: dict[str, Hit[R]] = {}
    for rank, (record, raw) in enumerate(vector_hits, start=1):
        raw = float(raw)
        norm = 1.0 - (top_cos - raw) / spread
        part = {"rank": rank, "raw": raw, "normalized": norm, "weight": vector_weight,
                "contribution": vector_weight * norm}
        hits[record.id] = Hit(record, part["contribution"], raw, None, {"vector": part}, "convex")
    for rank, (record, raw) in enumerate(text_hits, start=1):
        raw = float(raw)
        norm = raw / top_text if top_text > 0 else 0.0
        part = {"rank": rank, "raw": raw, "normalized": norm, "weight": text_weight,
                "contribution": text_weight * norm}
        hit = hits.get(record.id)
        if hit is None:
            hits[record.id] = Hit(record, part["contribution"], None, raw, {"text": part}, "convex")
        else:
            hit.text_score = raw
            hit.parts["text"] = part
            hit.score = hit.parts["vector"]["contribution"] + part["contribution"]
    return hits


def _rrf(vector_hits: Sequence[tuple[R, float]], text_hits: Sequence[tuple[R, float]],
         rrf_k: int) -> dict[str, Hit[R]]:
    """The hits by id; each list's part contributes 1 / (rrf_k + rank), scaled so that rank 1 gives 1."""
    hits: dict[str, Hit[R]] = {}
    for ranked, kind in ((vector_hits, "vector"), (text_hits, "text")):
        for rank, (record, raw) in enumerate(ranked, start=1):
            hit = hits.setdefault(record.id, Hit(record, 0.0, method="rrf"))
            hit.parts[kind] = {"rank": rank, "raw": float(raw), "contribution": (rrf_k + 1) / (rrf_k + rank)}
            if kind == "vector":
                hit.vector_score = float(raw)
            else:
                hit.text_score = float(raw)
    return hits


def _recency(hits: dict[str, Hit[R]], fusion: Fusion, rrf_k: int, weight: float = RECENCY_WEIGHT,
             by_event_time: bool = False) -> None:
    """Newest first as a third list with ``weight`` (on the scale of the fusion's lists): by last change, or
    (for a query asking for recent things) by when the memory happened."""
    def newest(h: Hit[R]) -> datetime:
        if by_event_time:
            return event_time(h.record.metadata, h.record.created_at)
        return h.record.updated_at or h.record.created_at

    newest_first = sorted(hits.values(), key=newest, reverse=True)
    n = len(newest_first)
    for rank, hit in enumerate(newest_first, start=1):
        value = (1.0 - (rank - 1) / n) if fusion == "convex" else (rrf_k + 1) / (rrf_k + rank)
        hit.parts["recency"] = {"rank": rank, "contribution": weight * value}


def _time(hits: dict[str, Hit[R]], when: TimeQuery, weight: float) -> None:
    """1 inside a window of ``when``, falling linearly to 0 at one window length (1 to 31 days) outside."""
    for hit in hits.values():
        happened = event_time(hit.record.metadata, hit.record.created_at)
        value = 0.0
        for window in when.windows:
            width = min(max((window.end - window.start).total_seconds(), 86400.0), 31 * 86400.0)
            value = max(value, 1.0 - window.distance(happened).total_seconds() / width)
        hit.parts["time"] = {"raw": value, "weight": weight, "contribution": weight * value}


def single(ranked: Sequence[tuple[R, float]], kind: Literal["vector", "text"]) -> list[Hit[R]]:
    """One retriever's ranking as hits; ``score`` is its raw score (cosine, or text relevance)."""
    return [Hit(record, float(raw), float(raw) if kind == "vector" else None, float(raw) if kind == "text" else None,
                parts={kind: {"rank": rank, "raw": float(raw), "contribution": float(raw)}}, method=kind)
            for rank, (record, raw) in enumerate(ranked, start=1)]


class QueryVectors:
    """A bounded LRU cache of query embeddings: an agent asks the same questions again and again, and
    embedding the query is most of a search's cost."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._items: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query: str) -> Vector | None:
        with self._lock:
            vector = self._items.get(query)
            if vector is not None:
                self._items.move_to_end(query)
            return vector

    def put(self, query: str, vector: Vector) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[query] = vector
            self._items.move_to_end(query)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
