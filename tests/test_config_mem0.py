"""mem0 configs load unchanged: the corpus in tests/data/mem0_configs/ (mem0's documentation examples for the
providers mindgate has, and the seeds' examples), each loaded with ``MindgateConfig.from_dict`` and built with
``Memory.from_config``; keys mindgate cannot honour are clear errors or one-time warnings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mindgate import ConfigurationError, EmbedderMismatchError, Memory, MindgateConfig
from mindgate._mem0_compat import _WARNED
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder, EmbedderIdentity

CORPUS = Path(__file__).parent / "data" / "mem0_configs"
# Variables a developer machine may have set, which would otherwise decide what a case builds.
_CLEARED = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "TOGETHER_API_KEY", "GOOGLE_ACCESS_TOKEN",
            "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "AZURE_OPENAI_API_KEY", "HF_TOKEN")


def _cases(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))["cases"]
    return cases


LOADED = [pytest.param(case, id=f"{name}:{case['source']}")
          for name in ("embedders.yaml", "llms.yaml", "memory.yaml") for case in _cases(name)]
REFUSED = [pytest.param(case, id=case["source"]) for case in _cases("refused.yaml")]


def _lookup(cfg: Any, path: str) -> Any:
    value = cfg
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value.model_dump() if hasattr(value, "model_dump") else value


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINDGATE_HOME", str(tmp_path))
    return tmp_path


def _with_home(config: dict[str, Any], home: Path) -> dict[str, Any]:
    store = config.get("vector_store", {}).get("config", {})
    if isinstance(store.get("path"), str):
        store["path"] = store["path"].replace("MINDGATE_HOME", str(home))
    return config


def test_the_corpus_covers_every_documented_provider_mindgate_has() -> None:
    embedders = {c["config"]["embedder"]["provider"] for c in _cases("embedders.yaml")}
    llms = {c["config"]["llm"]["provider"] for c in _cases("llms.yaml")}
    assert embedders >= {"openai", "azure_openai", "ollama", "huggingface", "gemini", "vertexai", "together",
                         "lmstudio"}
    assert llms >= {"openai", "openai_structured", "azure_openai", "azure_openai_structured", "gemini", "lmstudio",
                    "ollama", "together", "vllm"}
    assert len(LOADED) >= 35


@pytest.mark.parametrize("case", LOADED)
def test_a_mem0_config_loads_and_builds(case: dict[str, Any], clean_env: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case["env"].items():
        monkeypatch.setenv(name, str(value))
    config = _with_home(case["config"], clean_env)
    cfg = MindgateConfig.from_dict(config, env=False)
    for path, expected in case["expect"].items():
        assert _lookup(cfg, path) == expected, path
    memory = Memory.from_config(config)  # builds the embedder, the store and (below) the chat model
    try:
        assert memory.llm is not None
    finally:
        memory.close()


@pytest.mark.parametrize("case", REFUSED)
def test_a_mem0_key_mindgate_cannot_honour_is_a_clear_error(case: dict[str, Any], clean_env: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        MindgateConfig.from_dict(case["config"], env=False)
    for part in case["error"]:
        assert part in str(info.value), (part, str(info.value))


@pytest.mark.parametrize(("config", "key"), [
    ({"custom_update_memory_prompt": "Be concise"}, "custom_update_memory_prompt"),
    ({"llm": {"provider": "openai", "config": {"model": "gpt-5-mini", "top_k": 1}}}, "llm.config.top_k"),
    ({"llm": {"provider": "lmstudio", "config": {"enable_vision": True}}}, "llm.config.enable_vision"),
])
def test_a_harmless_mem0_key_is_a_warning_given_once(config: dict[str, Any], key: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    _WARNED.discard(key)
    with caplog.at_level(logging.WARNING, logger="mindgate.config"):
        MindgateConfig.from_dict(config, env=False)
        MindgateConfig.from_dict(config, env=False)
    warnings = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert len(warnings) == 1 and "ignored" in warnings[0]


# -- embedding_dims: the probe wins on a new store; an existing store of another size names reindex ----------

class _Fixed(Embedder):
    """A deterministic embedder of ``dims`` dimensions (what is tested is the dims bookkeeping, not a model)."""

    provider = "test"

    def __init__(self, dims: int, *, embedding_dims: int | None = None) -> None:
        super().__init__("fixed", embedding_dims=embedding_dims)
        self.out = dims

    async def _embed_batch(self, texts: Any) -> Any:
        rows = [np.random.default_rng(len(t)).standard_normal(self.out) for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_configured_dims_that_disagree_with_the_probe_on_a_new_store_warn_and_the_probe_wins(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    memory = Memory(AsyncMemory(embedder=_Fixed(8, embedding_dims=1536), store=store, expected_dims=1536))
    with caplog.at_level(logging.WARNING):
        result = memory.add("I like tea", user_id="u", infer=False)
    assert result["results"][0]["event"] == "ADD"
    # the recorded identity also names the key construction (fact keys are on for new stores)
    assert store.recorded_identity() == EmbedderIdentity("test", "fixed+key_facts1:1.5", 8)
    text = caplog.text
    assert "embedding_dims is set to 1536; using 8" in text and "embedding_model_dims is 1536" in text
    memory.close()


def test_an_existing_store_of_another_size_is_an_error_naming_reindex(tmp_path: Path) -> None:
    first = Memory(AsyncMemory(embedder=_Fixed(8), store=SQLiteStore(tmp_path / "m.db")))
    first.add("I like tea", user_id="u", infer=False)
    first.close()
    second = Memory(AsyncMemory(embedder=_Fixed(16, embedding_dims=8), store=SQLiteStore(tmp_path / "m.db")))
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        second.add("I like coffee", user_id="u", infer=False)
    second.close()


def test_seed_000s_lmstudio_config_with_1536_dims_works_against_lm_studio(
        lmstudio_fake: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Seed 000's example sets embedding_dims 1536 for nomic-embed-text, which returns 768 (LM Studio's
    contract fake, tests/fakes/lmstudio.py): the store is built at 768 and the mismatch is a warning."""
    memory = Memory.from_config({
        "embedder": {"provider": "lmstudio", "config": {
            "model": "text-embedding-nomic-embed-text-v1.5", "embedding_dims": 1536,
            "lmstudio_base_url": f"{lmstudio_fake.base_url}/v1", "api_key": "lm-studio"}},
        "vector_store": {"provider": "sqlite", "config": {"path": str(tmp_path / "m.db"),
                                                          "embedding_model_dims": 1536}}})
    with caplog.at_level(logging.WARNING):
        memory.add("I like green tea", user_id="john", infer=False)
    assert memory.search("tea", user_id="john")["results"][0]["memory"] == "I like green tea"
    assert memory.aio.store.recorded_identity().dims == 768
    assert "embedding_dims is set to 1536; using 768" in caplog.text
    memory.close()
