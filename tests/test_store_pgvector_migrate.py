"""``mindgate migrate`` into PostgreSQL: every memory (soft-deleted ones too), its vector and all history
are copied without re-embedding, counts and checksums are verified, and running it again (also after
an interruption) converges to the same state. Real stores on a real server (pgserver)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

import psycopg
import typer
from psycopg import sql
from typer.testing import CliRunner

from migrate_helpers import IDENT, SCOPES, embed, populate, snapshot
from mindgate.errors import EmbedderMismatchError, StoreError
from mindgate.memory._commands_migrate import migrate_command
from mindgate.memory._migrate import digest, export_records, migrate
from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

Factory = Callable[..., PgVectorStore]

@pytest.fixture
def source(pg_store_factory: Factory) -> PgVectorStore:
    store = pg_store_factory()
    populate(store)
    return store


def test_migrate_copies_everything_and_verifies_it(source: PgVectorStore, pg_store_factory: Factory) -> None:
    target = pg_store_factory()
    events: list[tuple[str, int, int]] = []
    report = migrate(source, target, progress=lambda *e: events.append(e), batch_size=5)

    assert (report.records, report.deleted, report.vectors, report.history) == (24, 8, 16, 35)
    assert report.identity == IDENT and target.recorded_identity() == IDENT
    assert report.checksum == digest(source).checksum == digest(target).checksum
    assert snapshot(target) == snapshot(source)
    assert {phase for phase, _, _ in events} == {"records", "history", "verify"}
    assert ("records", 24, 24) in events and ("history", 35, 35) in events and ("verify", 59, 59) in events
    query = embed("fact 9: ünïcode, quotes ' \" and % signs")
    for scope in SCOPES:
        assert [(r.id, round(s, 5)) for r, s in target.vector_search(scope, query, 5)] == \
            [(r.id, round(s, 5)) for r, s in source.vector_search(scope, query, 5)]
        assert [r.id for r, _ in target.text_search(scope, "corrected quotes", 5)] == \
            [r.id for r, _ in source.text_search(scope, "corrected quotes", 5)]


def test_running_it_again_changes_nothing(source: PgVectorStore, pg_store_factory: Factory) -> None:
    target = pg_store_factory()
    first = migrate(source, target)
    before = snapshot(target)
    second = migrate(source, target)
    assert (second.records, second.history, second.checksum) == (first.records, first.history, first.checksum)
    assert snapshot(target) == before


def test_an_interrupted_migration_completes_when_run_again(source: PgVectorStore, pg_store_factory: Factory) -> None:
    target = pg_store_factory()
    target.open(IDENT)
    target.import_records(list(export_records(source))[:10])  # as if the first run died after a batch
    target.import_history(list(source.iter_history())[:4])
    assert digest(target).records == 10
    report = migrate(source, target)
    assert report.records == 24 and snapshot(target) == snapshot(source)


def test_a_target_holding_other_memories_fails_verification(source: PgVectorStore, pg_store_factory: Factory) -> None:
    target = pg_store_factory()
    target.open(IDENT)
    target.apply([AddChange(MemoryRecord(id="zzz-foreign", memory="not from the source",
                                         hash=content_hash("not from the source"), scope=Scope(user_id="eve")),
                            embed("foreign"))])
    with pytest.raises(StoreError, match=r"records: source 24, target 25.*history: source 35, target 36"):
        migrate(source, target)


def test_a_target_with_another_embedder_is_refused(source: PgVectorStore, pg_store_factory: Factory) -> None:
    target = pg_store_factory()
    target.open(EmbedderIdentity("test", "other", 4))
    with pytest.raises(EmbedderMismatchError):
        migrate(source, target)
    assert sum(1 for _ in target.iter_records(include_deleted=True)) == 0


def test_a_source_that_was_never_used_is_refused(pg_store_factory: Factory) -> None:
    with pytest.raises(StoreError, match="no recorded embedder"):
        migrate(pg_store_factory(), pg_store_factory())


def test_sqlite_to_pgvector(tmp_path: Path, pg_store_factory: Factory) -> None:
    sqlite = SQLiteStore(tmp_path / "memory.db")
    populate(sqlite)
    target = pg_store_factory()
    report = migrate(sqlite, target)
    assert report.records == 24 and report.history == 35
    assert report.checksum == digest(target).checksum


# -- the CLI command -------------------------------------------------------------------------------

@pytest.fixture
def other_database(pg_dsn: str) -> Iterator[str]:
    """A postgresql:// URL of a second, empty database on the session's server."""
    name = f"mg_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    host = psycopg.conninfo.conninfo_to_dict(pg_dsn)["host"]
    yield f"postgresql://postgres@/{name}?host={host}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("migrate")(migrate_command)
    return app


def test_the_command_copies_between_databases_and_reports(source: PgVectorStore, pg_dsn: str,
                                                          other_database: str) -> None:
    host = psycopg.conninfo.conninfo_to_dict(pg_dsn)["host"]
    result = CliRunner().invoke(cli(), ["migrate", "--from", f"postgresql://postgres@/postgres?host={host}",
                                        "--to", other_database, "--collection", source.collection])
    assert result.exit_code == 0, result.output
    assert "copy verified" in result.output and "checksum" in result.output
    copied = PgVectorStore(source.config.model_copy(update={"dsn": other_database}))
    try:
        assert snapshot(copied) == snapshot(source)
    finally:
        copied.close()
    with psycopg.connect(other_database) as conn:  # copied without the HNSW index, which is built at the end
        index = conn.execute("SELECT to_regclass(%s)", [f'"{source.collection}_mem_hnsw"']).fetchone()
    assert index is not None and index[0] is not None


@pytest.mark.parametrize(("source_url", "message"), [
    ("sqlite:/no/such/dir/memory.db", "there is no SQLite store at /no/such/dir/memory.db"),
    ("mysql://root@localhost/db", "unknown store 'mysql'"),
])
def test_the_command_explains_a_bad_source(source_url: str, message: str, other_database: str) -> None:
    result = CliRunner().invoke(cli(), ["migrate", "--from", source_url, "--to", other_database])
    assert result.exit_code == 1
    assert "migration failed" in result.output and message in result.output.replace("\n", "")


def test_pgvector_to_sqlite(source: PgVectorStore, tmp_path: Path) -> None:
    """The other way: a deleted record's vector, kept by PostgreSQL, is dropped by SQLite as its own deletes do."""
    target = SQLiteStore(tmp_path / "copy.db")
    report = migrate(source, target, batch_size=7)
    assert (report.records, report.deleted, report.vectors, report.history) == (24, 8, 16, 35)
    assert report.checksum == digest(target).checksum
    live = [row for row in snapshot(source) if not row[7]]
    assert [row for row in snapshot(target) if not row[7]] == live
    for scope in SCOPES:
        assert [r.id for r, _ in target.text_search(scope, "corrected quotes", 5)] == \
            [r.id for r, _ in source.text_search(scope, "corrected quotes", 5)]
