"""``mindgate models list|ps|get|load|unload`` and ``mindgate doctor``: readable tables over the catalog and
manager, with the flags of LM Studio's ``lms`` (``load --gpu --context-length --ttl --identifier
--estimate-only``, ``unload --all``, ``get MODEL[@quant]``). Every command takes ``--config`` (else
``MINDGATE_CONFIG``, else defaults); errors print their message and hint and exit with status 1.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from mindgate._sync import run_sync
from mindgate.config import MindgateConfig, mindgate_home
from mindgate.errors import ConfigurationError, MindgateError
from mindgate.models._catalog import ModelCatalog
from mindgate.models._decisions import FILE_NAME as DECISIONS_FILE
from mindgate.models._decisions import Decision, read_decisions
from mindgate.models._manager import ModelManager
from mindgate.providers import provider_spec
from mindgate.providers.management._driver import loads_on_demand
from mindgate.providers.management._records import (
    DownloadProgress,
    GpuOffload,
    LoadedInstance,
    LoadOptions,
    LoadProgress,
    ModelInfo,
)
from mindgate.providers.management._resources import Resources, format_bytes, snapshot

app = typer.Typer(help="See, load and unload models on LM Studio, Ollama, OpenAI-compatible servers and the "
                       "local engine.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file", show_default=False)]
EndpointOption = Annotated[str | None, typer.Option("--endpoint", "-e", help="only this endpoint (a name from "
                                                    "`mindgate models list`)", show_default=False)]


def _console() -> Console:
    return Console(width=max(shutil.get_terminal_size((160, 24)).columns, 120), highlight=False)


def _fail(console: Console, error: MindgateError) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(error.message)}")
    if error.hint:
        console.print(f"[yellow]hint:[/yellow] {escape(error.hint)}")
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
def list_models(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                endpoint: EndpointOption = None, config: ConfigOption = None) -> None:
    """Every model on every endpoint: type, state, context, size, quantization, capabilities."""
    console = _console()
    try:
        listing = ModelCatalog.from_config(MindgateConfig.load(config)).list(refresh=True, endpoint=endpoint)
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
def ps(config: ConfigOption = None) -> None:
    """Loaded model instances: context, TTL or expiry, VRAM."""
    console = _console()
    try:
        catalog = ModelCatalog.from_config(MindgateConfig.load(config))
        listing = catalog.list(refresh=True)
    except MindgateError as exc:
        raise _fail(console, exc) from None
    table = Table(title="loaded models", title_justify="left")
    for column in ("endpoint", "model", "instance", "context", "ttl left", "vram"):
        table.add_column(column, overflow="fold")
    for m in listing.loaded:
        for i in m.instances:
            table.add_row(m.endpoint, m.id, i.id, str(i.context_length or "?"), ttl_left(i),
                          format_bytes(i.size_vram_bytes) if i.size_vram_bytes is not None else "-")
    if listing.loaded:
        console.print(table)
    else:
        console.print("no models are loaded")
    _status_lines(console, listing.endpoints)


def ttl_left(instance: LoadedInstance, now: float | None = None) -> str:
    """How long until an idle instance is unloaded: from the server's expiry time (Ollama, the local engine),
    else the TTL it was loaded with (LM Studio counts it from the last request), else ``-``."""
    if instance.expires_at:
        try:
            expires = dt.datetime.fromisoformat(instance.expires_at.replace("Z", "+00:00"))
        except ValueError:
            return instance.expires_at
        left = expires.timestamp() - (now if now is not None else time.time())
        if left > 100 * 365 * 86400:
            return "never"
        return f"{max(0, round(left))}s" + (f" of {instance.ttl:g}s" if instance.ttl else "")
    return f"{instance.ttl:g}s idle" if instance.ttl else "-"


def parse_gpu(value: str | None) -> GpuOffload | None:
    """``--gpu``: a ratio from 0 to 1, ``max`` or ``off`` (as ``lms load --gpu``)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("max", "off"):
        return "max" if text == "max" else "off"
    try:
        ratio = float(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a ratio from 0 to 1, `max` or `off`", param_hint="--gpu") from None
    if not 0.0 <= ratio <= 1.0:
        raise typer.BadParameter(f"{value!r} is not a ratio from 0 to 1", param_hint="--gpu")
    return ratio


@app.command()
def load(model_id: Annotated[str, typer.Argument(metavar="ID", help="model id")],
         ttl: Annotated[int | None, typer.Option("--ttl", min=1, help="unload after this many idle seconds")] = None,
         context_length: Annotated[int | None, typer.Option("--context-length", min=1,
                                                            help="context window in tokens")] = None,
         gpu: Annotated[str | None, typer.Option("--gpu", help="GPU offload: a ratio from 0 to 1, max or off "
                                                                "(LM Studio)")] = None,
         identifier: Annotated[str | None, typer.Option("--identifier", help="name of the new instance in API "
                                                                             "calls (LM Studio)")] = None,
         estimate_only: Annotated[bool, typer.Option("--estimate-only", help="print the memory estimate and "
                                                                             "whether it fits; load nothing")] = False,
         endpoint: EndpointOption = None,
         no_fit_check: Annotated[bool, typer.Option("--no-fit-check", help="skip the free-memory check")] = False,
         config: ConfigOption = None) -> None:
    """Load a model (reusing a loaded instance with an adequate context, unless --identifier asks for a new one)."""
    console = _console()
    options = LoadOptions(gpu=parse_gpu(gpu), identifier=identifier)
    if estimate_only:
        try:
            report = ModelManager.from_config(MindgateConfig.load(config)).estimate(model_id, endpoint=endpoint,
                                                                          context_length=context_length)
        except MindgateError as exc:
            raise _fail(console, exc) from None
        console.print(f"{report.model.endpoint}:{report.model.id} with a {report.context_length}-token context")
        if report.estimate is not None:
            console.print(f"estimated memory: {report.estimate.describe()}")
        verdict = ("already loaded" if report.already_loaded else "fits" if report.fits
                   else "does not fit" if report.fits is False else "unknown (memory not visible from here)")
        free = f"; {format_bytes(report.free_bytes)} free" if report.free_bytes is not None else ""
        console.print(f"estimate: {verdict}{free}")
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"loading {model_id}", total=1.0)

        def progress(report: LoadProgress) -> None:
            stage = f"{report.stage} {model_id}" + (" (estimated)" if report.estimated else "")
            bar.update(task, completed=report.fraction or 0.0,
                       description=stage + (f": {report.message}" if report.message else ""))

        try:
            manager = ModelManager.from_config(MindgateConfig.load(config))
            result = manager.load(model_id, endpoint=endpoint, context_length=context_length, ttl=ttl,
                                  progress=progress, check_fit=not no_fit_check, options=options)
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
def unload(model_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="model or instance id")] = None,
           all_models: Annotated[bool, typer.Option("--all", help="unload every loaded model")] = False,
           endpoint: EndpointOption = None, config: ConfigOption = None) -> None:
    """Unload a model (every instance), one instance by its id (e.g. ``model:2``), or everything (--all)."""
    console = _console()
    if (model_id is None) == (not all_models):
        raise _fail(console, ConfigurationError("give a model id or --all (not both)",
                                                hint="`mindgate models ps` shows what is loaded"))
    try:
        manager = ModelManager.from_config(MindgateConfig.load(config))
        done = manager.unload_all(endpoint=endpoint) if all_models else manager.unload(str(model_id), endpoint=endpoint)
    except MindgateError as exc:
        raise _fail(console, exc) from None
    if done:
        console.print(f"unloaded {', '.join(done)}")
    else:
        console.print("nothing was loaded" if all_models else f"{model_id} was not loaded")


