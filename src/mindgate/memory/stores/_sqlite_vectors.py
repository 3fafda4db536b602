"""Exact KNN of partitions in numpy, from an in-memory copy of their vectors, with sqlite-vec's own scores.

sqlite-vec's ``vec0`` KNN is brute force over the partition's chunks read through SQLite on every search:
~1 ms for 1,000 vectors of 384 dimensions, ~10-20 ms at a few thousand on a loaded 2-core machine. The
same search over a float32 matrix in memory costs ~0.15 ms. :class:`PartitionVectors` keeps such matrices
for partitions of at least ``min_vectors`` vectors (smaller ones are about as fast in sqlite-vec), within
``max_bytes``. A partition is copied on its *second* search at one version of it (the copy, read chunk by
chunk into memory mapped up front, costs about one vec0 KNN more): a partition searched once and never
again costs what it did without the cache. This store's own writes patch the copy (see below), so a
chat turn that searches then stores keeps its scope in memory. Nothing is evicted:
once a copy does not fit, partitions not copied yet are searched by vec0 until room is released (a copy
dropped because its partition changed). (With less budget than the partitions searched,
least-recently-used eviction would reload a partition at most searches, each reload costing more than
the vec0 search it replaces.)

Scores and order are sqlite-vec's, bit for bit: vec0's cosine distance is ``1 - dot / (sqrt(|a|²) *
sqrt(|b|²))`` with the three sums taken in float32, one element after the other, and the quotient in
float64 rounded to float32. A fast (BLAS-order) similarity picks every vector within :data:`MARGIN` of
the k-th best (the two ways of summing differ by far less), and only those are scored the way vec0
scores them; the k best by (distance, rowid) are the answer. Exact ties in distance (one vector stored
twice) are ordered by rowid, which vec0 may order otherwise.

Freshness (see :mod:`._sqlite_cache`): a copy is stamped with its partition's version and serves only
searches that read that version; a search that reads another version drops it (releasing its bytes) and
counts as a first search. This store's own writes patch their partitions' copies in place of a reload
(:meth:`PartitionVectors.patch`: the vectors it removed and added, the version before and after, read in
its write transaction), so a scope that is searched then written, turn after turn, stays in memory; a
write that cannot be patched (another writer came between, a zero vector) drops the copy. A copy of a
partition another process wrote stays held until that partition is searched again. ``reset()`` and a new
vector space (another table) empty the cache.

The copy is read from vec0's own tables (chunks of ``rowids`` / ``validity`` / ``vectors``), whose layout
is sqlite-vec 0.1's; a table created by another version, a partition holding a zero vector, or any
surprise in the layout makes :meth:`PartitionVectors.search` answer None and the caller uses sqlite-vec.
"""

from __future__ import annotations

import mmap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import psutil

from mindgate.errors import InvalidRequestError

