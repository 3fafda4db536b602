"""A provider from another package: built and installed in the test, used from config and through the gateway.

The package is one module (``SPEC`` from ``openai_compatible_spec``, with its own config model and a
model-management driver) plus its entry point in the ``mindgate.providers`` group, installed with pip into a
folder on ``sys.path`` -- what a user's ``pip install mindgate-acme`` does. Nothing in mindgate names it; the
gateway serves the real llama.cpp server through it and ``mindgate models`` lists that server's model.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from fixtures_gateway import GatewayServer
from mindgate import _plugins
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.models import ModelCatalog, endpoints_from_config
from mindgate.providers import create_chat_model, provider_names, provider_spec

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "mindgate-tinyserver"
version = "0.1.0"

[project.entry-points."mindgate.providers"]
tinyserver = "mindgate_tinyserver:SPEC"
tinyclouds = "mindgate_tinyclouds"

[tool.setuptools]
py-modules = ["mindgate_tinyserver"]
packages = ["mindgate_tinyclouds"]
"""

_MODULE = """\
from pydantic import Field

from mindgate.config import BaseURLConfig
from mindgate.providers import openai_compatible_spec
from mindgate.providers._openai_management import OpenAICompatDriver


class TinyConfig(BaseURLConfig):
    region: str = Field(default="eu", pattern="^(eu|us)$")


SPEC = openai_compatible_spec("tinyserver", "Tiny Server", key_env="TINYSERVER_API_KEY",
                              start_hint="start it with `tinyserver --port 8080`", takes_top_k=True,
                              config_model=TinyConfig, driver=OpenAICompatDriver)
"""


