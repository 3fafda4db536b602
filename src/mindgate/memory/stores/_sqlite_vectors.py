"""Exact KNN of large partitions in numpy, from an in-memory copy of their vectors.

sqlite-vec's ``vec0`` KNN is brute force over the partition's chunks read through SQLite; at a few
thousand vectors it costs ~10-20 ms on a loaded 2-core machine, while the same exact search over a float32
matrix in memory costs ~0.2 ms. :class:`PartitionVectors` keeps such matrices for partitions of at least
``min_vectors`` vectors (smaller ones are fast in sqlite-vec and stay there), within ``max_bytes`` (least
recently used first out).

Freshness: every cached matrix is dropped as soon as anything may have changed the file (the store's
generation, :class:`~mindgate.memory.stores._sqlite_cache.Freshness`: a write transaction of this
process, or a commit by another connection or process). A matrix built from a snapshot older than the
last drop is not kept. Results are the same as sqlite-vec's (cosine similarity, exact), up to
the order of exact ties.

The copy is read from vec0's own tables (chunks of ``rowids`` / ``validity`` / ``vectors``), whose layout
is sqlite-vec 0.1's; a table created by another version, or any surprise in the layout, makes
:meth:`PartitionVectors.search` answer None and the caller uses sqlite-vec's KNN.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import apsw
import numpy as np

SMALL = object()  # marker: the partition is below min_vectors (or cannot be read); use sqlite-vec


@dataclass
class _Matrix:
    rowids: np.ndarray  # int64
    unit: np.ndarray  # float32, rows scaled to length 1 (zero rows stay zero)

    @property
    def nbytes(self) -> int:
        return int(self.rowids.nbytes + self.unit.nbytes)


class PartitionVectors:
    """A bounded LRU cache of partitions' vectors, used by the SQLite store's unfiltered vector search."""

    def __init__(self, *, max_bytes: int = 256 * 2**20, min_vectors: int = 2048, chunk_size: int = 64) -> None:
        self.max_bytes = max_bytes
        self.min_vectors = min_vectors
        self.chunk_size = chunk_size
        self._entries: OrderedDict[tuple[str, str], _Matrix | object] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._generation = 0

    def search(self, conn: apsw.Connection, table: str, dims: int, partition: str, query: np.ndarray,
               k: int, generation: int) -> list[tuple[int, float]] | None:
        """The ``k`` nearest ``(rowid, cosine similarity)`` of the partition, best first; None when the
        partition is not cached here (the caller asks sqlite-vec). ``conn`` holds a read transaction;
        ``generation`` is the store's generation as that transaction saw it."""
        if self.max_bytes <= 0:
            return None
        if not self._fresh(generation):
            return None  # this reader's snapshot is older than the cache's
        key = (table, partition)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is None:
            entry = self._load(conn, table, dims, partition)
            self._keep(key, entry, generation)
        if not isinstance(entry, _Matrix):
            return None
        return _top(entry, query, k)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _fresh(self, generation: int) -> bool:
        with self._lock:
            if generation > self._generation:
                self._entries.clear()
                self._bytes = 0
                self._generation = generation
            return generation == self._generation

    def _keep(self, key: tuple[str, str], entry: _Matrix | object, generation: int) -> None:
        size = entry.nbytes if isinstance(entry, _Matrix) else 0
        with self._lock:
            if generation != self._generation or size > self.max_bytes:
                return  # built from a snapshot that changed since, or too big to keep
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.nbytes if isinstance(old, _Matrix) else 0

    def _load(self, conn: apsw.Connection, table: str, dims: int, partition: str) -> _Matrix | object:
        try:
            version = conn.execute(f"SELECT value FROM {table}_info WHERE key = 'CREATE_VERSION'").fetchone()
            chunks = conn.execute(f"SELECT count(*) FROM {table}_chunks WHERE partition00 = ?",
                                  (partition,)).fetchone()
        except apsw.SQLError:
            return SMALL
        if not version or not str(version[0]).startswith("v0.1.") or not chunks or \
                int(chunks[0]) * self.chunk_size < self.min_vectors:
            return SMALL
        # vec0 declares a column named "rowid" (no index): join on the real rowid, check the two agree
        rows = conn.execute(f"SELECT c.chunk_id, v.rowid, c.size, c.validity, c.rowids, v.vectors "
                            f"FROM {table}_chunks c JOIN {table}_vector_chunks00 v ON v._rowid_ = c.chunk_id "
                            "WHERE c.partition00 = ? ORDER BY c.chunk_id", (partition,)).fetchall()
        return _matrix(rows, dims) or SMALL


def _matrix(rows: list[Any], dims: int) -> _Matrix | None:
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    for chunk_id, declared, size, validity, rowids, blob in rows:
        size = int(size)
        if chunk_id != declared or len(rowids) != 8 * size or len(blob) != 4 * dims * size \
                or len(validity) * 8 < size:
            return None  # not the layout this reads
        valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[:size].astype(bool)
        ids.append(np.frombuffer(rowids, dtype=np.int64)[valid])
        vectors.append(np.frombuffer(blob, dtype=np.float32).reshape(size, dims)[valid])
    if not ids:
        return None
    matrix = np.concatenate(vectors)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return _Matrix(np.concatenate(ids), np.ascontiguousarray(unit, dtype=np.float32))


def _top(entry: _Matrix, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    # einsum, not BLAS: a multi-threaded sgemv waits for a second core on a busy machine (p95 x50)
    sims = np.einsum("ij,j->i", entry.unit, q / norm if norm > 0 else q)
    n = len(sims)
    if n == 0:
        return []
    k = min(k, n)
    best = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
    best = best[np.lexsort((entry.rowids[best], -sims[best]))]
    return [(int(entry.rowids[i]), max(-1.0, min(1.0, float(sims[i])))) for i in best]
