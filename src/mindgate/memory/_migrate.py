"""Copy one memory store into another (``mindgate migrate``), e.g. the embedded SQLite file into PostgreSQL.

Every memory is copied as it is (id, text, scope, metadata, timestamps, soft-deleted state) with its
vector, so nothing is re-embedded, and so is every history row. Afterwards both stores are read back and
compared: counts (records, deleted records, vectors of live records, history rows) and order-independent
checksums over all of it must match, else :class:`~mindgate.errors.StoreError` says what differs.

Safe to re-run: the target upserts records by id and skips history rows it already holds, so a run that
was interrupted, or repeated, converges to the same state. The target must be empty or hold an earlier
copy of the same source, and its embedder (recorded on first use) must be the source's. Stop writers to
the source while it runs; a change made during the copy shows up as a checksum mismatch.

Needs the optional store methods :meth:`~MemoryStore.recorded_identity` and
:meth:`~MemoryStore.iter_vectors` on the source and :meth:`~MemoryStore.import_records` /
:meth:`~MemoryStore.import_history` on the target.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import numpy as np

from mindgate.errors import StoreError
from mindgate.memory.stores._base import HistoryRecord, MemoryRecord, MemoryStore
from mindgate.providers._base import EmbedderIdentity, Vector

Progress = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)``; phases: ``records``, ``history``, ``verify``."""

Exported = tuple[MemoryRecord, Vector | None, bool]
T = TypeVar("T")
_MOD = 1 << 256


@dataclass(frozen=True)
class MigrationReport:
    identity: EmbedderIdentity
    records: int
    deleted: int
    vectors: int
    history: int
    checksum: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"embedder": self.identity.describe(), "records": self.records, "deleted": self.deleted,
                "vectors": self.vectors, "history": self.history, "checksum": self.checksum,
                "seconds": round(self.seconds, 3)}


class Digest:
    """Counts and order-independent checksums (sums of per-row SHA-256 values) of a store's contents."""

    def __init__(self) -> None:
        self.records = self.deleted = self.vectors = self.history = 0
        self._records_sum = self._history_sum = 0

    def add_record(self, record: MemoryRecord, vector: Vector | None, deleted: bool) -> None:
        self.records += 1
        self.deleted += deleted
        vec = b""
        if vector is not None and not deleted:  # a deleted record's vector is unreachable; some stores drop it
            self.vectors += 1
            vec = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        row = [record.id, record.memory, record.hash, record.scope.user_id, record.scope.agent_id,
               record.scope.run_id, _canonical(record.metadata or {}), _ts(record.created_at),
               _ts(record.updated_at), deleted]
        self._records_sum = (self._records_sum + _sha(_json(row).encode() + b"\x00" + vec)) % _MOD

    def add_history(self, h: HistoryRecord) -> None:
        self.history += 1
        row = [h.id, h.memory_id, h.event, h.old_memory, h.new_memory, _ts(h.created_at), h.actor]
        self._history_sum = (self._history_sum + _sha(_json(row).encode())) % _MOD

    def counts(self) -> dict[str, int]:
        return {"records": self.records, "deleted": self.deleted, "vectors": self.vectors,
                "history": self.history}

    @property
    def checksum(self) -> str:
        return hashlib.sha256(f"{self._records_sum:064x}:{self._history_sum:064x}".encode()).hexdigest()


def _copy_in_batches(items: Iterable[T], batch_size: int, account: Callable[[T], None],
                     write: Callable[[list[T]], None], reported: Callable[[], None]) -> None:
    """Account for each item, write them ``batch_size`` at a time, and report progress after each write."""
    reported()
    batch: list[T] = []
    for item in items:
        account(item)
        batch.append(item)
        if len(batch) >= batch_size:
            write(batch)
            batch = []
            reported()
    if batch:
        write(batch)
    reported()


