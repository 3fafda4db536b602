"""``mindgate models list|ps|load|unload`` and ``mindgate doctor``: readable tables over the catalog and
manager. Every command takes ``--config`` (else the root command's config in ``ctx.obj``, else
``MINDGATE_CONFIG``, else defaults); errors print their message and hint and exit with status 1.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mindgate.config import MindgateConfig, mindgate_home
from mindgate.errors import MindgateError
from mindgate.models.catalog import ModelCatalog
from mindgate.models.decisions import FILE_NAME as DECISIONS_FILE
from mindgate.models.decisions import Decision, read_decisions
from mindgate.models.manager import ModelManager
from mindgate.models.records import LoadProgress, ModelInfo
from mindgate.models.resources import Resources, format_bytes, snapshot

app = typer.Typer(help="See, load and unload models on LM Studio, Ollama, OpenAI-compatible servers and the "
                       "local engine.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file", show_default=False)]
EndpointOption = Annotated[str | None, typer.Option("--endpoint", "-e", help="only this endpoint (a name from "
                                                    "`mindgate models list`)", show_default=False)]


def _console() -> Console:
    return Console(width=max(shutil.get_terminal_size((160, 24)).columns, 120), highlight=False)


def _config(ctx: typer.Context, path: Path | None) -> MindgateConfig:
    if path is not None:
        return MindgateConfig.from_file(path)
    obj = ctx.obj
    if isinstance(obj, MindgateConfig):
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("config"), MindgateConfig):
        return obj["config"]
    return MindgateConfig.load()


def _fail(console: Console, error: MindgateError) -> typer.Exit:
    console.print(f"[red]error:[/red] {error.message}")
    if error.hint:
        console.print(f"[yellow]hint:[/yellow] {error.hint}")
    return typer.Exit(1)


def _context(model: ModelInfo) -> str:
    loaded = str(model.loaded_context_length) if model.loaded_context_length else "-"
    return f"{loaded} / {model.max_context_length or '?'}"


def _caps(model: ModelInfo) -> str:
    caps = model.capabilities
    names = [name for name, value in (("tools", caps.tool_use), ("vision", caps.vision),
                                      ("reasoning", caps.reasoning)) if value]
    return ", ".join(names) or "-"


def _status_lines(console: Console, statuses: Any) -> None:
    for status in statuses:
        if not status.reachable:
            console.print(f"[red]unreachable[/red] {status.endpoint.name} ({status.endpoint.provider}, "
                          f"{status.endpoint.url or 'in-process'}): {status.error}")


@app.command("list")
def list_models(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                endpoint: EndpointOption = None, config: ConfigOption = None) -> None:
    """Every model on every endpoint: type, state, context, size, quantization, capabilities."""
    console = _console()
    try:
        listing = ModelCatalog.from_config(_config(ctx, config)).list(refresh=True, endpoint=endpoint)
    except MindgateError as exc:
        raise _fail(console, exc) from None
    if as_json:
        typer.echo(json.dumps(listing.to_dict(), indent=2))
        return
    table = Table(title="models", title_justify="left")
    for column in ("endpoint", "model", "type", "state", "context (loaded / max)", "size", "quant", "capabilities",
                   "source"):
        table.add_column(column, overflow="fold")
    for m in listing.models:
        state = f"[green]{m.state.value}[/green]" if m.loaded else m.state.value
        table.add_row(m.endpoint, m.id, m.type.value, state, _context(m), format_bytes(m.size_bytes),
                      m.quantization or "-", _caps(m), m.source)
    console.print(table)
    _status_lines(console, listing.endpoints)


@app.command()
def ps(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Loaded model instances: context, TTL or expiry, VRAM."""
    console = _console()
    try:
        catalog = ModelCatalog.from_config(_config(ctx, config))
        listing = catalog.list(refresh=True)
    except MindgateError as exc:
        raise _fail(console, exc) from None
    table = Table(title="loaded models", title_justify="left")
    for column in ("endpoint", "model", "instance", "context", "ttl / expires", "vram"):
        table.add_column(column, overflow="fold")
    for m in listing.loaded:
        for i in m.instances:
            expiry = i.expires_at or (f"{i.ttl:g}s idle" if i.ttl else "-")
            table.add_row(m.endpoint, m.id, i.id, str(i.context_length or "?"), expiry,
                          format_bytes(i.size_vram_bytes) if i.size_vram_bytes is not None else "-")
    if listing.loaded:
        console.print(table)
    else:
        console.print("no models are loaded")
    _status_lines(console, listing.endpoints)


@app.command()
def load(ctx: typer.Context, model_id: Annotated[str, typer.Argument(metavar="ID", help="model id")],
         ttl: Annotated[int | None, typer.Option("--ttl", min=1, help="unload after this many idle seconds")] = None,
         context_length: Annotated[int | None, typer.Option("--context-length", min=1,
                                                            help="context window in tokens")] = None,
         endpoint: EndpointOption = None,
         no_fit_check: Annotated[bool, typer.Option("--no-fit-check", help="skip the free-memory check")] = False,
         config: ConfigOption = None) -> None:
    """Load a model (reusing a loaded instance with an adequate context)."""
    console = _console()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"loading {model_id}", total=1.0)

        def progress(report: LoadProgress) -> None:
            bar.update(task, completed=report.fraction or 0.0,
                       description=f"{report.stage} {model_id}" + (f": {report.message}" if report.message else ""))

        try:
            manager = ModelManager.from_config(_config(ctx, config))
            result = manager.load(model_id, endpoint=endpoint, context_length=context_length, ttl=ttl,
                                  progress=progress, check_fit=not no_fit_check)
        except MindgateError as exc:
            bar.stop()
            raise _fail(console, exc) from None
    verb = "already loaded" if result.reused else f"loaded in {result.seconds:.1f}s"
    context = f", context {result.context_length}" if result.context_length else ""
    ttl_text = f", ttl {result.ttl:g}s" if result.ttl else ""
    console.print(f"[green]{result.model.endpoint}:{result.model.id}[/green] {verb} as {result.instance_id}"
                  f"{context}{ttl_text}")
    if result.estimate is not None:
        console.print(f"memory estimate: {result.estimate.describe()}")
    if result.model.provider == "local":
        console.print("note: the local engine runs inside this process, so this model is unloaded when the "
                      "command exits; it stays loaded inside a running gateway")


