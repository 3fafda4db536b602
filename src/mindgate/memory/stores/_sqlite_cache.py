"""What the SQLite store caches of its file, and how a cache knows that a partition may have changed.

A cached value of a partition is stamped with the partition's **version** it was read at: a random 64-bit
value in the ``partitions`` table that every change of one of the partition's memories rows replaces, in
the same transaction, whoever makes it (triggers, migration 005; a record's vector and full-text rows
change only with its memories row). A search reads the version inside its read transaction
(:func:`partition_state`, one indexed lookup) and uses a cached value only when its stamp is that
version: a write to one partition, by this process or another, leaves every other partition's cached
values valid, and a write by another process to this partition is seen at the next search as another
version. Being random rather than counted, one version names one state of the partition's rows even in a
file restored from a backup or replaced by another store's file (a counter could come back to a value
cached from other rows); so versions are only ever compared for equality, and of two values of one
partition the one stored last is kept.

``reset()`` gives every partition a new version at once (:func:`all_versions_moved`); the store also
empties its own caches then, to release their memory.

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
    memories took 13x longer) and every partition gets a new version once instead. An error rolls the
    whole transaction back, the dropped triggers included."""
    triggers: Any = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                 "AND tbl_name = 'memories'").fetchall()
    for name, _ in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    yield
    conn.execute("UPDATE partitions SET version = random()")
    for _, sql in triggers:
        conn.execute(sql)


class Counts:
    """Integers per partition, keyed by anything hashable, each partition's valid for one version of it;
    at most ``max_entries`` in all (emptied when full: entries are cheap to read again). ``misses`` counts
    the lookups that found nothing valid."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.misses = 0
        self._lock = threading.Lock()
        self._partitions: dict[str, tuple[int, dict[Hashable, int]]] = {}  # partition -> (version, values)
        self._size = 0

    def at(self, partition: str, version: int) -> CountsView:
        """The cache of ``partition`` as seen by a reader of that version of it."""
        return CountsView(self, partition, version)

    def drop(self, partitions: set[str]) -> None:
        """Forget these partitions' values (they were just written)."""
        with self._lock:
            for partition in partitions:
                entry = self._partitions.pop(partition, None)
                if entry is not None:
                    self._size -= len(entry[1])

    def clear(self) -> None:
        with self._lock:
            self._partitions.clear()
            self._size = 0

    def get(self, partition: str, version: int, key: Hashable) -> int | None:
        with self._lock:
            entry = self._partitions.get(partition)
            value = entry[1].get(key) if entry is not None and entry[0] == version else None
            if value is None:
                self.misses += 1
            return value

    def put(self, partition: str, version: int, key: Hashable, value: int) -> None:
        with self._lock:
            if self._size >= self.max_entries:
                self._partitions.clear()
                self._size = 0
            entry = self._partitions.get(partition)
            if entry is None or entry[0] != version:  # another version's values are of other rows: replaced
                if entry is not None:
                    self._size -= len(entry[1])
                entry = self._partitions[partition] = (version, {})
            if key not in entry[1]:
                entry[1][key] = value
                self._size += 1


class CountsView:
    """:class:`Counts` of one partition, bound to one reader's version of it."""

    __slots__ = ("_counts", "_partition", "_version")

    def __init__(self, counts: Counts, partition: str, version: int) -> None:
        self._counts = counts
        self._partition = partition
        self._version = version

    def get(self, key: Hashable) -> int | None:
        return self._counts.get(self._partition, self._version, key)

    def put(self, key: Hashable, value: int) -> None:
        self._counts.put(self._partition, self._version, key, value)