# A package of providers (the form mindgate's built-ins use): each public module defining SPEC is one provider.
_CLOUD = """\
from mindgate.providers import openai_compatible_spec

SPEC = openai_compatible_spec("{name}", "{display}", default_base_url="http://127.0.0.1:9/v1", key_env="TINY_KEY")
"""
_CLOUDS = {"__init__.py": '"""Tiny clouds."""\n', "alpha.py": _CLOUD.format(name="tinyalpha", display="Tiny Alpha"),
           "_shared.py": "BROKEN = 1 / 0\n",  # private: never imported
           "helpers.py": "TIMEOUT = 5\n",  # public but no SPEC: no provider
           "broken.py": "raise RuntimeError('missing dependency')\n"}  # logged, hides no other provider


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built from source and installed (no dependencies, no index) into its own folder."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "src"
    source.mkdir()
    (source / "pyproject.toml").write_text(_PYPROJECT, encoding="utf-8")
    (source / "mindgate_tinyserver.py").write_text(_MODULE, encoding="utf-8")
    (source / "mindgate_tinyclouds").mkdir()
    for name, text in _CLOUDS.items():
        (source / "mindgate_tinyclouds" / name).write_text(text, encoding="utf-8")
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (target / "mindgate_tinyserver-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


@pytest.fixture
def plugin_on_path(installed_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The install folder on ``sys.path`` (as site-packages would be); the registry forgets it afterwards."""
    monkeypatch.setattr(_plugins, "_points", None)
    monkeypatch.setattr(_plugins, "_loaded", {})
    monkeypatch.syspath_prepend(str(installed_plugin))
    yield
    for module in [m for m in sys.modules if m.startswith(("mindgate_tinyserver", "mindgate_tinyclouds"))]:
        sys.modules.pop(module)


def test_an_installed_provider_is_registered_beside_the_built_ins(plugin_on_path: None) -> None:
    assert {"tinyserver", "lmstudio", "openai_compatible"} <= set(provider_names())
    spec = provider_spec("tinyserver")
    assert (spec.display, spec.key_env, spec.takes_top_k) == ("Tiny Server", "TINYSERVER_API_KEY", True)


def test_a_package_of_providers_is_one_entry_point_and_a_new_provider_one_new_module(
        plugin_on_path: None, installed_plugin: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The form mindgate's own built-ins take (``mindgate = "mindgate.providers"``): adding a provider to such a
    package is one file, its module; no entry-point line."""
    names = provider_names()
    assert "tinyalpha" in names and "tinyclouds" not in names and "helpers" not in names  # labels are no names
    assert "mindgate_tinyclouds._shared" not in sys.modules
    assert "mindgate_tinyclouds.broken could not be imported: RuntimeError: missing dependency" in caplog.text
    assert provider_spec("tinyalpha").display == "Tiny Alpha"
    added = installed_plugin / "mindgate_tinyclouds" / "beta.py"
    added.write_text(_CLOUD.format(name="tinybeta", display="Tiny Beta"), encoding="utf-8")
    try:
        assert provider_spec("tinybeta").key_env == "TINY_KEY"  # an unseen name rescans the group
        config = MindgateConfig.from_dict({"llm": {"provider": "tinybeta", "config": {"model": "m"}}}, env=False)
        assert config.llm.provider == "tinybeta" and type(config.llm.config).__name__ == "BaseURLConfig"
    finally:
        added.unlink()


def test_mindgates_built_ins_are_one_package_entry_point() -> None:
    """mindgate registers its built-ins the way a third-party package of providers does."""
    table = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert table["project"]["entry-points"][_plugins.GROUP] == {"mindgate": "mindgate.providers"}
    scanned = _plugins._scan()
    for name in ("lmstudio", "ollama", "openai", "azure_openai", "gemini", "vertexai", "together", "huggingface",
                 "openai_compatible", "local"):
        assert scanned[name].module.startswith("mindgate.providers.") and scanned[name].attr == "SPEC"


def test_an_entry_point_naming_a_plain_module_registers_its_spec(caplog: pytest.LogCaptureFixture) -> None:
    plain = EntryPoint(name="label", value="mindgate.providers.openai", group=_plugins.GROUP)
    assert [(p.name, p.value) for p in _plugins._expand(plain)] == [("openai", "mindgate.providers.openai:SPEC")]
    assert _plugins._expand(EntryPoint(name="none", value="json", group=_plugins.GROUP)) == []
    assert "entry point 'none' (json) registers no provider" in caplog.text


def test_its_keys_are_checked_like_a_built_in(plugin_on_path: None) -> None:
    with pytest.raises(ConfigurationError, match="`lmstudio_base_url` is not used by provider 'tinyserver'"):
        MindgateConfig.from_dict({"llm": {"provider": "tinyserver",
                                          "config": {"lmstudio_base_url": "http://127.0.0.1:9/v1"}}}, env=False)
    # mem0's top_k goes into the request body because the spec says the server takes it
    config = MindgateConfig.from_dict({"llm": {"provider": "tinyserver", "config": {"top_k": 20}}}, env=False)
    assert config.llm.config.model_kwargs == {"top_k": 20}
    with pytest.raises(ConfigurationError, match="needs a base URL"):
        create_chat_model("tinyserver", config.llm.config)


def test_it_brings_its_own_config_model(plugin_on_path: None) -> None:
    """The package's pydantic model validates its section: its own key with its default and constraint, and a
    typo named with the provider and its keys."""
    section = {"llm": {"provider": "tinyserver", "config": {"base_url": "http://127.0.0.1:9/v1", "region": "us"}}}
    config = MindgateConfig.from_dict(section, env=False)
    assert type(config.llm.config).__name__ == "TinyConfig"
    assert config.llm.config.region == "us"  # type: ignore[attr-defined]
    default = MindgateConfig.from_dict({"llm": {"provider": "tinyserver"}}, env=False).llm.config
    assert default.region == "eu"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"llm\.config\.region: String should match pattern"):
        MindgateConfig.from_dict({"llm": {"provider": "tinyserver", "config": {"region": "mars"}}}, env=False)
    with pytest.raises(ConfigurationError, match=r"llm\.config\.regoin: unknown key for provider 'tinyserver' "
                                                 r"\(did you mean `region`\?\); valid keys: .*region"):
        MindgateConfig.from_dict({"llm": {"provider": "tinyserver", "config": {"regoin": "us"}}}, env=False)
    # the built-ins do not take it
    with pytest.raises(ConfigurationError, match="`region` is not used by provider 'openai_compatible'"):
        MindgateConfig.from_dict({"llm": {"provider": "openai_compatible", "config": {"region": "us"}}}, env=False)
    # the config file's JSON schema, made now, has it as a member with its model
    schema = MindgateConfig.model_json_schema()
    member = schema["$defs"][schema["$defs"]["LLMSection"]["discriminator"]["mapping"]["tinyserver"].rsplit("/", 1)[-1]]
    tiny = schema["$defs"][member["properties"]["config"]["$ref"].rsplit("/", 1)[-1]]
    assert tiny["title"] == "TinyConfig" and tiny["properties"]["region"]["pattern"] == "^(eu|us)$"
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(section))
    assert list(validator.iter_errors({"llm": {"provider": "tinyserver", "config": {"region": "mars"}}}))


