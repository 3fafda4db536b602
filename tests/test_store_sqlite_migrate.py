"""``mindgate migrate --to sqlite:PATH``: the SQLite store as a migration target (it lacked the import methods,
so the advertised command ended in a NotImplementedError traceback). Real SQLite files."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from migrate_helpers import IDENT, SCOPES, embed, populate, snapshot
from mindgate.memory._commands_migrate import migrate_command
from mindgate.memory._migrate import digest, export_records, migrate
from mindgate.memory.stores._sqlite import SQLiteStore


def _source(path: Path) -> SQLiteStore:
    store = SQLiteStore(path)
    populate(store)
    return store


def test_sqlite_to_sqlite_copies_everything_and_searches_alike(tmp_path: Path) -> None:
    source = _source(tmp_path / "a.db")
    target = SQLiteStore(tmp_path / "b.db")
    report = migrate(source, target, batch_size=5)
    assert (report.records, report.deleted, report.vectors, report.history) == (24, 8, 16, 35)
    assert report.checksum == digest(source).checksum == digest(target).checksum
    assert snapshot(target) == snapshot(source)
    query = embed("fact 9: ünïcode, quotes ' \" and % signs")
    for scope in SCOPES:
        assert [(r.id, round(s, 5)) for r, s in target.vector_search(scope, query, 5)] == \
            [(r.id, round(s, 5)) for r, s in source.vector_search(scope, query, 5)]
        assert [r.id for r, _ in target.text_search(scope, "corrected quotes", 5)] == \
            [r.id for r, _ in source.text_search(scope, "corrected quotes", 5)]


def test_a_repeated_or_interrupted_copy_converges(tmp_path: Path) -> None:
    source = _source(tmp_path / "a.db")
    target = SQLiteStore(tmp_path / "b.db")
    target.open(IDENT)
    target.import_records(list(export_records(source))[:10])  # as if the first run died after a batch
    target.import_history(list(source.iter_history())[:4])
    first = migrate(source, target)
    second = migrate(source, target)
    assert first.checksum == second.checksum == digest(source).checksum
    assert snapshot(target) == snapshot(source)


def test_the_command_copies_into_a_sqlite_file(tmp_path: Path) -> None:
    _source(tmp_path / "a.db").close()
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("migrate")(migrate_command)
    result = CliRunner().invoke(app, ["migrate", "--from", f"sqlite:{tmp_path / 'a.db'}",
                                      "--to", f"sqlite:{tmp_path / 'copy.db'}"])
    assert result.exit_code == 0, result.output
    assert "copy verified" in result.output
    assert snapshot(SQLiteStore(tmp_path / "copy.db")) == snapshot(SQLiteStore(tmp_path / "a.db"))
