"""What the SQLite store caches of its file, and how a cache knows that a partition may have changed.

A cached value of a partition is stamped with the partition's **version** it was read at: a counter in
the ``partitions`` table that every change of one of the partition's memories rows moves on, in the same
transaction, whoever makes it (triggers, migration 005; a record's vector and full-text rows change only
with its memories row). A search reads the version inside its read transaction (:func:`partition_state`,
one indexed lookup) and uses a cached value only when its stamp is that version: a write to one
partition, by this process or another, leaves every other partition's cached values valid, and a write
by another process to this partition is seen at the next search as a new version. Versions only grow
within a file, so of two values of one partition the newer stamp wins.

Some changes are not partition versions: this store's ``reset()`` and a file replaced under the store.
:class:`Freshness` counts them as an **epoch**: it moves on at ``reset()`` and whenever a search runs on
a connection it has not seen before (a connection opened after a file was replaced reads the new file).
A cache holds values of one epoch only: a newer epoch empties it, and a value read under an older epoch
is not kept. (``reset()`` also moves every partition's version on, for other processes.)

:class:`Counts` is such a cache for the small integers text search reads on every query (how many live
memories a partition holds, how many of its documents hold a word): they cost an index scan each (one
per query word), and while the partition does not change they do not either.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator
from typing import Any

import apsw


def partition_state(conn: apsw.Connection, partition: str) -> tuple[int, int] | None:
    """The partition's ``(slot, version)`` as ``conn``'s transaction sees them; None when it has none."""
    row: Any = conn.execute("SELECT slot, version FROM partitions WHERE partition = ?", (partition,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


@contextlib.contextmanager
def all_versions_moved(conn: apsw.Connection) -> Iterator[None]:
    """For a bulk change of memories inside the caller's write transaction: the version triggers are set
    aside during the block (they would update a partitions row per memories row: ``reset()`` of 20,000
    memories took 13x longer) and every partition's version moves on once instead. An error rolls the
    whole transaction back, the dropped triggers included."""
    triggers: Any = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                 "AND tbl_name = 'memories'").fetchall()
    for name, _ in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    yield
    conn.execute("UPDATE partitions SET version = version + 1")
    for _, sql in triggers:
        conn.execute(sql)


class Freshness:
    """The store's epoch (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = 0
        self._seen: set[int] = set()  # id() of the connections searched through in this epoch

    def epoch(self, conn: apsw.Connection) -> int:
        """The current epoch for a search on ``conn`` (a connection not seen before moves it on)."""
        with self._lock:
            if id(conn) not in self._seen:
                self._epoch += 1
                self._seen.add(id(conn))
            return self._epoch

    def advance(self) -> None:
        """Move the epoch on: everything cached before may be stale (called after ``reset()``)."""
        with self._lock:
            self._epoch += 1


class Counts:
    """Integers per partition, keyed by anything hashable, each partition's valid for one version of it,
    all for one epoch; at most ``max_entries`` in all (emptied when full: entries are cheap to read again).
    ``misses`` counts the lookups that found nothing valid."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.misses = 0
        self._lock = threading.Lock()
        self._epoch = -1
        self._partitions: dict[str, tuple[int, dict[Hashable, int]]] = {}  # partition -> (version, values)
        self._size = 0

    def at(self, partition: str, version: int, epoch: int) -> CountsView:
        """The cache of ``partition`` as seen by a reader of that version and epoch."""
        return CountsView(self, partition, version, epoch)

    def drop(self, partitions: set[str]) -> None:
        """Forget these partitions' values (they were just written)."""
        with self._lock:
            for partition in partitions:
                entry = self._partitions.pop(partition, None)
                if entry is not None:
                    self._size -= len(entry[1])

    def _values(self, partition: str, version: int, epoch: int, create: bool) -> dict[Hashable, int] | None:
        # under the lock: a newer epoch empties the cache, a newer version of the partition replaces its values;
        # a reader of an older epoch or version gets nothing and changes nothing
        if epoch > self._epoch:
            self._partitions.clear()
            self._size = 0
            self._epoch = epoch
        if epoch < self._epoch:
            return None
        entry = self._partitions.get(partition)
        if entry is not None and entry[0] == version:
            return entry[1]
        if not create or (entry is not None and entry[0] > version):
            return None
        if entry is not None:
            self._size -= len(entry[1])
        values: dict[Hashable, int] = {}
        self._partitions[partition] = (version, values)
        return values

    def get(self, partition: str, version: int, epoch: int, key: Hashable) -> int | None:
        with self._lock:
            values = self._values(partition, version, epoch, create=False)
            value = None if values is None else values.get(key)
            if value is None:
                self.misses += 1
            return value

    def put(self, partition: str, version: int, epoch: int, key: Hashable, value: int) -> None:
        with self._lock:
            if self._size >= self.max_entries:
                self._partitions.clear()
                self._size = 0
            values = self._values(partition, version, epoch, create=True)
            if values is not None and key not in values:
                values[key] = value
                self._size += 1


class CountsView:
    """:class:`Counts` of one partition, bound to one reader's version and epoch."""

    __slots__ = ("_counts", "_epoch", "_partition", "_version")

    def __init__(self, counts: Counts, partition: str, version: int, epoch: int) -> None:
        self._counts = counts
        self._partition = partition
        self._version = version
        self._epoch = epoch

    def get(self, key: Hashable) -> int | None:
        return self._counts.get(self._partition, self._version, self._epoch, key)

    def put(self, key: Hashable, value: int) -> None:
        self._counts.put(self._partition, self._version, self._epoch, key, value)
