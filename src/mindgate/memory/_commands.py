"""``mindgate memory add|search|list|get|update|delete|history`` and ``mindgate reindex``.

Each command opens the configured memory (``--config`` / ``MINDGATE_CONFIG`` / embedded defaults),
prints a rich table (or ``--json`` for scripts) and closes it. Errors reach ``mindgate.cli.main``, which
prints them as one line and exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mindgate.config import MindgateConfig
from mindgate.errors import InvalidRequestError, NotFoundError
from mindgate.memory._memory import Memory

app = typer.Typer(name="memory", help="Read and write long-term memory.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (default: "
                                                "MINDGATE_CONFIG, else embedded defaults)",
                                                exists=False, dir_okay=False)]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="user_id scope")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="agent_id scope")]
RunOpt = Annotated[str | None, typer.Option("--run", "-r", help="run_id scope")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
MetaOpt = Annotated[str | None, typer.Option("--metadata", "-m", help='metadata as a JSON object, e.g. '
                                             '\'{"category": "music"}\'')]
FiltersOpt = Annotated[str | None, typer.Option("--filters", "-f", help="metadata filters as a JSON object")]


def load_config(path: Path | None) -> MindgateConfig:
    return MindgateConfig.load(path)


@contextmanager
def open_memory(config: Path | None) -> Iterator[Memory]:
    memory = Memory.from_config(load_config(config))
    try:
        yield memory
    finally:
        memory.close()


def _scope(user: str | None, agent: str | None, run: str | None) -> dict[str, Any]:
    return {k: v for k, v in (("user_id", user), ("agent_id", agent), ("run_id", run)) if v is not None}


def _json_object(raw: str | None, option: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{option} is not valid JSON ({exc.msg})",
                                  hint=f'e.g. {option} \'{{"category": "music"}}\'') from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{option} must be a JSON object, not {type(value).__name__}")
    return value


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _scope_text(item: Mapping[str, Any]) -> str:
    return " ".join(f"{k.split('_')[0]}={item[k]}" for k in ("user_id", "agent_id", "run_id") if item.get(k))


def memory_table(items: Sequence[dict[str, Any]], *, title: str, score: bool = False) -> Table:
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("id", style="cyan", overflow="fold", min_width=8)
    table.add_column("memory", overflow="fold", min_width=24, ratio=3)
    if score:
        table.add_column("score", justify="right")
    table.add_column("scope", style="magenta")
    table.add_column("updated (UTC)", style="dim", overflow="fold")
    for item in items:
        row = [str(item.get("id")), str(item.get("memory", ""))]
        if score:
            row.append(f"{float(item.get('score') or 0):.3f}")
        row += [_scope_text(item), str(item.get("updated_at") or item.get("created_at") or "")[:16].replace("T", " ")]
        table.add_row(*row)
    return table


@app.command()
def add(text: Annotated[str, typer.Argument(help="what to remember (a message from the user)")],
        user: UserOpt = None, agent: AgentOpt = None, run: RunOpt = None, metadata: MetaOpt = None,
        infer: Annotated[bool, typer.Option(help="extract facts with the LLM (--no-infer stores the text)")] = True,
        config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Remember something."""
    with open_memory(config) as memory, console.status("remembering...", spinner="dots"):
        result = memory.add(text, metadata=_json_object(metadata, "--metadata"), infer=infer,
                            **_scope(user, agent, run))
    if as_json:
        print_json(result)
        return
    table = Table(title="changes")
    for name in ("event", "id", "memory"):
        table.add_column(name)
    for item in result["results"]:
        table.add_row(item["event"], item["id"], item["memory"])
    console.print(table if result["results"] else "nothing worth remembering was found")


