"""Augmented keys: a message stored from a conversation is found by its turn AND its neighbour or its facts.

A turn often makes sense only with the one before it ("Yes, the blue one, I bought it last week" answers
a question about shoes). With ``memory.key_context`` on, a message added with ``infer=False`` gets as its
*key context* the previous turn of the same conversation: the message before it in the same ``add`` call,
or else the newest memory of the same exact scope when that one was also stored as a conversation message
and happened within ``memory.key_context_window`` seconds of it (times from :func:`.timeinfo.event_time`, so
imported conversations with dates in their metadata are linked by those dates, live ones by the clock).

The memory's text is unchanged; only its vector key is: ``normalize(v(text) + w * v(context))`` with ``w``
= ``memory.key_context_weight``. The neighbour's vector is usually the one embedded by the previous add
(kept in a small cache), so a per-message add still embeds one text. The context is stored with the memory
(``key_context``, at most :data:`KEY_CONTEXT_CHARS` characters), so ``mindgate reindex`` rebuilds the same
keys; the store's recorded embedder identity names the key construction (:func:`key_identity`), so turning
the option on or off, or changing the weight, asks for a reindex instead of mixing two kinds of keys.

Fact-augmented keys (``memory.key_facts``, LongMemEval's "fact-augmented key expansion" without an LLM): a
user message usually asks for something and mentions a personal fact in passing ("Can you recommend art
supplies? By the way, I volunteered at the Children's Museum's Art Afternoon on February 17th."); its one
embedding is dominated by the request, so a later question about the fact ("which art events did I
attend?") ranks it low. :func:`fact_text` keeps the message's first-person statements (sentences saying
I / my / we, not questions, not requests to the assistant) and the key becomes ``normalize(v(text) + w *
v(facts))`` with ``w`` = ``memory.key_facts_weight``; the fact sentences are embedded in the same batch as
the messages. They are derived from the text alone, so nothing more is stored and ``mindgate reindex``
rebuilds the same keys; the recorded identity names the construction and the extractor's version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from mindgate.config import MemorySettings
from mindgate.memory._timeinfo import event_time
from mindgate.memory.stores._base import MemoryRecord, Scope
from mindgate.providers._base import EmbedderIdentity, Vector

KEY_CONTEXT_CHARS = 2000  # beyond the ~256 tokens MiniLM-class embedders read, so the cut changes no vector
KEY_FACTS_CHARS = 600
KEY_FACTS_VERSION = 1  # in the recorded identity: a changed extractor asks for a reindex
CONVERSATION_ROLES = ("user", "assistant")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|my|me|we|our|we've|we're)\b", re.IGNORECASE)
_REQUEST = re.compile(
    r"^\s*(can|could|would|will|do|does|is|are|what|how|which|where|who|why|when|should|any)\b"
    r"|\b(can you|could you|would you|help me|i'm looking for|i am looking for|i was wondering|i'm wondering|"
    r"i want to know|i'd like to know|i need (some )?(help|advice|tips|recommendations|suggestions)|please|thanks|"
    r"thank you)\b", re.IGNORECASE)


def key_identity(identity: EmbedderIdentity, settings: MemorySettings) -> EmbedderIdentity:
    """The identity a store records: the embedder's, plus the key construction when keys carry context or
    facts."""
    model = identity.model
    if settings.key_context:
        model += f"+key_context:{settings.key_context_weight:g}"
    if settings.key_facts:
        model += f"+key_facts{KEY_FACTS_VERSION}:{settings.key_facts_weight:g}"
    return identity if model == identity.model else EmbedderIdentity(identity.provider, model, identity.dims)


def fact_text(text: str, role: str | None) -> str | None:
    """The first-person statements of a user message (at most :data:`KEY_FACTS_CHARS` characters), or None
    when it has none or is not a user message: sentences that say I / my / we and are neither questions
    nor requests to the assistant ("Can you ...", "I'm looking for ...", "please")."""
    if role != "user":
        return None
    kept = [s for part in _SENTENCES.split(text) if len(s := part.strip()) >= 12 and not s.endswith("?")
            and _FIRST_PERSON.search(s) and not _REQUEST.search(s)]
    return " ".join(kept)[:KEY_FACTS_CHARS] or None


def context_text(text: str) -> str:
    """The part of a neighbouring turn kept (and embedded) as key context."""
    return text[:KEY_CONTEXT_CHARS]


def mix(vector: Vector, context: Vector | None, weight: float,
        more: Sequence[tuple[Vector, float]] = ()) -> Vector:
    """``normalize(v / |v| + weight * c / |c| + ...)`` over the context and any ``more`` (vector, weight)
    parts (a None context adds nothing): the text stays the main part of its key."""
    v = np.asarray(vector, dtype=np.float32)
    out = v / (np.linalg.norm(v) or 1.0)
    for part, w in ((context, weight), *more):
        if part is not None:
            c = np.asarray(part, dtype=np.float32)
            out = out + w * c / (np.linalg.norm(c) or 1.0)
    norm = float(np.linalg.norm(out))
    return (out / norm if norm else v).astype(np.float32)


def follows(previous: MemoryRecord | None, scope: Scope, metadata: Mapping[str, Any], now: datetime,
            window_s: float) -> str | None:
    """The key context a single new message in ``scope`` takes from ``previous`` (the scope's newest memory),
    or None: ``previous`` must be in exactly this scope, have been stored as a conversation message, and have
    happened at most ``window_s`` seconds before (or after) the new message."""
    if previous is None or previous.scope != scope or previous.metadata.get("role") not in CONVERSATION_ROLES:
        return None
    gap = abs((event_time(metadata, now) - event_time(previous.metadata, previous.created_at)).total_seconds())
    return context_text(previous.memory) if gap <= window_s else None
