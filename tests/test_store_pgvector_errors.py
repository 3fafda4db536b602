"""pgvector store: a clear error that says which problem it is and how to fix it, for a malformed DSN, a
server that is down, a refused login, a missing database and a missing pgvector extension; all against
the real PostgreSQL from pgserver (or a real closed port)."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

import psycopg
from psycopg import sql

from mindgate.config import PgVectorStoreConfig
from mindgate.errors import ConfigurationError, InvalidRequestError, StoreError
from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "unit-vectors", 8)
Factory = Callable[..., PgVectorStore]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _add(store: PgVectorStore, text: str, **record: Any) -> None:
    if "hash" not in record:
        record["hash"] = content_hash(text)
    rec = MemoryRecord(id=uuid.uuid4().hex, memory=text, scope=Scope(user_id="u"), **record)
    store.apply([AddChange(rec, np.ones(8, dtype=np.float32))])


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


# -- configuration -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dsn", ["host=localhost port", "postgresql://u:secret@h:5432/db?nosuchoption=1"])
def test_a_malformed_dsn_is_a_configuration_error_without_the_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid PostgreSQL DSN") as err:
        PgVectorStore(PgVectorStoreConfig(dsn=dsn))
    assert "secret" not in str(err.value)
    assert "postgresql://user:password@host:5432/dbname" in str(err.value)


def test_a_bad_port_is_a_configuration_error_at_connect() -> None:
    store = PgVectorStore(PgVectorStoreConfig(dsn="postgresql://u@127.0.0.1:notaport/db"))
    with pytest.raises(ConfigurationError, match=r'invalid PostgreSQL DSN.*"port"'):
        store.open(IDENT)


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "needs a database to connect to"),
    ({"dsn": "postgresql://a@h/db", "connection_string": "postgresql://b@h/db"}, "both `dsn` and"),
    ({"host": "h", "minconn": 5, "maxconn": 2}, "minconn .5. is larger than maxconn .2."),
])
def test_incomplete_or_contradictory_config_is_refused_up_front(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PgVectorStore(PgVectorStoreConfig(**fields))


def test_configured_dims_give_way_to_the_embedders_on_a_new_store(pg_store_factory: Factory) -> None:
    """mem0 configs carry embedding_model_dims (often a copied 1536); the embedder's probed size is what a new
    store is built with (Memory warns about the difference), and an existing store still checks its own."""
    store = pg_store_factory(embedding_model_dims=384)
    store.open(IDENT)
    assert store.recorded_identity() == IDENT


# -- server ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["dsn", "keys"])
def test_a_server_that_is_down_is_named_by_host_and_port(style: str) -> None:
    port = _closed_port()
    cfg = (PgVectorStoreConfig(dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)
           if style == "dsn" else PgVectorStoreConfig(host="127.0.0.1", port=port, user="postgres",
                                                      password="hunter2", connect_timeout=2))
    store = PgVectorStore(cfg)
    with pytest.raises(StoreError) as err:
        store.open(IDENT)
    text = str(err.value)
    assert f"PostgreSQL is not reachable at 127.0.0.1:{port}: start it or fix the DSN" in text
    assert "hunter2" not in text
    assert not isinstance(err.value, ConfigurationError)


def test_a_wrong_password_is_a_login_error_without_the_password(pg_server: Any, pg_dsn: str,
                                                                admin: psycopg.Connection[Any]) -> None:
    role = f"mg_pw_{uuid.uuid4().hex[:8]}"
    hba = pg_server.pgdata / "pg_hba.conf"
    original = hba.read_text()
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal("right-one")))
    admin.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    admin.execute("CREATE EXTENSION IF NOT EXISTS vector")
    hba.write_text(f"local all {role} scram-sha-256\n" + original)  # first match wins: only this role
    admin.execute("SELECT pg_reload_conf()")
    try:
        store = PgVectorStore(PgVectorStoreConfig(dsn=pg_dsn, user=role, password="wrong-one"))
        with pytest.raises(StoreError, match="rejected the login") as err:
            store.open(IDENT)
        assert "wrong-one" not in str(err.value) and "check the user and password" in str(err.value)
        ok = PgVectorStore(PgVectorStoreConfig(dsn=pg_dsn, user=role, password="right-one"))
        assert ok.recorded_identity() is None  # the right password gets in (and may create tables)
        ok.close()
    finally:
        hba.write_text(original)
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_missing_database_says_create_it(pg_dsn: str) -> None:
    store = PgVectorStore(PgVectorStoreConfig(dsn=pg_dsn, dbname="no_such_db_here"))
    with pytest.raises(StoreError, match=r"no such database .*createdb"):
        store.open(IDENT)


# -- pgvector extension ------------------------------------------------------------------------------

@pytest.fixture
def fresh_database(pg_dsn: str, admin: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """A new database without pgvector, owned by a new non-superuser role: (dbname, role)."""
    name = f"mg_noext_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    yield name, name
    admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_missing_extension_that_the_user_may_not_create_says_how(pg_dsn: str,
                                                                    fresh_database: tuple[str, str]) -> None:
    dbname, role = fresh_database
    store = PgVectorStore(PgVectorStoreConfig(dsn=pg_dsn, dbname=dbname, user=role))
    with pytest.raises(StoreError) as err:
        store.open(IDENT)
    assert "pgvector extension is not enabled" in str(err.value)
    assert f"run CREATE EXTENSION vector as a superuser in database {dbname!r}" in str(err.value)


def test_a_superuser_gets_the_extension_created(pg_dsn: str, fresh_database: tuple[str, str]) -> None:
    dbname, _ = fresh_database
    store = PgVectorStore(PgVectorStoreConfig(dsn=pg_dsn, dbname=dbname, collection_name="mg"))
    store.open(IDENT)
    _add(store, "pgvector was created on first use")
    store.close()
    with psycopg.connect(pg_dsn, dbname=dbname) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM mg_memories").fetchone() == (1,)


# -- misuse ------------------------------------------------------------------------------------------

def test_writes_before_open_are_refused(pg_store_factory: Factory) -> None:
    with pytest.raises(StoreError, match=r"was not opened.*open\(embedder_identity\)"):
        _add(pg_store_factory(), "too early")


def test_text_postgres_cannot_store_is_rejected_before_writing(pg_store_factory: Factory) -> None:
    store = pg_store_factory()
    store.open(IDENT)
    with pytest.raises(InvalidRequestError, match="NUL"):
        _add(store, "nul \x00 inside")
    with pytest.raises(InvalidRequestError, match="not JSON-serialisable"):
        _add(store, "bad metadata", metadata={"x": float("nan")})
    with pytest.raises(InvalidRequestError, match="lone surrogate"):
        _add(store, "half a pair \ud800", hash="h")
    with pytest.raises(InvalidRequestError, match="metadata holds a lone surrogate"):
        _add(store, "fine text", metadata={"x": "\udfff"})
    assert store.count(Scope(user_id="u")) == 0
    _add(store, "surrogates in a query are not an error")
    assert len(store.text_search(Scope(user_id="u"), "query \ud800 error", 5)) == 1


def test_a_schema_newer_than_this_mindgate_is_refused(pg_store_factory: Factory, pg_dsn: str) -> None:
    store = pg_store_factory()
    store.open(IDENT)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (999)")
                     .format(sql.Identifier(f"{store.collection}_schema_version")))
    with pytest.raises(StoreError, match=r"schema version 999, newer .*upgrade mindgate"):
        pg_store_factory(reopen=store).open(IDENT)


def test_vectors_too_wide_for_hnsw_fall_back_to_exact_search(pg_store_factory: Factory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    wide = EmbedderIdentity("test", "wide", 2048)
    store = pg_store_factory()
    with caplog.at_level(logging.WARNING, logger="mindgate.memory.pgvector"):
        store.open(wide)
    assert "HNSW index takes at most 2000 dims" in caplog.text
    rec = MemoryRecord(id="w1", memory="wide", hash=content_hash("wide"), scope=Scope(user_id="u"))
    store.apply([AddChange(rec, np.ones(2048, dtype=np.float32))])
    hits = store.vector_search(Scope(user_id="u"), np.ones(2048, dtype=np.float32), 3)
    assert [(r.id, round(s, 5)) for r, s in hits] == [("w1", 1.0)]