SMALL = object()  # marker: the partition is below min_vectors (or cannot be read); use sqlite-vec
MIN_VECTORS = 256  # below this a vec0 KNN costs about what reading the partition into memory does
CHUNK_ROWS = 64  # free rows a grown copy keeps for vectors added later
MAX_ENTRIES = 100_000  # partitions remembered (small ones as a marker), whatever their bytes
# how far (in cosine) the fast similarity may rank a vector from where vec0's float32 sums put it; the two
# differ by < 1e-4 for unit-scale vectors of 8,192 dimensions (n * 2^-24 relative), so this is generous
MARGIN = 1e-3
POPULATE_MIN_BYTES = 256 * 2**10  # copies from this size up are mapped with their pages populated (_zeros)
DEFAULT_FRACTION = 8  # default budget: this fraction of the machine's memory ...
DEFAULT_BOUNDS_MB = (256, 4096)  # ... within these bounds
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def default_cache_mb() -> int:
    """The default budget of the vector cache in MiB: 1/8 of the memory this process may use (the machine's,
    or a container's limit where it is lower), 256 MiB to 4 GiB."""
    total = min(psutil.virtual_memory().total, _cgroup_limit() or 1 << 62) // 2**20 // DEFAULT_FRACTION
    return int(min(max(total, DEFAULT_BOUNDS_MB[0]), DEFAULT_BOUNDS_MB[1]))


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2, then v1) in bytes; None when there is none to read."""
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def cache_bytes(megabytes: int | None) -> int:
    """``vector_cache_mb`` as bytes (None: :func:`default_cache_mb`; 0 turns the cache off)."""
    if megabytes is None:
        megabytes = default_cache_mb()
    if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes < 0:
        raise InvalidRequestError(f"vector_cache_mb must be a non-negative integer (MiB), got {megabytes!r}",
                                  hint="set vector_store.config.vector_cache_mb to e.g. 2048, or 0 to turn the "
                                       "in-memory vector copies off")
    return megabytes * 2**20


@dataclass
class _Matrix:
    rowids: np.ndarray  # int64
    vectors: np.ndarray  # float32, as stored: the first rows of ``buffer``
    inverse: np.ndarray  # float32, 1 / |row| (for the fast similarity only)
    buffer: np.ndarray  # the allocation ``vectors`` views; rows past them are free for added vectors
    nbytes: int  # memory held, the free rows included

    def patched(self, removed: set[int], added: list[tuple[int, np.ndarray]]) -> _Matrix | None:
        """This copy with the ``removed`` rowids taken out and the ``added`` (rowid, vector) put in; None
        when an added vector is zero (vec0 scores it NaN). Added vectors go into the free rows of the
        buffer when no row was removed: a reader of this copy sees only its own rows, so it is left intact.
        (An add costs ~10 µs; a removal copies the kept rows: ~0.2 ms for 5,000 vectors of 384 dimensions.)"""
        rowids, vectors, inverse, buffer = self.rowids, self.vectors, self.inverse, self.buffer
        gone = np.flatnonzero(np.isin(rowids, np.fromiter(removed, dtype=np.int64, count=len(removed))))
        if len(gone):  # the kept rows are copied once, run by run, into a buffer with room for the added ones
            kept = len(rowids) - len(gone)
            rows = kept + len(added) + (CHUNK_ROWS if added else 0)
            # np.empty, not _zeros: a fresh populated mapping per write cost ~3 ms at 5,000 rows
            buffer = np.empty((rows, vectors.shape[1]), dtype=np.float32)
            start = filled = 0
            for end in [*gone.tolist(), len(rowids)]:
                buffer[filled:filled + end - start] = vectors[start:end]
                filled += end - start
                start = end + 1
            rowids, inverse, vectors = np.delete(rowids, gone), np.delete(inverse, gone), buffer[:kept]
        if added:
            new = np.stack([vector for _, vector in added]).astype(np.float32, copy=False)
            norms = np.sqrt(np.vecdot(new, new))
            if not norms.all():
                return None
            n, total = len(rowids), len(rowids) + len(added)
            if buffer.shape[0] < total or not buffer.flags.writeable:
                grown = np.empty((total + max(CHUNK_ROWS, total // 4), new.shape[1]), dtype=np.float32)
                grown[:n] = vectors
                buffer = grown
            buffer[n:total] = new
            vectors = buffer[:total]
            rowids = np.concatenate([rowids, np.array([rowid for rowid, _ in added], dtype=np.int64)])
            inverse = np.concatenate([inverse, (1.0 / norms).astype(np.float32)])
        return _Matrix(rowids, vectors, inverse, buffer, buffer.nbytes + rowids.nbytes + inverse.nbytes)


class PartitionVectors:
    """A bounded cache of partitions' vectors, used by the SQLite store's unfiltered vector search. ``loads``
    counts the copies read from the file."""

    def __init__(self, *, max_bytes: int = 256 * 2**20, min_vectors: int = MIN_VECTORS, chunk_size: int = 64) -> None:
        self.max_bytes = max_bytes
        self.min_vectors = min_vectors
        self.chunk_size = chunk_size
        self.loads = 0
        self._entries: dict[str, tuple[int, _Matrix | object]] = {}  # partition -> (version, copy or SMALL)
        self._bytes = 0
        self._full = False  # a copy did not fit: no more copies until room is released
        self._lock = threading.Lock()
        self._table = ""  # the vector space the entries come from
        self._seen: dict[str, int] = {}  # partition -> the version it was searched at once
        self._layouts: dict[str, bool] = {}  # table -> written by the sqlite-vec version this reads

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def search(self, conn: apsw.Connection, table: str, dims: int, partition: str, query: np.ndarray,
               k: int, version: int) -> list[tuple[int, float]] | None:
        """The ``k`` nearest ``(rowid, cosine distance)`` of the partition, nearest first; None when the
        partition is not cached here (the caller asks sqlite-vec). ``conn`` holds a read transaction;
        ``version`` is the partition's version as that transaction saw it."""
        if self.max_bytes <= 0:
            return None
        with self._lock:
            if table != self._table:  # another vector space: every copy is of vectors no longer searched
                self._empty()
                self._table = table
            held = self._entries.get(partition)
            if held is not None and held[0] != version:
                self._release(partition)  # the partition changed since it was copied
            if held is not None and held[0] == version:
                entry = held[1]
            elif self._full or self._first_search(partition, version):
                return None  # a partition searched once per version costs no more than before
            else:
                entry = None
        if entry is None:
            entry = self._load(conn, table, dims, partition)
            self._keep(table, partition, entry, version)
        if not isinstance(entry, _Matrix):
            return None
        return _top(entry, query, k)

    def holds(self, partition: str) -> bool:
        """Whether a copy of the partition is held (a write then reads its versions to patch it)."""
        held = self._entries.get(partition)
        return held is not None and isinstance(held[1], _Matrix)

    def patch(self, table: str, partition: str, before: int, after: int, removed: set[int],
              added: list[tuple[int, np.ndarray]]) -> None:
        """Bring the partition's copy from version ``before`` to ``after`` by a committed write of the
        store's own: the rowids it ``removed`` from ``table`` and the (rowid, vector) it ``added``. A copy of
        another version (a writer came between), of another table, or that cannot be patched is dropped."""
        with self._lock:
            held = self._entries.get(partition)
            if held is None or table != self._table or held[0] != before or not isinstance(held[1], _Matrix):
                self._release(partition)
                self._seen.pop(partition, None)
                return
            matrix = held[1].patched(removed, added)
            self._release(partition)
            if matrix is None or len(matrix.rowids) < self.min_vectors:
                self._seen.pop(partition, None)
                return
            if self._bytes + matrix.nbytes > self.max_bytes:
                self._full = True
                return
            self._entries[partition] = (after, matrix)
            self._bytes += matrix.nbytes
            self._seen[partition] = after

    def drop(self, partitions: set[str]) -> None:
        """Drop these partitions' copies (they were just written), releasing their bytes."""
        with self._lock:
            for partition in partitions:
                self._release(partition)
                self._seen.pop(partition, None)

    def clear(self) -> None:
        with self._lock:
            self._empty()

    def _empty(self) -> None:
        self._entries.clear()
        self._seen.clear()
        self._bytes = 0
        self._full = False

    def _release(self, partition: str) -> None:
        held = self._entries.pop(partition, None)
        if held is not None and isinstance(held[1], _Matrix):
            self._bytes -= held[1].nbytes
            self._full = False

    def _first_search(self, partition: str, version: int) -> bool:
        if self._seen.get(partition) == version:
            return False
        if len(self._seen) >= MAX_ENTRIES:
            self._seen.clear()
        self._seen[partition] = version
        return True

    def _keep(self, table: str, partition: str, entry: _Matrix | object, version: int) -> None:
        size = entry.nbytes if isinstance(entry, _Matrix) else 0
        with self._lock:
            self.loads += 1
            held = self._entries.get(partition)
            if table != self._table or (held is not None and held[0] == version):
                return  # of a vector space no longer searched, or loaded by another thread meanwhile
            if self._bytes + size > self.max_bytes or len(self._entries) >= MAX_ENTRIES:
                self._full = True  # no eviction (see the module docstring)
                return
            if held is not None:
                self._release(partition)
            self._entries[partition] = (version, entry)
            self._bytes += size

    def _load(self, conn: apsw.Connection, table: str, dims: int, partition: str) -> _Matrix | object:
        layout = self._layouts.get(table)
        if layout is None:
            try:
                version = conn.execute(f"SELECT value FROM {table}_info WHERE key = 'CREATE_VERSION'").fetchone()
            except apsw.SQLError:
                version = None
            layout = self._layouts[table] = bool(version) and str(version[0]).startswith("v0.1.")  # type: ignore[index]
        if not layout:
            return SMALL
        rows = conn.execute(f"SELECT chunk_id, size, validity, rowids FROM {table}_chunks WHERE partition00 = ? "
                            "ORDER BY chunk_id", (partition,)).fetchall()
        if len(rows) * self.chunk_size < self.min_vectors:
            return SMALL
        try:
            matrix = _matrix(conn, f"{table}_vector_chunks00", rows, dims)
        except apsw.SQLError:  # a chunk without its vectors row: not the layout this reads
            matrix = None
        return SMALL if matrix is None or len(matrix.rowids) < self.min_vectors else matrix


