"""PostgreSQL 16 + pgvector fixtures: a real server from the ``pgserver`` package.

``pg_server`` starts one server per session in a temp dir, listening only on a unix socket there (no
TCP port at all), with trust auth for the ``postgres`` superuser; it is stopped and deleted at the end.
``pg_store_factory()`` returns a fresh, empty, NOT yet opened :class:`PgVectorStore` on it (tables named
by a unique ``collection_name``), and drops that collection's tables after the test.
``pg_store_factory(reopen=store)`` returns a second store object on the same collection; other keyword
arguments override config fields, e.g. ``pg_store_factory(maxconn=2)``.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mindgate.memory.stores._pgvector import PgVectorStore


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    pgserver = pytest.importorskip("pgserver", reason="pgserver (a dev dependency) runs the PostgreSQL tests")
    pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")
    # Not under pytest's basetemp: when run as root, pgserver runs postgres as another user, and pytest
    # makes /tmp/pytest-of-<user> private (0700) again whenever another session starts.
    pgdata = Path(tempfile.mkdtemp(prefix="mindgate-pg-"))
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn(pg_server: Any) -> str:
    """DSN of the session's server (superuser ``postgres``, database ``postgres``, unix socket)."""
    return str(pg_server.get_uri())


def drop_collection(dsn: str, prefix: str) -> None:
    """Drop every table of a collection (``<prefix>_*``)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s",
            [prefix.replace("_", r"\_") + r"\_%"]).fetchall()]
        if names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in names)))


@pytest.fixture
def pg_store_factory(pg_dsn: str) -> Iterator[Callable[..., PgVectorStore]]:
    from mindgate.config import PgVectorStoreConfig
    from mindgate.memory.stores._pgvector import PgVectorStore

    stores: list[PgVectorStore] = []

    def make(reopen: PgVectorStore | None = None, **overrides: Any) -> PgVectorStore:
        name = reopen.collection if reopen is not None else f"t{uuid.uuid4().hex[:12]}"
        fields: dict[str, Any] = {"dsn": pg_dsn, "collection_name": name, **overrides}
        store = PgVectorStore(PgVectorStoreConfig(**fields))
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
    for prefix in {s.collection for s in stores}:
        drop_collection(pg_dsn, prefix)