@app.command()
def unload(ctx: typer.Context, model_id: Annotated[str, typer.Argument(metavar="ID", help="model or instance id")],
           endpoint: EndpointOption = None, config: ConfigOption = None) -> None:
    """Unload a model (every instance), or one instance by its id (e.g. ``model:2``)."""
    console = _console()
    try:
        done = ModelManager.from_config(_config(ctx, config)).unload(model_id, endpoint=endpoint)
    except MindgateError as exc:
        raise _fail(console, exc) from None
    console.print(f"unloaded {', '.join(done)}" if done else f"{model_id} was not loaded")


def _resources_table(res: Resources) -> Table:
    """Free memory per device: RAM, then each GPU's VRAM, then where the GPU figures came from."""
    table = Table(title="resources", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    memory = "RAM (unified with the GPU)" if res.unified_memory else "RAM"
    table.add_row(memory, f"{format_bytes(res.ram_available_bytes)} free of {format_bytes(res.ram_total_bytes)}")
    table.add_row("CPU", f"{res.cpu_count} cores, {res.cpu_percent:.0f}% busy")
    for gpu in res.gpus:
        table.add_row(f"GPU {gpu.index} ({gpu.vendor})", f"{gpu.name}: {format_bytes(gpu.free_bytes)} free of "
                                                         f"{format_bytes(gpu.total_bytes)} VRAM")
    table.add_row("GPU status", res.gpu_status)
    return table


def _decisions_table(decisions: list[Decision]) -> Table:
    table = Table(title="last switching decisions (from the gateway's log)", title_justify="left")
    for column in ("time", "chain", "action", "target", "why"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.at)), d.chain, d.action, d.target, d.reason)
    return table


def _probe_embedder(config: MindgateConfig) -> str:
    from mindgate.providers import create_embedder

    section = config.embedder
    started = time.monotonic()
    embedder = create_embedder(section.provider, section.config)
    try:
        dims = embedder.dims()
    finally:
        embedder.close()
    return f"{section.provider}:{embedder.model} -> {dims} dims (probed in {time.monotonic() - started:.1f}s)"


def doctor(ctx: typer.Context, config: ConfigOption = None,
           probe_embedder: Annotated[bool, typer.Option("--probe-embedder/--no-probe-embedder",
                                                        help="embed one text to learn the dimensions")] = True
           ) -> None:
    """Check the setup: which providers answer, what is loaded where, free RAM/VRAM per device, the last model
    switching decisions, embedder dims, config problems."""
    console = _console()
    problems: list[str] = []
    try:
        cfg = _config(ctx, config)
    except MindgateError as exc:
        console.print(_resources_table(snapshot()))
        raise _fail(console, exc) from None
    catalog = ModelCatalog.from_config(cfg)
    listing = catalog.list(refresh=True)
    table = Table(title="providers", title_justify="left")
    for column in ("endpoint", "provider", "url", "status", "api", "models", "loaded"):
        table.add_column(column, overflow="fold")
    for status in listing.endpoints:
        name = status.endpoint.name
        loaded = [m.id for m in listing.loaded if m.endpoint == name]
        state = f"[green]ok[/green] ({status.latency_s:.2f}s)" if status.reachable else "[red]unreachable[/red]"
        table.add_row(name, status.endpoint.provider, status.endpoint.url or "in-process", state, status.api or "-",
                      str(status.model_count), ", ".join(loaded) or "-")
        if not status.reachable:
            console_note = f"{name}: {status.error}"
            if cfg.llm.provider != "auto" and cfg.llm.provider == status.endpoint.provider:
                problems.append(f"the configured llm provider is unreachable: {console_note}")
            elif cfg.llm.provider == "auto":
                console_note += " (optional in the auto chain)"
            console.print(f"[yellow]{console_note}[/yellow]")
    console.print(table)
    console.print(_resources_table(snapshot()))
    decisions = read_decisions(mindgate_home() / DECISIONS_FILE)
    if decisions:
        console.print(_decisions_table(decisions))
    else:
        console.print("no switching decisions recorded yet (a gateway records loads, unloads and skips for memory)")
    if cfg.llm.provider != "auto" and cfg.llm.config.model:
        found = listing.find(cfg.llm.config.model)
        reachable = any(s.reachable and s.endpoint.provider == cfg.llm.provider for s in listing.endpoints)
        if reachable and not found and cfg.llm.provider in ("lmstudio", "ollama", "openai_compatible", "local"):
            problems.append(f"the configured llm model {cfg.llm.config.model!r} is not on {cfg.llm.provider}")
    if probe_embedder:
        try:
            console.print(f"embedder: {_probe_embedder(cfg)}")
        except MindgateError as exc:
            problems.append(f"embedder {cfg.embedder.provider}: {exc}")
    if problems:
        console.print("[red]problems:[/red]")
        for problem in problems:
            console.print(f"  - {problem}")
        raise typer.Exit(1)
    console.print("[green]no problems found[/green]")