def _matrix(conn: apsw.Connection, vectors_table: str, rows: list[Any], dims: int) -> _Matrix | None:
    sizes = [int(size) for _, size, _, _ in rows]
    for (_, _, validity, rowids), size in zip(rows, sizes, strict=True):
        if size % 8 or len(rowids) != 8 * size or len(validity) * 8 != size:
            return None  # not the layout this reads
    if not rows:
        return None
    valid = np.unpackbits(np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8), bitorder="little")
    ids = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.int64)
    # each chunk's vectors straight from SQLite into their rows of the matrix (no bytes object between)
    vectors, start = _zeros(sum(sizes), dims), 0
    held = vectors.nbytes + ids.nbytes
    for (chunk_id, _, _, _), size in zip(rows, sizes, strict=True):
        blob = conn.blob_open("main", vectors_table, "vectors", chunk_id, False)
        try:
            if blob.length() != 4 * dims * size:
                return None
            blob.read_into(vectors[start:start + size].data.cast("B"))
        finally:
            blob.close()
        start += size
    count = int(np.count_nonzero(valid))
    buffer = vectors
    if valid[:count].all():  # the usual layout: only the last chunk's tail is free (a view, no copy)
        ids, vectors = ids[:count], vectors[:count]
    else:  # deleted vectors leave holes
        keep = valid.astype(bool)
        ids, vectors = ids[keep], vectors[keep]
        buffer = vectors
    norms = np.sqrt(np.vecdot(vectors, vectors))
    if not len(ids) or not norms.all():
        return None  # a zero vector's cosine distance is NaN in vec0: leave its order to vec0
    inverse = (1.0 / norms).astype(np.float32)
    return _Matrix(ids, vectors, inverse, buffer, held + inverse.nbytes)


