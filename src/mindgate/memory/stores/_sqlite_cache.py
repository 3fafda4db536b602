"""What the SQLite store caches of its file, and how a cache knows the file may have changed.

:class:`Freshness` turns "may the file have changed since the last look?" into a generation number: it
moves on at every committed write transaction of this process (:attr:`Connections.writes`) and at every
commit by another connection or process (SQLite's ``PRAGMA data_version``, which each connection reports
for itself). A cache holds values of one generation only: a newer generation empties it before use, and a
value read under an older generation (a search that began before the change) is neither returned nor kept.

:class:`Counts` is such a cache for the small integers text search reads on every query (how many live
memories a partition holds, how many documents hold a word): they cost an index scan each (one per query
word), and between writes they do not change.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

import apsw


class Freshness:
    """The store's generation counter (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._seen_versions: dict[int, int] = {}
        self._seen_writes = -1

    def generation(self, conn: apsw.Connection, writes: int) -> int:
        """The current generation, as seen from ``conn`` (inside its read transaction) given ``writes``,
        the store's count of committed write transactions."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])  # type: ignore[index]
        with self._lock:
            if self._seen_versions.get(id(conn)) != version or self._seen_writes != writes:
                self._generation += 1
                self._seen_versions[id(conn)] = version
                self._seen_writes = writes
            return self._generation


class Counts:
    """Integers keyed by anything hashable, valid for one generation; at most ``max_entries`` (emptied
    when full: entries are cheap to read again)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._generation = -1
        self._values: dict[Hashable, int] = {}

    def at(self, generation: int) -> CountsView:
        """The cache as seen by a reader of ``generation``."""
        return CountsView(self, generation)

    def _current(self, generation: int) -> bool:
        # under the lock: a newer generation empties the cache; an older one must not touch it
        if generation > self._generation:
            self._values.clear()
            self._generation = generation
        return generation == self._generation

    def get(self, key: Hashable, generation: int) -> int | None:
        with self._lock:
            return self._values.get(key) if self._current(generation) else None

    def put(self, key: Hashable, value: int, generation: int) -> None:
        with self._lock:
            if self._current(generation):
                if len(self._values) >= self.max_entries:
                    self._values.clear()
                self._values[key] = value


class CountsView:
    """:class:`Counts` bound to one reader's generation."""

    __slots__ = ("_counts", "_generation")

    def __init__(self, counts: Counts, generation: int) -> None:
        self._counts = counts
        self._generation = generation

    def get(self, key: Hashable) -> int | None:
        return self._counts.get(key, self._generation)

    def put(self, key: Hashable, value: int) -> None:
        self._counts.put(key, value, self._generation)
