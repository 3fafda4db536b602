"""Context-augmented keys: a message stored from a conversation is found by its turn AND its neighbour.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from mindgate.config import MemorySettings
from mindgate.memory._timeinfo import event_time
from mindgate.memory.stores._base import MemoryRecord, Scope
from mindgate.providers._base import EmbedderIdentity, Vector

KEY_CONTEXT_CHARS = 2000  # beyond the ~256 tokens MiniLM-class embedders read, so the cut changes no vector
CONVERSATION_ROLES = ("user", "assistant")


def key_identity(identity: EmbedderIdentity, settings: MemorySettings) -> EmbedderIdentity:
    """The identity a store records: the embedder's, plus the key construction when keys carry context."""
    if not settings.key_context:
        return identity
    return EmbedderIdentity(identity.provider, f"{identity.model}+key_context:{settings.key_context_weight:g}",
                            identity.dims)


def context_text(text: str) -> str:
    """The part of a neighbouring turn kept (and embedded) as key context."""
    return text[:KEY_CONTEXT_CHARS]


def mix(vector: Vector, context: Vector, weight: float) -> Vector:
    """``normalize(v / |v| + weight * c / |c|)``: the text stays the main part of its key."""
    v = np.asarray(vector, dtype=np.float32)
    c = np.asarray(context, dtype=np.float32)
    out = v / (np.linalg.norm(v) or 1.0) + weight * c / (np.linalg.norm(c) or 1.0)
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
