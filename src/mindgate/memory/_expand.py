"""Query expansion for comparison questions: each compared event is also searched on its own.

"Which happened first, the volleyball league or the charity 5K run?" and "How many days passed between the
Walk for Hunger and the Coastal Cleanup?" need a memory about EACH event, but one embedding of the whole
question lands between them and the first results tend to be about one of them only. :func:`comparison_parts`
reads the two compared things from the question ("between X and Y", "..., X or Y?"); search then runs both
retrievers for each part too, fuses them the same way, and adds the best part score of each candidate with
weight ``memory.expansion_weight`` (:func:`expand`), so the memories about each event rise together. Other
queries are searched as before, and cost nothing more (a part's embedding is cached like any query's).
A compared thing is a short phrase (at most :data:`MAX_PART_WORDS` words; LongMemEval's longest is 14): a
long text that merely contains "between ... and" (a pasted paragraph as the query) is not expanded, since
each part would cost a full hybrid search and an embedding of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mindgate.memory._retrieval import Hit, R

_PATTERNS = (
    re.compile(r"\bbetween (?:the |my )?(.+?) and (?:the |my )?(.+?)\s*[?.!]?$", re.IGNORECASE),
    re.compile(r",\s*(?:the |my )?(.+?)\s+or\s+(?:the |my )?(.+?)\s*[?.!]?$", re.IGNORECASE),
)
_QUOTES = " '\"‘’“”"
MAX_PART_WORDS = 16


def comparison_parts(query: str) -> list[str]:
    """The two things a comparison question compares, or [] for any other query."""
    text = query.strip()
    for pattern in _PATTERNS:
        if (match := pattern.search(text)) is not None:
            parts = [p.strip(_QUOTES) for p in match.groups()]
            return parts if all(len(p) >= 2 and len(p.split()) <= MAX_PART_WORDS for p in parts) else []
    return []


def expand(hits: Sequence[Hit[R]], parts: Sequence[Sequence[Hit[R]]], weight: float) -> list[Hit[R]]:
    """``hits`` (the query's fused ranking) with each candidate's best score among ``parts`` (each part's
    fused ranking) added with ``weight``: ``(score + weight * part) / (1 + weight)``, so scores stay in
    [0, 1]; the ``expansion`` signal shows it in explain. A memory only a part found joins with that share
    alone. Best first (ties: newer first, then id)."""
    best: dict[str, Hit[R]] = {}
    for ranking in parts:
        for hit in ranking:
            if hit.record.id not in best or hit.score > best[hit.record.id].score:
                best[hit.record.id] = hit
    out = {h.record.id: h for h in hits}
    for memory_id, part in best.items():
        if memory_id not in out:
            out[memory_id] = Hit(part.record, 0.0, method=part.method)
    scale = 1.0 + weight
    for hit in out.values():
        for signal in hit.parts.values():
            signal["contribution"] /= scale
        part_score = best[hit.record.id].score if hit.record.id in best else 0.0
        hit.parts["expansion"] = {"raw": part_score, "weight": weight, "contribution": weight * part_score / scale}
        hit.score = sum(signal["contribution"] for signal in hit.parts.values())
    return sorted(out.values(), key=lambda h: (-h.score, -(h.record.updated_at or h.record.created_at).timestamp(),
                                               h.record.id))
