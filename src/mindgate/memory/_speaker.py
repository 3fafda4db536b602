"""Who said what a question asks about: the user themself, or the assistant.

A memory stored from a conversation keeps its speaker (metadata ``role``, set by ``add(infer=False)``).
A question about one's own life ("How often do I see my therapist?") is answered by what the user said; a
question about the assistant's words ("Can you remind me which venue you recommended?", "in our previous
chat ...") by what the assistant said. :func:`query_speaker` reads that from the question's words; search
then gives memories of that speaker the ``speaker`` signal (``memory.speaker_weight``, see
:mod:`mindgate.memory._retrieval`). Memories without a role (facts extracted with ``infer=True``, plain
strings) never get it, so it only orders conversation turns among themselves.
"""

from __future__ import annotations

import re
from typing import Literal

Speaker = Literal["user", "assistant"]

_ASSISTANT = re.compile(
    r"\byou('ve| have| had)?\s+(\w+\s+)?(said|told|suggested|mentioned|recommended|gave|given|listed|provided|"
    r"explained|shared|proposed|described|wrote|written|came up with)\b"
    r"|\bdid you\s+(\w+\s+)?(say|tell|suggest|mention|recommend|give|list|provide|explain|share|propose|"
    r"describe|write)\b"
    r"|\bour (previous|last|earlier|past) (conversation|chat|discussion|talk)\b"
    r"|\bremind me\b.*\byou\b|\bdo you remember\b|\bwhat did you\b|\byour (suggestion|recommendation|answer|list)s?\b")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|my|me|mine|myself)\b")


def query_speaker(query: str) -> Speaker | None:
    """``"assistant"`` when the question asks about the assistant's words, ``"user"`` when it speaks about
    the user (first person), else None."""
    q = re.sub(r"[’`]", "'", query.lower())
    if _ASSISTANT.search(q):
        return "assistant"
    return "user" if _FIRST_PERSON.search(q) else None
