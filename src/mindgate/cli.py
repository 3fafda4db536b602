"""The ``mindgate`` command.

``mindgate serve`` starts the gateway; ``mindgate chat`` is an interactive chat with memory;
``mindgate memory ...`` reads and writes memories; ``mindgate mcp`` serves them to MCP hosts on stdio;
``mindgate reindex`` re-embeds them; ``mindgate config schema`` prints the config file's JSON schema;
``models``, ``doctor``, ``routes`` and ``migrate`` come from the model-management, routing and store packages.
Every failure is printed as one line (what was wrong and what to do) with exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from mindgate import __version__
from mindgate.config import MindgateConfig
from mindgate.errors import MindgateError
from mindgate.mcp._commands import mcp_command
from mindgate.memory import _commands as memory_commands
from mindgate.memory._commands_migrate import migrate_command
from mindgate.models import _commands as models_commands
from mindgate.routing import _commands as routing_commands

app = typer.Typer(name="mindgate", help="Local-first model gateway with long-term memory for AI agents.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(memory_commands.app, name="memory")
app.command("reindex")(memory_commands.reindex_command)
app.add_typer(models_commands.app, name="models")
app.command("doctor")(models_commands.doctor)
app.command("migrate")(migrate_command)
app.add_typer(routing_commands.app, name="routes")
app.command("mcp")(mcp_command)
config_app = typer.Typer(help="The config file's format.", no_args_is_help=True)
app.add_typer(config_app, name="config")

err_console = Console(stderr=True)
ConfigOpt = memory_commands.ConfigOpt


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mindgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Local-first model gateway with long-term memory for AI agents."""


@app.command()
def serve(host: Annotated[str | None, typer.Option(help="address to bind (default: gateway.host, 127.0.0.1)")] = None,
          port: Annotated[int | None, typer.Option(min=0, max=65535, help="port (default: gateway.port, 8741)")] = None,
          config: ConfigOpt = None,
          allow_remote: Annotated[bool, typer.Option("--allow-remote",
                                                     help="allow binding a non-loopback address")] = False,
          log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info") -> None:
    """Start the OpenAI-compatible gateway with memory (http://127.0.0.1:8741/v1 by default)."""
    from mindgate.gateway._server import serve as run_server

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"{log_level!r} is not one of debug, info, warning, error", param_hint="--log-level")
    run_server(MindgateConfig.load(config), host=host, port=port, allow_remote=allow_remote,
               log_level=log_level.lower())


@config_app.command("schema")
def config_schema() -> None:
    """Print the config file's JSON schema (``MindgateConfig.model_json_schema()``): every section, and for
    ``llm`` / ``embedder`` / ``embedders`` / ``providers`` one member per provider with its own keys, installed
    provider packages included. For editors and CI checks of YAML configs."""
    typer.echo(json.dumps(MindgateConfig.model_json_schema(), indent=2))


@app.command("hash-key")
def hash_key_command(key: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                                      help="the API key (asked for when not given)")]) -> None:
    """Print the SHA-256 digest of an API key, for ``gateway.api_keys[].key_sha256`` (the config then holds no
    secret)."""
    from mindgate.gateway._auth import hash_key

    if len(key) < 16:
        raise typer.BadParameter("use at least 16 characters (e.g. `openssl rand -hex 24`)", param_hint="--key")
    typer.echo(hash_key(key))


@app.command()
def chat(user: Annotated[str | None, typer.Option("--user", "-u", help="remember and recall for this user")] = None,
         agent: Annotated[str | None, typer.Option("--agent", "-a", help="agent_id scope")] = None,
         system: Annotated[str | None, typer.Option("--system", "-s", help="a system prompt")] = None,
         memory: Annotated[bool, typer.Option(help="use long-term memory (needs --user)")] = True,
         max_tokens: Annotated[int | None, typer.Option(min=1, help="limit each answer")] = None,
         context: Annotated[str | None, typer.Option(
             help="how a conversation longer than the model's window is fitted: auto, truncate, summarize, "
                  "memory or error (default: the config's context.policy)")] = None,
         config: ConfigOpt = None) -> None:
    """Chat interactively with streaming answers and long-term memory (talks to the models directly)."""
    from mindgate._cli_chat import ChatSession, run_interactive
    from mindgate.context._policy import requested_policy
    from mindgate.gateway._server import configure_logging
    from mindgate.pipeline._build import memory_for, pipeline_for
    from mindgate.pipeline._scope import ChatScope
    from mindgate.providers import create_embedder
    from mindgate.routing._targets import build_targets

    configure_logging("warning")
    try:
        policy = requested_policy(context, None)
    except MindgateError as exc:
        raise typer.BadParameter(str(exc), param_hint="--context") from None
    cfg = MindgateConfig.load(config)
    use_memory = memory and user is not None
    console = Console()
    if memory and user is None:
        console.print("[dim]no --user given: chatting without long-term memory[/dim]")
    embedder = create_embedder(cfg.embedder.provider, cfg.embedder.config)
    targets = build_targets(cfg, embedder)
    store = memory_for(cfg, embedder, targets) if use_memory else None
    pipeline = pipeline_for(cfg, targets, store)
    scope = ChatScope(user, agent) if use_memory and user else None
    options: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}
    session = ChatSession(pipeline, targets.default_name, scope, system=system, context=policy, options=options)

    async def main() -> None:
        try:
            await run_interactive(session, console)
        finally:
            if pipeline.writer is not None:
                await pipeline.writer.stop()
            await targets.aclose()
            if store is not None:
                await store.close()

    asyncio.run(main())


def _print_error(exc: BaseException) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mindgate`` script: runs the command, turns errors into one line and exit 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no progress bar from loading the embedder
    try:
        result = app(args=argv, prog_name="mindgate", standalone_mode=False)
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except MindgateError as exc:
        _print_error(exc)
        return 1
    except typer.TyperException as exc:  # usage errors (exit 2) and other command-line errors
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _print_error(exc)
        return int(exc.exit_code)
    except OSError as exc:
        _print_error(exc)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