@app.command()
def get(model_id: Annotated[str, typer.Argument(metavar="MODEL", help="LM Studio catalog id or Hugging Face link "
                                                                      "(append @quant as `lms get` does), or an "
                                                                      "Ollama model name")],
        quantization: Annotated[str | None, typer.Option("--quantization", "-q", help="e.g. Q4_K_M")] = None,
        job: Annotated[str | None, typer.Option("--job", help="follow this LM Studio download job instead of "
                                                              "starting one")] = None,
        endpoint: EndpointOption = None, config: ConfigOption = None) -> None:
    """Download a model onto LM Studio (its download API) or Ollama (its pull), with a progress bar. Leaving
    stops nothing on the server: follow an LM Studio job again with --job; pulling again resumes on Ollama."""
    console = _console()
    if "@" in model_id and quantization is None and not model_id.startswith("http"):
        model_id, quantization = model_id.split("@", 1)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeElapsedColumn())
    announced: set[str] = set()
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"downloading {model_id}", total=None)

        def progress(state: DownloadProgress) -> None:
            if state.job_id and state.job_id not in announced:
                announced.add(state.job_id)
                bar.console.print(f"download job {state.job_id} on {state.endpoint}: follow it again with "
                                  f"`mindgate models get {model_id} --job {state.job_id}`")
            bar.update(task, total=state.total_bytes, completed=state.downloaded_bytes or 0,
                       description=f"{state.status} {model_id}" + (f": {state.message}" if state.message else ""))

        try:
            final = ModelManager.from_config(MindgateConfig.load(config)).download(
                model_id, endpoint=endpoint, quantization=quantization, job_id=job, progress=progress)
        except MindgateError as exc:
            bar.stop()
            raise _fail(console, exc) from None
    size = f" ({format_bytes(final.total_bytes)})" if final.total_bytes else ""
    verb = "was already downloaded" if final.status == "already_downloaded" else "downloaded"
    console.print(f"[green]{final.endpoint}:{final.model}[/green] {verb}{size}")


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


