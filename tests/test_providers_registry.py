"""The provider registry (names, errors, light imports) and what every HTTP adapter shares."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fixtures_servers import free_port
from mindgate.config import MindgateConfig, ProviderConfig
from mindgate.errors import ConfigurationError, NetworkError
from mindgate.providers import ProviderSpec, create_chat_model, create_embedder, provider_names, provider_spec
from mindgate.providers.azure import AzureKwargs

ADAPTERS = list(provider_names())
BUILT_IN = ("lmstudio", "ollama", "openai", "azure_openai", "gemini", "vertexai", "together", "huggingface",
            "openai_compatible", "local")


def test_built_ins_are_registered_through_the_entry_point_group() -> None:
    assert set(BUILT_IN) <= set(ADAPTERS)


def test_unknown_provider_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown provider 'openai-ish'") as info:
        create_chat_model("openai-ish", dict())
    for name in ("lmstudio", "ollama", "azure_openai", "gemini", "vertexai", "together", "huggingface", "local"):
        assert name in str(info.value)
    with pytest.raises(ConfigurationError, match=r"valid providers: .*lmstudio"):
        create_embedder("lm_studio", dict())


def test_the_embedder_has_no_auto_provider() -> None:
    with pytest.raises(ConfigurationError, match="no `auto` provider"):
        create_embedder("auto")


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_adapter_spec_offers_both_factories(name: str) -> None:
    spec = provider_spec(name)
    assert isinstance(spec, ProviderSpec) and spec.name == name
    assert callable(spec.chat_model) and callable(spec.embedder)


def test_adapter_imports_are_light() -> None:
    """Importing every adapter pulls in neither torch, llama.cpp nor google-auth, and opens no connection."""
    code = ("import sys; from mindgate.providers import provider_names, provider_spec\n"
            "[provider_spec(n) for n in provider_names()]\n"
            "heavy = [m for m in ('torch', 'llama_cpp', 'sentence_transformers', 'google.auth') if m in sys.modules]\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(("provider", "config", "named"), [
    ("openai_compatible", {}, "base_url"),
])
def test_missing_required_settings_are_named(provider: str, config: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        create_chat_model(provider, dict(**config))


@pytest.mark.parametrize("provider", ["openai", "azure_openai", "gemini", "vertexai", "together", "huggingface"])
def test_cloud_adapters_fail_fast_on_a_closed_port(provider: str) -> None:
    root = f"http://127.0.0.1:{free_port()}"
    settings: dict[str, object] = {  # per provider: where the closed port goes, and a key
        "openai": {"openai_base_url": root, "api_key": "k"},
        "azure_openai": {"azure_kwargs": AzureKwargs(api_key="k", azure_endpoint=root, azure_deployment="d",
                                                     api_version="2024-10-21")},
        "gemini": {"base_url": root, "api_key": "k"},
        "vertexai": {"base_url": root, "api_key": "token", "project": "p"},
        "together": {"base_url": root, "api_key": "k"},
        "huggingface": {"huggingface_base_url": root},
    }[provider]
    model = create_chat_model(provider, dict(model="m", connect_timeout=1.0, **settings))
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        model.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 3
    assert info.value.url.startswith(root) and root in str(info.value) and "is not reachable" in str(info.value)


@pytest.mark.parametrize(("section", "key"), [
    ({"llm": {"provider": "openai", "config": {"azure_kwargs": {"api_key": "k"}}}}, "azure_kwargs"),
    ({"embedder": {"provider": "ollama", "config": {"model": "m", "device": "cpu"}}}, "device"),
    ({"providers": {"gpu": {"provider": "openai_compatible", "config": {"base_url": "http://h/v1", "ttl": 60}}}},
     "ttl"),
    ({"llm": {"provider": "gemini", "config": {"n_ctx": 4096}}}, "n_ctx"),
])
def test_keys_are_checked_per_provider(section: dict[str, object], key: str) -> None:
    """A key that belongs to other providers is named, with the keys this provider does take."""
    with pytest.raises(ConfigurationError, match=f"`{key}` is not used by provider") as info:
        MindgateConfig.from_dict(section, env=False)
    assert "its own keys" in str(info.value)


def test_each_provider_takes_its_own_keys() -> None:
    config = MindgateConfig.from_dict({
        "llm": {"provider": "local", "config": {"n_ctx": 512, "n_threads": 1, "ttl": 60}},
        "embedder": {"provider": "huggingface", "config": {"device": "cpu"}},
        "providers": {"lan": {"provider": "lmstudio", "config": {"ttl": 600, "n_ctx": 8192}},
                      "gcp": {"provider": "vertexai", "config": {"project": "p", "location": "europe-west4"}}},
    }, env=False)
    assert config.llm.config.n_ctx == 512 and config.providers["gcp"].config.location == "europe-west4"


def test_a_section_holds_its_providers_own_config_model() -> None:
    """Each spec's pydantic model validates its section: the instance is that model, with its defaults."""
    config = MindgateConfig.from_dict({"llm": {"provider": "ollama", "config": {"model": "llama3.2", "ttl": 60}},
                                       "providers": {"az": {"provider": "azure_openai", "config": {
                                           "azure_kwargs": {"azure_deployment": "d"}}}}}, env=False)
    for section in (config.llm, config.embedder, config.providers["az"]):
        assert type(section.config) is provider_spec(section.provider).config_model
    assert config.llm.config.ttl == 60 and config.embedder.config.n_ctx is None  # type: ignore[attr-defined]
    assert config.providers["az"].config.azure_kwargs.azure_deployment == "d"  # type: ignore[attr-defined]
    assert isinstance(config.llm.config, ProviderConfig)  # consumers of the common keys still read them
    with pytest.raises(ConfigurationError, match=r"providers\.az\.config\.azure_kwargs\.api_kye: unknown key "
                                                 r"\(did you mean `api_key`\?\)"):
        MindgateConfig.from_dict({"providers": {"az": {"provider": "azure_openai", "config": {
            "azure_kwargs": {"api_kye": "k"}}}}}, env=False)


def test_switching_a_sections_provider_revalidates_its_config() -> None:
    config = MindgateConfig.from_dict({"llm": {"provider": "lmstudio", "config": {"model": "m", "ttl": 60}}},
                                      env=False)
    config.llm.provider = "ollama"
    assert type(config.llm.config).__name__ == "OllamaConfig"
    assert config.llm.config.ttl == 60  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"config\.ttl\n.*`ttl` is not used by provider 'gemini'"):
        config.llm.provider = "gemini"


def test_the_python_api_takes_a_dict_checked_by_the_providers_model() -> None:
    with pytest.raises(ConfigurationError, match=r"invalid config for provider 'openai': `ttl`: Extra inputs") as info:
        create_chat_model("openai", {"model": "gpt-4o-mini", "api_key": "k", "ttl": 5})
    assert "openai_base_url" in (info.value.hint or "")
    model = create_chat_model("ollama", {"model": "llama3.2", "ollama_base_url": "http://127.0.0.1:9", "ttl": 5})
    assert model.model == "llama3.2"