@app.command()
def search(query: Annotated[str, typer.Argument(help="what to look for")], user: UserOpt = None,
           agent: AgentOpt = None, run: RunOpt = None, filters: FiltersOpt = None,
           limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 10,
           threshold: Annotated[float | None, typer.Option(help="minimum score")] = None,
           rerank: Annotated[bool, typer.Option(help="rerank with the configured `reranker`")] = True,
           at: Annotated[str | None, typer.Option("--at", help="reference time of the query's time words "
                                                  "(ISO 8601; default now)")] = None,
           config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Search memories by meaning and words (hybrid), best first."""
    with open_memory(config) as memory:
        result = memory.search(query, filters=_json_object(filters, "--filters"), limit=limit,
                               threshold=threshold, rerank=rerank, reference_time=at, **_scope(user, agent, run))
    if as_json:
        print_json(result)
    else:
        console.print(memory_table(result["results"], title=f"memories matching {query!r}", score=True))


@app.command("list")
def list_(user: UserOpt = None, agent: AgentOpt = None, run: RunOpt = None, filters: FiltersOpt = None,
          limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 100,
          offset: Annotated[int, typer.Option(min=0)] = 0, config: ConfigOpt = None,
          as_json: JsonOpt = False) -> None:
    """List memories in a scope, newest first."""
    with open_memory(config) as memory:
        result = memory.get_all(filters=_json_object(filters, "--filters"), limit=limit, offset=offset,
                                **_scope(user, agent, run))
    if as_json:
        print_json(result)
    else:
        count = len(result["results"])
        console.print(memory_table(result["results"], title=f"{count} {'memory' if count == 1 else 'memories'}"))


@app.command()
def get(memory_id: Annotated[str, typer.Argument(help="memory id")], user: UserOpt = None,
        agent: AgentOpt = None, run: RunOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show one memory."""
    with open_memory(config) as memory:
        item = memory.get(memory_id, **_scope(user, agent, run))
    if item is None:
        raise NotFoundError(f"memory {memory_id!r} not found", hint="`mindgate memory list --user U` shows ids")
    if as_json:
        print_json(item)
    else:
        console.print(memory_table([item], title="memory"))


@app.command()
def update(memory_id: Annotated[str, typer.Argument(help="memory id")],
           text: Annotated[str, typer.Argument(help="the new text")], metadata: MetaOpt = None,
           user: UserOpt = None, agent: AgentOpt = None, run: RunOpt = None, config: ConfigOpt = None,
           as_json: JsonOpt = False) -> None:
    """Replace a memory's text (history keeps the old one)."""
    with open_memory(config) as memory:
        result = memory.update(memory_id, text, metadata=_json_object(metadata, "--metadata"),
                               **_scope(user, agent, run))
    if as_json:
        print_json(result)
    else:
        console.print(f"updated {result['id']}: {result['memory']}")


@app.command()
def delete(memory_id: Annotated[str | None, typer.Argument(help="memory id (or --all with a scope)")] = None,
           all_: Annotated[bool, typer.Option("--all", help="delete every memory in the scope")] = False,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
           user: UserOpt = None, agent: AgentOpt = None, run: RunOpt = None, config: ConfigOpt = None,
           as_json: JsonOpt = False) -> None:
    """Delete one memory, or every memory in a scope with --all (soft delete: history keeps them)."""
    scope = _scope(user, agent, run)
    if all_ == (memory_id is not None):
        raise InvalidRequestError("give either a memory id or --all",
                                  hint="e.g. `mindgate memory delete --all -u alice`")
    with open_memory(config) as memory:
        if memory_id is not None:
            result = memory.delete(memory_id, **scope)
        else:
            if not scope:
                raise InvalidRequestError("--all needs a scope", hint="pass --user, --agent or --run")
            if not yes and not typer.confirm(f"delete every memory of {_scope_text(scope)}?"):
                raise typer.Exit(1)
            result = memory.delete_all(**scope)
    if as_json:
        print_json(result)
    else:
        console.print(result.get("message", "deleted"))


@app.command()
def history(memory_id: Annotated[str, typer.Argument(help="memory id")], user: UserOpt = None,
            agent: AgentOpt = None, run: RunOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every change to a memory, oldest first."""
    with open_memory(config) as memory:
        rows = memory.history(memory_id, **_scope(user, agent, run))
    if not rows:
        raise NotFoundError(f"memory {memory_id!r} has no history", hint="check the id")
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"history of {memory_id}")
    for name in ("when", "event", "old", "new", "actor"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(str(row["created_at"])[:19], row["event"], row.get("old_memory") or "",
                      row.get("new_memory") or "", row.get("actor") or "")
    console.print(table)


def reindex_command(config: ConfigOpt = None,
                    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 256,
                    as_json: JsonOpt = False) -> None:
    """Re-embed every memory with the configured embedder (after changing embedders); resumable."""
    memory = Memory.from_config(load_config(config))
    try:
        columns = (SpinnerColumn(), TextColumn("re-embedding"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, disable=as_json, transient=False) as progress:
            task = progress.add_task("reindex", total=None)

            def report(done: int, batch: int) -> None:
                progress.update(task, completed=done)

            done = memory.reindex(batch_size=batch_size, progress=report)
            progress.update(task, total=done, completed=done)
    finally:
        memory.close()
    if as_json:
        print_json({"reindexed": done})
    else:
        console.print(f"re-embedded {done} memories" if done else "every memory is already embedded with "
                      "the configured embedder")
