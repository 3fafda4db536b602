"""The SQLite store's vector spaces: one sqlite-vec ``vec0`` table per embedder identity, named in
``vector_spaces`` as ``active`` or (during a reindex) ``staging``. See :mod:`.sqlite`'s docstring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apsw

from mindgate.providers._base import EmbedderIdentity

MAX_DIMS = 8192  # the widest vectors a vector space takes
CHUNK_SIZE = 64  # vec0 rows per chunk: small partitions stay small, a 1,000-row partition scans fast


@dataclass(frozen=True)
class Space:
    """A vector space: its generation (the table's suffix) and the embedder identity its vectors come from."""

    gen: int
    identity: EmbedderIdentity

    @property
    def table(self) -> str:
        return f"memories_vec_{self.gen}"


def find_space(conn: apsw.Connection, state: str) -> Space | None:
    """The vector space in ``state`` (``active`` or ``staging``), if there is one."""
    row: Any = conn.execute("SELECT gen, provider, model, dims FROM vector_spaces WHERE state = ?", (state,)).fetchone()
    return None if row is None else Space(int(row[0]), EmbedderIdentity(row[1], row[2], int(row[3])))


def create_space(conn: apsw.Connection, identity: EmbedderIdentity, state: str) -> Space:
    """A new, empty vector space for ``identity``: its row in ``vector_spaces`` and its vec0 table."""
    row: Any = conn.execute("INSERT INTO vector_spaces (provider, model, dims, state) VALUES (?, ?, ?, ?) "
                            "RETURNING gen", (identity.provider, identity.model, identity.dims, state)).fetchone()
    space = Space(int(row[0]), identity)
    conn.execute(f"CREATE VIRTUAL TABLE {space.table} USING vec0 (part TEXT PARTITION KEY, "
                 f"embedding FLOAT[{identity.dims}] distance_metric=cosine, chunk_size={CHUNK_SIZE})")
    # sqlite-vec 0.1 looks up a partition's chunks with "WHERE partition00 = ?" on its shadow table and
    # has no index for it: without this one every KNN and every insert scans all chunks (9 ms at 1M).
    conn.execute(f"CREATE INDEX {space.table}_chunks_by_partition ON {space.table}_chunks (partition00, chunk_id)")
    return space


def drop_space(conn: apsw.Connection, space: Space) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {space.table}")
    conn.execute("DELETE FROM vector_spaces WHERE gen = ?", (space.gen,))


def drop_vectors(conn: apsw.Connection, rowid: int, active: Space, staging: Space | None) -> None:
    """Remove one record's vector from the active space and, during a reindex, the staging one."""
    for space in (active, staging):
        if space is not None:
            conn.execute(f"DELETE FROM {space.table} WHERE rowid = ?", (rowid,))
