"""Routers from the `routing:` config section, background health checks, and the `routing` CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fixtures_servers import LlamaServer
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.routing import Router, Target
from mindgate.routing._chains import resolve_route_target
from mindgate.routing._commands import app
from routing_helpers import chat_model, closed_port_url

ASK = [{"role": "user", "content": "Say one word."}]


def config_for(llama: LlamaServer, dead_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "primary": {"provider": "openai_compatible", "config": {"base_url": llama.base_url, "model": "smollm2"}},
            "dead": {"provider": "openai_compatible", "config": {"base_url": dead_url, "model": "smollm2"}},
        },
        "routing": {
            "default": "main",
            "chains": {"main": {"targets": ["dead", {"endpoint": "primary", "timeout": 30,
                                                     "first_token_timeout": 10, "context_length": 4096}],
                                "retries": 0, "breaker_failures": 1, "breaker_cooldown": 60}},
        },
    }


def row(router: Router, name: str) -> dict[str, Any]:
    return next(r for r in router.status() if r["name"] == name)


def test_chain_from_config_falls_back_and_reports_targets(llama_server: LlamaServer) -> None:
    config = MindgateConfig.from_dict(config_for(llama_server, closed_port_url()), env=False)
    router = Router.from_config("main", config)
    assert [t.name for t in router.targets] == ["dead", "primary"]
    primary = router.targets[1]
    assert (primary.timeout, primary.first_token_timeout, primary.context_length) == (30, 10, 4096)
    assert router.complete(ASK, max_tokens=8).content is not None
    assert row(router, "dead")["state"] == "open" and row(router, "primary")["successes"] == 1


def test_target_shorthand_and_provider_names_resolve() -> None:
    config = MindgateConfig.from_dict({
        "llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct"}},
        "routing": {"chains": {"c": {"targets": ["lmstudio", "ollama:llama3.2:latest", {"endpoint": "local",
                                                                                      "name": "engine"}]}}},
    }, env=False)
    router = Router.from_config("c", config)
    assert [t.name for t in router.targets] == ["lmstudio", "ollama:llama3.2:latest", "engine"]
    assert router.targets[0].model.model == "qwen2.5-7b-instruct"  # the llm section's settings
    assert router.targets[1].model.model == "llama3.2:latest"
    assert router.targets[1].model.provider == "ollama"


def test_bad_chain_config_is_a_clear_error() -> None:
    config = MindgateConfig.from_dict({"routing": {"chains": {"c": {"targets": ["nowhere"]}}}}, env=False)
    with pytest.raises(ConfigurationError, match=r"'nowhere' is neither an endpoint under `providers:` nor a provider"):
        Router.from_config("c", config)
    with pytest.raises(ConfigurationError, match=r"chains defined under routing\.chains: c, auto"):
        Router.from_config("missing", config)
    with pytest.raises(ConfigurationError, match="targets"):
        MindgateConfig.from_dict({"routing": {"chains": {"c": {"targets": []}}}}, env=False)
    with pytest.raises(ConfigurationError, match="names target 'x' twice"):
        Router([Target(chat_model(closed_port_url()), name="x"), Target(chat_model(closed_port_url()), name="x")])
    with pytest.raises(ConfigurationError, match="timeout must be positive"):
        Target(chat_model(closed_port_url()), timeout=0)


def test_semantic_route_targets_resolve_to_chains_or_models(llama_server: LlamaServer) -> None:
    config = MindgateConfig.from_dict(config_for(llama_server, closed_port_url()), env=False)
    assert isinstance(resolve_route_target("main", config), Router)
    model = resolve_route_target("primary:other-model", config)
    assert not isinstance(model, Router) and model.model == "other-model"


def test_background_health_checks_open_and_close_the_breaker(llama_server_factory: type[LlamaServer]) -> None:
    server = llama_server_factory(n_ctx=512).start()
    router = Router([Target(chat_model(server.base_url), name="x")], health_check_interval=0.2,
                    breaker_cooldown=60)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        await router.acomplete(ASK, max_tokens=4)  # the first call starts the checks
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.8)
        down = row(router, "x")
        await asyncio.to_thread(llama_server_factory(server.port, n_ctx=512).start)
        await asyncio.sleep(0.8)
        up = row(router, "x")
        await router.aclose()
        return down, up

    down, up = asyncio.run(scenario())
    assert down["state"] == "open" and down["requests"] == 1  # found by the checks, not by a request
    assert "health check" in down["last_error"]
    assert up["state"] == "closed"


def test_cli_status_probes_and_prints_json_and_table(llama_server: LlamaServer, tmp_path: Path) -> None:
    path = tmp_path / "mindgate.yaml"
    path.write_text(yaml.safe_dump(config_for(llama_server, closed_port_url())))
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--config", str(path), "--chain", "main", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["chains"]["main"]}
    assert rows["dead"]["state"] == "open" and rows["dead"]["retry_in"] > 0
    assert rows["primary"]["state"] == "closed"

    table = runner.invoke(app, ["status", "--config", str(path), "--chain", "main"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "main" in table.output and "dead" in table.output and "open" in table.output
    assert "closed" in table.output

    missing = runner.invoke(app, ["status", "--config", str(path), "--chain", "nope"])
    assert missing.exit_code == 2 and "no routing chain named 'nope'" in missing.output


def test_cli_route_shows_the_matching_route(tmp_path: Path) -> None:
    spec = json.loads((Path(__file__).parent / "data" / "routing_routes.json").read_text())
    path = tmp_path / "mindgate.yaml"
    path.write_text(yaml.safe_dump({"routing": {"default": spec["default"], "routes": spec["routes"]}}))
    result = CliRunner().invoke(app, ["route", "Write a Python function that sorts a list", "--config", str(path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["route"] == "code" and data["target"] == "coder"
    assert set(data["scores"]) == {"code", "math", "writing", "chat"}
