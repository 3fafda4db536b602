"""Hybrid retrieval: vector and full-text candidates fused by reciprocal rank fusion (RRF).

``score`` of a fused result is its RRF sum divided by the best possible sum (rank 1 in every list
used), so it lies in (0, 1]: 1.0 means "first in every retriever". ``threshold`` in search applies to
this score. Each result also carries the raw ``vector_score`` (cosine similarity) and ``text_score``
(the store's BM25-style relevance) when that retriever found it.

The optional recency signal is a third ranked list (newest first) with weight ``RECENCY_WEIGHT`` and
only over the candidates the two retrievers found, so it reorders relevant memories but never brings
in irrelevant ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mindgate.memory.stores.base import MemoryRecord

SearchMode = Literal["hybrid", "vector", "text"]
RECENCY_WEIGHT = 0.5


@dataclass
class Hit:
    record: MemoryRecord
    score: float
    vector_score: float | None = None
    text_score: float | None = None

    def to_result(self) -> dict[str, object]:
        out = self.record.to_result(round(self.score, 6))
        out["vector_score"] = self.vector_score
        out["text_score"] = self.text_score
        return out


def fuse(vector_hits: Sequence[tuple[MemoryRecord, float]], text_hits: Sequence[tuple[MemoryRecord, float]], *,
         rrf_k: int = 60, recency: bool = False) -> list[Hit]:
    """Fuse ranked lists into hits sorted by score, best first (ties: newer first, then id)."""
    hits: dict[str, Hit] = {}
    lists_used = 0.0
    for ranked, kind in ((vector_hits, "vector"), (text_hits, "text")):
        if not ranked:
            continue
        lists_used += 1
        for rank, (record, raw) in enumerate(ranked, start=1):
            hit = hits.setdefault(record.id, Hit(record, 0.0))
            hit.score += 1.0 / (rrf_k + rank)
            if kind == "vector":
                hit.vector_score = float(raw)
            else:
                hit.text_score = float(raw)
    if not hits:
        return []
    if recency:
        lists_used += RECENCY_WEIGHT
        newest_first = sorted(hits.values(), key=lambda h: h.record.updated_at or h.record.created_at, reverse=True)
        for rank, hit in enumerate(newest_first, start=1):
            hit.score += RECENCY_WEIGHT / (rrf_k + rank)
    best = lists_used / (rrf_k + 1)
    for hit in hits.values():
        hit.score /= best
    return sorted(hits.values(), key=lambda h: (-h.score, -(h.record.updated_at or h.record.created_at).timestamp(),
                                                h.record.id))


def single(ranked: Sequence[tuple[MemoryRecord, float]], kind: Literal["vector", "text"]) -> list[Hit]:
    """One retriever's ranking as hits; ``score`` is its raw score (cosine, or text relevance)."""
    return [Hit(record, float(raw), float(raw) if kind == "vector" else None, float(raw) if kind == "text" else None)
            for record, raw in ranked]
