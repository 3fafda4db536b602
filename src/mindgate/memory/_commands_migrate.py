"""``mindgate migrate --from sqlite:PATH --to postgresql://...``: the CLI face of :mod:`mindgate.memory._migrate`.

:func:`migrate_command` is a typer command function; the CLI mounts it with
``app.command("migrate")(migrate_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from mindgate.config import PgVectorStoreConfig, PgVectorStoreSection, SQLiteStoreConfig, SQLiteStoreSection
from mindgate.errors import ConfigurationError, MindgateError
from mindgate.memory._migrate import MigrationReport, migrate
from mindgate.memory.stores import create_store
from mindgate.memory.stores._base import MemoryStore

_URL_HINT = "use sqlite:PATH (e.g. sqlite:~/.mindgate/memory.db) or postgresql://user:password@host:5432/dbname"
_POSTGRES = ("postgresql://", "postgres://")
_PHASES = {"records": "copying memories", "history": "copying history", "verify": "verifying the copy"}


def store_from_url(url: str, *, collection: str, must_exist: bool, hnsw: bool = True) -> MemoryStore:
    """The store a ``--from`` / ``--to`` value names (not opened); ``hnsw`` for a PostgreSQL one."""
    if url.startswith("sqlite:"):
        raw = url[len("sqlite:"):]
        raw = raw[2:] if raw.startswith("//") else raw  # sqlite:///abs/path, as in SQLAlchemy URLs
        if not raw:
            raise ConfigurationError(f"{url!r} names no file", hint=_URL_HINT)
        path = Path(raw).expanduser()
        if must_exist and not path.is_file():
            raise ConfigurationError(f"there is no SQLite store at {path}", hint="check the path after sqlite:")
        return create_store(SQLiteStoreSection(config=SQLiteStoreConfig(path=str(path))))
    if url.startswith(_POSTGRES):
        return create_store(PgVectorStoreSection(
            provider="pgvector", config=PgVectorStoreConfig(dsn=url, collection_name=collection, hnsw=hnsw)))
    raise ConfigurationError(f"unknown store {url.split(':', 1)[0]!r} in {_redacted(url)!r}", hint=_URL_HINT)


def migrate_command(
    from_: Annotated[str, typer.Option("--from", help="source store: sqlite:PATH or postgresql://...")],
    to: Annotated[str, typer.Option("--to", help="target store: postgresql://... (or sqlite:PATH)")],
    collection: Annotated[str, typer.Option(help="PostgreSQL collection (table prefix) on either side")] = "memory",
) -> None:
    """Copy every memory (deleted ones too), its vector and all history into another store, then verify
    counts and checksums. Safe to re-run."""
    console = Console(stderr=True)
    try:
        if from_ == to:
            raise ConfigurationError("--from and --to name the same store", hint="migrate into another one")
        source = store_from_url(from_, collection=collection, must_exist=True)
        # Copy without maintaining an HNSW index, then build it in one pass: many times faster.
        target = store_from_url(to, collection=collection, must_exist=False, hnsw=False)
        with source, target, Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=console) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total)
                bar.update(tasks[phase], completed=done, total=total)

            report = migrate(source, target, progress=progress)
        if to.startswith(_POSTGRES):
            with console.status("building the vector index"), \
                    store_from_url(to, collection=collection, must_exist=False) as indexed:
                indexed.open(report.identity)  # creates the HNSW index when it is missing
    except MindgateError as exc:
        console.print(f"[red]migration failed:[/red] {exc}")
        raise typer.Exit(1) from None
    Console().print(_summary(report, _redacted(from_), _redacted(to)))


def _summary(report: MigrationReport, source: str, target: str) -> Table:
    table = Table(title="mindgate migrate: copy verified", show_header=False)
    for key, value in (("from", source), ("to", target), *report.as_dict().items()):
        table.add_row(key, str(value))
    return table


def _redacted(url: str) -> str:
    """``url`` without its password."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in creds else ''}@{host}"
