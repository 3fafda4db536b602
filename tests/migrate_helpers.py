"""A populated memory store for migration tests: four kinds of scope, varied metadata, updates, deletes and a
scope wipe; and a snapshot of everything a user can read back."""

from __future__ import annotations

from typing import Any

import numpy as np

from mindgate.memory._migrate import export_records
from mindgate.memory.stores._base import (
    AddChange,
    DeleteChange,
    MemoryRecord,
    MemoryStore,
    Scope,
    UpdateChange,
    content_hash,
)
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "unit-vectors", 8)
SCOPES = [Scope(user_id="alice"), Scope(user_id="bob", agent_id="helper"), Scope(agent_id="helper"),
          Scope(run_id="run-1")]


def embed(text: str) -> np.ndarray:
    v = np.random.default_rng(abs(hash(text)) % 2**32).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def populate(store: MemoryStore, n: int = 24) -> None:
    """Facts in four kinds of scope with varied metadata, then updates, deletes and a scope wipe."""
    store.open(IDENT)
    changes = []
    for i in range(n):
        text = f"fact {i}: ünïcode, quotes ' \" and % signs"
        meta = {"i": i, "ratio": i / 7, "tags": ["a", str(i)], "nested": {"ok": i % 2 == 0}, "none": None}
        changes.append(AddChange(MemoryRecord(id=f"m{i:03d}", memory=text, hash=content_hash(text),
                                              scope=SCOPES[i % 4], metadata=meta), embed(text), actor="seed"))
    store.apply(changes)
    store.apply([UpdateChange(f"m{i:03d}", SCOPES[i % 4], f"fact {i}, corrected", embed(f"fact {i}, corrected"),
                              metadata={"corrected": True}) for i in (0, 1, 2)])
    store.apply([DeleteChange(f"m{i:03d}", SCOPES[i % 4], actor="cleanup") for i in (4, 5)])
    store.delete_scope(Scope(run_id="run-1"))


def snapshot(store: MemoryStore) -> list[tuple[Any, ...]]:
    """Everything a user can read back, per record, deleted ones included."""
    out = []
    for rec, vector, deleted in export_records(store):
        out.append((rec.id, rec.memory, rec.hash, rec.scope, rec.metadata, rec.created_at, rec.updated_at, deleted,
                    None if vector is None else vector.tobytes(),
                    [h.to_result() for h in store.history(rec.id)]))
    return out