def test_without_the_package_the_name_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=r"'tinyserver' is not a valid choice.*valid providers: auto"):
        MindgateConfig.from_dict({"llm": {"provider": "tinyserver"}}, env=False)


def test_the_gateway_serves_a_plugin_provider_from_config(plugin_on_path: None, llama_server: Any,
                                                          serve_gateway: Callable[..., GatewayServer],
                                                          memory_factory: Callable[..., AsyncMemory]) -> None:
    config = MindgateConfig.from_dict({"llm": {"provider": "tinyserver", "config": {
        "base_url": llama_server.base_url, "model": "smollm2", "max_tokens": 8, "temperature": 0}}}, env=False)
    server = serve_gateway(create_app(config, memory=memory_factory()))
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="smollm2", max_tokens=8,
                                           messages=[{"role": "user", "content": "Say hello."}])
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert "mindgate_tinyserver" in sys.modules  # the plugin's module served it, not a built-in


def test_its_models_are_managed_through_its_driver(plugin_on_path: None, llama_server: Any) -> None:
    """The spec's driver is all ``mindgate models`` needs: the endpoint comes from config under the plugin's
    name and the catalog lists the real server's model through it."""
    config = MindgateConfig.from_dict({"llm": {"provider": "tinyserver", "config": {
        "base_url": llama_server.base_url, "model": "smollm2"}}}, env=False)
    endpoints = endpoints_from_config(config)
    assert [(e.name, e.provider, e.url) for e in endpoints if e.provider == "tinyserver"] == [
        ("tinyserver", "tinyserver", llama_server.base_url.rstrip("/"))]
    listing = ModelCatalog([e for e in endpoints if e.provider == "tinyserver"], ttl=0).list()
    assert [s.reachable for s in listing.endpoints] == [True]
    assert [m.id for m in listing.models] == ["smollm2"] and listing.models[0].provider == "tinyserver"
    assert listing.find("smollm2", endpoint="tinyserver")


def test_a_plugin_named_like_a_mem0_provider_takes_over_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """mem0's ``groq`` is refused while mindgate has no such provider, and loads once a package registers it."""
    section = {"llm": {"provider": "groq", "config": {"model": "llama-3.1-8b-instant"}}}
    with pytest.raises(ConfigurationError, match="not built into mindgate") as info:
        MindgateConfig.from_dict(section, env=False)
    assert "install a provider package" in str(info.value) and "openai_compatible" in str(info.value)
    points = {name: _plugins._scan()[name] for name in provider_names()}
    points["groq"] = EntryPoint(name="groq", value="mindgate.providers.openai_compat:SPEC", group=_plugins.GROUP)
    monkeypatch.setattr(_plugins, "_points", points)
    monkeypatch.setattr(_plugins, "_scan", lambda: points)
    monkeypatch.setattr(_plugins, "_loaded", {})
    assert MindgateConfig.from_dict(section, env=False).llm.provider == "groq"