def migrate(source: MemoryStore, target: MemoryStore, *, progress: Progress | None = None,
            batch_size: int = 500) -> MigrationReport:
    """Copy ``source`` into ``target`` and verify the copy; see the module docstring."""
    started = time.monotonic()
    report = progress or (lambda _phase, _done, _total: None)
    identity = source.recorded_identity()
    if identity is None:
        raise StoreError("the source store has no recorded embedder, so it holds no memories to migrate",
                         hint="check the source path / DSN and collection name")
    source.open(identity)
    target.open(identity)
    total_records = sum(1 for _ in source.iter_records(include_deleted=True, batch_size=batch_size))
    total_history = sum(1 for _ in source.iter_history(batch_size=batch_size))

    expected = Digest()
    _copy_in_batches(export_records(source, batch_size), batch_size, lambda item: expected.add_record(*item),
                     target.import_records, lambda: report("records", expected.records, total_records))
    _copy_in_batches(source.iter_history(batch_size=batch_size), batch_size, expected.add_history,
                     target.import_history, lambda: report("history", expected.history, total_history))

    actual = digest(target, batch_size, lambda done: report("verify", done, total_records + total_history))
    if actual.counts() != expected.counts() or actual.checksum != expected.checksum:
        diffs = [f"{k}: source {v}, target {actual.counts()[k]}" for k, v in expected.counts().items()
                 if actual.counts()[k] != v] or ["counts match but the checksums differ"]
        raise StoreError("the copy does not match the source (" + "; ".join(diffs) + ")",
                         hint="stop writers to both stores and run the migration again; the target must be "
                              "empty or an earlier copy of the same source")
    return MigrationReport(identity=identity, records=expected.records, deleted=expected.deleted,
                           vectors=expected.vectors, history=expected.history, checksum=expected.checksum,
                           seconds=time.monotonic() - started)


def digest(store: MemoryStore, batch_size: int = 500, tick: Callable[[int], None] | None = None) -> Digest:
    """Counts and checksums of everything ``store`` holds; ``tick(rows_read)`` reports progress."""
    out = Digest()

    def step() -> None:
        done = out.records + out.history
        if tick and done % batch_size == 0:
            tick(done)

    for item in export_records(store, batch_size):
        out.add_record(*item)
        step()
    for h in store.iter_history(batch_size=batch_size):
        out.add_history(h)
        step()
    if tick:
        tick(out.records + out.history)
    return out


def export_records(store: MemoryStore, batch_size: int = 500) -> Iterator[Exported]:
    """Every record with its vector (or None) and whether it is soft-deleted, by merging the store's
    three id-ordered iterators (all records, live records, vectors)."""
    live = _Lookahead(store.iter_records(batch_size=batch_size), lambda r: r.id)
    vectors = _Lookahead(store.iter_vectors(batch_size), lambda v: v[0])
    for record in store.iter_records(include_deleted=True, batch_size=batch_size):
        deleted = live.take(record.id) is None
        vector = vectors.take(record.id)
        yield record, (vector[1] if vector else None), deleted
    if not (live.exhausted() and vectors.exhausted()):
        raise StoreError(f"{type(store).__name__} did not list records, live records and vectors in the same "
                         "id order", hint="its iter_records / iter_vectors must all order by id")


class _Lookahead(Generic[T]):
    """An iterator whose head is taken only when its key is the one asked for."""

    def __init__(self, items: Iterator[T], key: Callable[[T], str]) -> None:
        self._items, self._key = items, key
        self._head: T | None = next(self._items, None)

    def take(self, key: str) -> T | None:
        if self._head is None or self._key(self._head) != key:
            return None
        head, self._head = self._head, next(self._items, None)
        return head

    def exhausted(self) -> bool:
        return self._head is None


def _canonical(value: Any) -> Any:
    """JSON value with every number as a float (JSON stores may turn 1e20 into 100000000000000000000)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return value


def _ts(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)).isoformat()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _sha(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest(), "big")