def _probe_embedder(config: MindgateConfig, problems: list[str]) -> str:
    """Embed one text; a configured ``embedding_dims`` that disagrees with the probed size is a problem (the
    probed size is used, but the config says something untrue and a store built with it would refuse)."""
    from mindgate.providers import create_embedder

    section = config.embedder
    started = time.monotonic()
    embedder = create_embedder(section.provider, section.config)
    try:
        dims = embedder.dims()
    finally:
        embedder.close()
    configured = section.config.embedding_dims
    if configured is not None and configured != dims:
        problems.append(f"embedding_dims is set to {configured} but {section.provider}:{embedder.model} returns "
                        f"{dims}-dimensional vectors: set it to {dims} or remove it (mindgate probes the dimension)")
    return f"{section.provider}:{embedder.model} -> {dims} dims (probed in {time.monotonic() - started:.1f}s)"


def _servers_table(catalog: ModelCatalog, listing: Any) -> Table | None:
    """LM Studio's and Ollama's versions and what they can do, for the reachable ones."""
    table = Table(title="servers", title_justify="left")
    for column in ("endpoint", "version", "via", "responses API", "embeddings", "MCP"):
        table.add_column(column, overflow="fold")

    def mark(value: Any) -> str:
        return "yes" if value is True else "no" if value is False else "unknown"

    rows = 0
    for status in listing.endpoints:
        if not status.reachable or not loads_on_demand(status.endpoint.provider):
            continue
        try:
            about = run_sync(catalog.aabout(status.endpoint.name))
        except MindgateError as exc:
            table.add_row(status.endpoint.name, f"[red]{exc.message}[/red]", "-", "-", "-", "-")
        else:
            via = "SDK" if about.get("sdk") else str(about.get("api"))
            table.add_row(status.endpoint.name, str(about.get("version")), via, mark(about.get("responses_api")),
                          mark(about.get("embeddings")), mark(about.get("mcp")))
        rows += 1
    return table if rows else None


def doctor(config: ConfigOption = None,
           probe_embedder: Annotated[bool, typer.Option("--probe-embedder/--no-probe-embedder",
                                                        help="embed one text to learn the dimensions")] = True
           ) -> None:
    """Check the setup: which providers answer, what is loaded where, free RAM/VRAM per device, the last model
    switching decisions, embedder dims, config problems."""
    console = _console()
    problems: list[str] = []
    try:
        cfg = MindgateConfig.load(config)
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
    servers = _servers_table(catalog, listing)
    if servers is not None:
        console.print(servers)
    console.print(_resources_table(snapshot()))
    decisions = read_decisions(mindgate_home() / DECISIONS_FILE)
    if decisions:
        console.print(_decisions_table(decisions))
    else:
        console.print("no switching decisions recorded yet (a gateway records loads, unloads and skips for memory)")
    if cfg.llm.provider != "auto" and cfg.llm.config.model:
        found = listing.find(cfg.llm.config.model)
        managed = provider_spec(cfg.llm.provider).driver is not None  # False: a cloud API, its models not listed
        reachable = managed and any(s.reachable and s.endpoint.provider == cfg.llm.provider
                                    for s in listing.endpoints)
        if reachable and not found:
            problems.append(f"the configured llm model {cfg.llm.config.model!r} is not on {cfg.llm.provider}")
    if probe_embedder:
        try:
            console.print(f"embedder: {_probe_embedder(cfg, problems)}")
        except MindgateError as exc:
            problems.append(f"embedder {cfg.embedder.provider}: {exc}")
    if problems:
        console.print("[red]problems:[/red]")
        for problem in problems:
            console.print(f"  - {problem}")
        raise typer.Exit(1)
    console.print("[green]no problems found[/green]")