def _zeros(rows: int, dims: int) -> np.ndarray:
    """A float32 ``rows`` x ``dims`` matrix in fresh memory. Where the OS can (Linux), a large one is mapped
    with its pages populated in one system call: touching fresh pages one at a time (a fault per 4 KiB)
    cost more than reading the vectors. Small ones (and a failed mapping) come from numpy's allocator,
    which keeps the number of mappings well below the system's limit."""
    size = rows * dims * 4
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate and size >= POPULATE_MIN_BYTES:
        try:
            memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        except OSError:
            pass
        else:
            return np.frombuffer(memory, dtype=np.float32).reshape(rows, dims)
    return np.empty((rows, dims), dtype=np.float32)


def _sequential_sums(columns: np.ndarray) -> np.ndarray:
    """Each column's sum in float32, added top to bottom, as sqlite-vec's loop adds (``columns`` is
    C-contiguous, one row per dimension: numpy then adds row after row; along a contiguous axis it would
    sum in pairs, and ``cumsum`` along it is ~5x slower). A single column is summed with ``cumsum``: numpy
    would see one contiguous axis and sum it in pairs."""
    if columns.shape[1] == 1:
        return np.cumsum(columns[:, 0], dtype=np.float32)[-1:]
    return np.add.reduce(columns, axis=0, dtype=np.float32)


def _top(entry: _Matrix, query: np.ndarray, k: int) -> list[tuple[int, float]] | None:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    column = q[:, None]
    q_magnitude = float(_sequential_sums(column * column)[0])
    if q_magnitude == 0.0:
        return None
    n = len(entry.rowids)
    k = min(k, n)
    if k <= 0:
        return []
    # not einsum (~2x slower here), not a matrix product (BLAS: a threaded sgemv waits for a second core on a
    # busy machine, p95 x50): vecdot's per-row dot stays on this thread
    fast = np.vecdot(entry.vectors, q / np.float32(np.sqrt(q_magnitude))) * entry.inverse
    if k < n:
        kth = np.partition(fast, n - k)[n - k]
        pool = np.flatnonzero(fast >= kth - MARGIN)
    else:
        pool = np.arange(n)
    vectors = entry.vectors[pool].T  # one row per dimension
    dot = _sequential_sums(np.multiply(vectors, column, order="C")).astype(np.float64)
    magnitude = _sequential_sums(np.multiply(vectors, vectors, order="C")).astype(np.float64)
    distance = (1.0 - dot / (np.sqrt(magnitude) * np.sqrt(q_magnitude))).astype(np.float32)
    rowids = entry.rowids[pool]
    best = np.lexsort((rowids, distance))[:k]
    return list(zip(rowids[best].tolist(), distance[best].tolist(), strict=True))
