"""``mindgate routing ...``: see chains, their targets and breaker states, and where a prompt would route.

A fresh process has no request history, so ``status`` probes each target once first (``--no-probe`` to
skip): a server that does not answer shows as ``open``. :func:`status_table` renders any router's
``status()`` rows, so the gateway can show the same table for its live routers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from mindgate.config import MindgateConfig
from mindgate.errors import MindgateError

app = typer.Typer(help="Routing chains: targets, circuit breakers and semantic routes.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default: MINDGATE_CONFIG)")]
_STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}


def status_table(chains: dict[str, list[dict[str, Any]]]) -> Table:
    """A rich table of ``{chain name: Router.status() rows}``."""
    table = Table(title="routing chains", show_lines=False)
    for column in ("chain", "target", "model", "state", "fails", "retry in", "context", "requests", "ok",
                   "errors", "p50 ms", "p99 ms", "last error"):
        table.add_column(column, overflow="fold")
    for chain, rows in chains.items():
        for i, row in enumerate(rows):
            latency = row["latency_ms"]
            state = row["state"]
            table.add_row(
                chain if i == 0 else "", row["name"], f"{row['provider']}:{row['model']}",
                f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]", str(row["failures"]),
                f"{row['retry_in']:.1f}s" if row["retry_in"] is not None else "",
                str(row["context_length"] or "?"), str(row["requests"]), str(row["successes"]),
                ", ".join(f"{k} {v}" for k, v in sorted(row["errors"].items())),
                f"{latency['p50']:.1f}" if latency["p50"] is not None else "",
                f"{latency['p99']:.1f}" if latency["p99"] is not None else "",
                (row["last_error"] or "")[:80])
    return table


def _fail(console: Console, error: MindgateError) -> NoReturn:
    console.print(f"[red]error:[/] {error}")
    raise typer.Exit(2)


@app.command()
def status(
    config: ConfigOption = None,
    chain: Annotated[list[str] | None, typer.Option("--chain", help="only this chain (repeatable)")] = None,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="health-check each target first")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Show each chain's targets and their circuit-breaker states."""
    from mindgate.routing._chains import chain_names, router_from_config

    console = Console()
    try:
        settings = MindgateConfig.load(config)
        data: dict[str, list[dict[str, Any]]] = {}
        for name in chain or chain_names(settings):
            router = router_from_config(name, settings)
            try:
                data[name] = router.health_check() if probe else router.status()
            finally:
                router.close()
    except MindgateError as error:
        _fail(console, error)
    if as_json:
        typer.echo(json.dumps({"chains": data}, indent=2))
    else:
        console.print(status_table(data))


@app.command()
def route(
    text: Annotated[str, typer.Argument(help="the prompt to route")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show which semantic route (and target) a prompt goes to, with every route's score."""
    from mindgate.routing._semantic import SemanticRouter

    console = Console()
    try:
        router = SemanticRouter.from_config(MindgateConfig.load(config))
        match = router.route(text)
    except MindgateError as error:
        _fail(console, error)
    result = {"route": match.route, "target": match.target, "score": round(match.score, 4), "scores": match.scores}
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(f"route: [bold]{match.route or '(default)'}[/] -> target [bold]{match.target}[/] "
                  f"(score {match.score:.3f})")
    for name, score in sorted(match.scores.items(), key=lambda kv: -kv[1]):
        console.print(f"  {name:20} {score:.3f}")
