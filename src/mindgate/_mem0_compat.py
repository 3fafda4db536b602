"""mem0 configurations, read as mem0 reads them.

:func:`normalize` rewrites a mem0-shaped dict (mem0 1.x and 2.x key names) into mindgate's own before
validation: every key mem0's config classes accept is either **mapped** onto the setting that does the
same thing here, **warned about once** (ignoring it changes nothing a user relies on), or **refused**
with a :class:`~mindgate.errors.ConfigurationError` that names what to use instead. Nothing is dropped
silently. The corpus of mem0 configs in ``tests/data/mem0_configs/`` is loaded by the tests to keep it so.

Only mem0 names live here; mindgate's own keys are validated by :mod:`mindgate.config` as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mindgate._plugins import load as load_plugin
from mindgate._plugins import provider_names
from mindgate.errors import ConfigurationError

log = logging.getLogger("mindgate.config")

_WARNED: set[str] = set()

# mem0 provider names that are another name for a mindgate provider (unless a plugin registers the name).
_LLM_ALIASES = {"openai_structured": "openai", "azure_openai_structured": "azure_openai", "vllm": "openai_compatible"}

# mem0 providers mindgate does not build in (an installed plugin of the same name wins); all of them speak (or
# sit behind) the OpenAI API.
_FOREIGN_LLMS = frozenset({"anthropic", "groq", "aws_bedrock", "litellm", "deepseek", "minimax", "xai", "sarvam",
                           "langchain"})
_FOREIGN_EMBEDDERS = frozenset({"aws_bedrock", "fastembed", "langchain"})
_FOREIGN_RERANKERS = frozenset({"cohere", "zero_entropy", "voyageai", "tei", "aws_bedrock", "bailian",
                                "openai_compatible"})
_FOREIGN_HINT = ("use provider `openai_compatible` with the service's OpenAI-compatible `base_url` and `api_key`, "
                 "install a provider package for it, or use one of the registered providers: ")

# What mem0 uses when an LM Studio section names no model: its default chat model, and the embedding model
# LM Studio bundles (listed by LM Studio under this id; mem0 names it by its GGUF path).
_LMSTUDIO_DEFAULTS = {
    True: "lmstudio-community/Meta-Llama-3.1-70B-Instruct-GGUF/Meta-Llama-3.1-70B-Instruct-IQ2_M.gguf",
    False: "text-embedding-nomic-embed-text-v1.5",
}


def _takes(provider: str, option: str) -> bool:
    """Whether ``provider``'s spec says its API takes ``option`` in the request body (via ``model_kwargs``)."""
    try:
        return bool(getattr(load_plugin(provider), f"takes_{option}", False))
    except ConfigurationError:
        return False  # not registered: the section's provider check reports it

# mem0 keys that mindgate has no use for, and why ignoring them is harmless.
_IGNORED_PROVIDER_KEYS = {
    "vision_details": "images are passed to the model as content parts as they come",
    "enable_vision": "images are passed to the model as content parts as they come; memory extraction reads "
                     "the text of each message",
    "models": "OpenRouter model routing is not used; fallback chains are configured under `routing.chains`",
    "route": "OpenRouter model routing is not used; fallback chains are configured under `routing.chains`",
    "site_url": "OpenRouter attribution headers can be set under `headers`",
    "app_name": "OpenRouter attribution headers can be set under `headers`",
}
_VERTEX_TASK_KEYS = ("memory_add_embedding_type", "memory_update_embedding_type", "memory_search_embedding_type")


def warn_once(key: str, message: str) -> None:
    """Log ``message`` at WARNING the first time ``key`` is seen in this process."""
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)


def normalize(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with mem0's keys mapped onto mindgate's (see the module docstring)."""
    out = dict(data)
    _top_level(out)
    for section in ("llm", "embedder"):
        if isinstance(out.get(section), dict):
            out[section] = _provider_section(out[section], section, chat=section == "llm")
    if isinstance(out.get("vector_store"), dict):
        out["vector_store"] = _vector_store(out["vector_store"])
    providers = out.get("providers")
    if isinstance(providers, dict):
        out["providers"] = {name: _provider_section(ep, f"providers.{name}", chat=True) if isinstance(ep, dict)
                            else ep for name, ep in providers.items()}
    return out


def _top_level(out: dict[str, Any]) -> None:
    if "graph_store" in out or out.get("enable_graph"):
        raise ConfigurationError(
            "`graph_store` / `enable_graph`: mindgate has no graph memory (mem0 3 removed it from its open-source "
            "edition as well)",
            hint="remove `graph_store` and `enable_graph`; related memories are found by hybrid (vector + "
                 "full-text) search, and `filters` on metadata narrow a search")
    out.pop("enable_graph", None)
    prompts = {k: out.pop(k) for k in ("custom_instructions", "custom_fact_extraction_prompt") if out.get(k)}
    if prompts:
        memory = dict(out.get("memory") or {}) if isinstance(out.get("memory", {}), dict) else out["memory"]
        values = {*prompts.values(), *([memory["custom_instructions"]] if memory.get("custom_instructions") else [])}
        if len(values) > 1:
            raise ConfigurationError(
                f"{' and '.join(f'`{k}`' for k in prompts)} and `memory.custom_instructions` give different "
                "fact-extraction instructions", hint="keep one of them (mem0 2.x calls it `custom_instructions`)")
        memory["custom_instructions"] = values.pop()
        out["memory"] = memory
    if out.pop("custom_update_memory_prompt", None):
        warn_once("custom_update_memory_prompt",
                  "custom_update_memory_prompt is ignored: mindgate decides ADD/UPDATE/DELETE with its own prompt "
                  "(mem0 2.x deprecated the key too); put guidance in `custom_instructions`")
    if isinstance(out.get("reranker"), dict):
        _reranker(out["reranker"])
    if out.pop("history_db_path", None):
        warn_once("history_db_path", "history_db_path is not used: mindgate keeps history in the memory store, "
                                     "written in the same transaction as each change")


def _reranker(section: dict[str, Any]) -> None:
    provider = section.get("provider")
    if isinstance(provider, str) and provider in _FOREIGN_RERANKERS:
        raise ConfigurationError(
            f"reranker.provider: mem0's {provider!r} reranker (a hosted API) is not built into mindgate",
            hint="use `sentence_transformer` (a cross-encoder from a local folder or the Hugging Face cache) or "
                 "`llm_reranker` (any configured chat model, the embedded one by default)")


def _vector_store(section: dict[str, Any]) -> dict[str, Any]:
    out = dict(section)
    provider = out.get("provider", "sqlite")
    if isinstance(provider, str) and provider not in ("sqlite", "pgvector"):
        raise ConfigurationError(
            f"vector_store.provider: mem0's {provider!r} store is not supported by mindgate",
            hint="use `sqlite` (one embedded file, the default) or `pgvector` (PostgreSQL); `mindgate migrate` "
                 "copies memories between the two")
    config = out.get("config")
    if provider != "pgvector" or not isinstance(config, dict):
        return out
    config = dict(config)
    if config.pop("diskann", False):
        raise ConfigurationError("vector_store.config.diskann: the DiskANN index (pgvectorscale) is not supported",
                                 hint="remove it; mindgate builds an HNSW index (`hnsw: true`, the default)")
    if config.pop("connection_pool", None) is not None:
        raise ConfigurationError("vector_store.config.connection_pool: mindgate opens its own connection pool",
                                 hint="give `connection_string` (or dsn) and `minconn` / `maxconn` instead")
    out["config"] = config
    return out


def _provider_section(section: dict[str, Any], where: str, *, chat: bool) -> dict[str, Any]:
    out = dict(section)
    provider = out.get("provider")
    config = out.get("config")
    if not isinstance(provider, str) or (config is not None and not isinstance(config, dict)):
        return out  # the validator reports the wrong type
    config = dict(config or {})
    registered = provider_names()
    if chat and provider in _LLM_ALIASES and provider not in registered:
        provider = _LLM_ALIASES[provider]
        if "vllm_base_url" in config:
            config["base_url"] = config.pop("vllm_base_url")
    if provider in (_FOREIGN_LLMS if chat else _FOREIGN_EMBEDDERS) and provider not in registered:
        raise ConfigurationError(f"{where}.provider: mem0's {provider!r} is not built into mindgate",
                                 hint=_FOREIGN_HINT + ", ".join(registered))
    if chat and provider == "gemini" and config.pop("vertexai", False):
        provider = "vertexai"  # mem0's Gemini LLM on Vertex AI (with `project` and `location`)
    config.pop("vertexai", None)
    if provider == "lmstudio" and not config.get("model") and where in ("llm", "embedder"):
        config["model"] = _LMSTUDIO_DEFAULTS[chat]
    for key, mapper in _CONFIG_KEYS.items():
        if key in config:
            mapper(config, provider, f"{where}.config.{key}")
    out["provider"], out["config"] = provider, config
    return out


# -- per-key mappers: (config, provider, key path) -> None, editing config in place ------------------------

def _kwarg(config: dict[str, Any], name: str, value: Any) -> None:
    kwargs = config.get("model_kwargs")
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    kwargs.setdefault(name, value)
    config["model_kwargs"] = kwargs


def _top_k(config: dict[str, Any], provider: str, where: str) -> None:
    value = config.pop("top_k")
    if value is None:
        return
    if _takes(provider, "top_k"):
        _kwarg(config, "top_k", value)
    else:
        warn_once(where, f"{where} is ignored: the {provider} API has no top_k sampling parameter")


def _reasoning_effort(config: dict[str, Any], provider: str, where: str) -> None:
    value = config.pop("reasoning_effort")
    if value is None:
        return
    if provider == "ollama":
        _kwarg(config, "think", value)  # Ollama's native name for the same setting
    elif _takes(provider, "reasoning_effort"):
        _kwarg(config, "reasoning_effort", value)
    else:
        warn_once(where, f"{where} is ignored: the {provider} engine has no reasoning-effort setting")


def _is_reasoning_model(config: dict[str, Any], provider: str, where: str) -> None:
    if config.pop("is_reasoning_model"):  # as mem0 does: reasoning models take no sampling parameters
        for key in ("temperature", "top_p", "top_k"):
            config.pop(key, None)


def _output_dimensionality(config: dict[str, Any], provider: str, where: str) -> None:
    value = config.pop("output_dimensionality")
    if value is None:
        return
    try:
        dims = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where} must be a whole number, got {value!r}") from None
    if config.get("embedding_dims") not in (None, dims):
        raise ConfigurationError(f"{where} ({dims}) and embedding_dims ({config['embedding_dims']}) disagree",
                                 hint="set one of them")
    config["embedding_dims"] = dims


def _vertex_task_types(config: dict[str, Any], provider: str, where: str) -> None:
    base = where.rsplit(".", 1)[0]
    types = {k: config.pop(k) for k in _VERTEX_TASK_KEYS if k in config}
    if provider != "vertexai":
        warn_once(base + ".memory_*_embedding_type", f"{', '.join(types)} under {base} are ignored: only Vertex AI "
                                                    "embeddings take a task type")
        return
    document = {v for k, v in types.items() if k != "memory_search_embedding_type" and v}
    if len(document) > 1:
        raise ConfigurationError(f"{base}: memory_add_embedding_type and memory_update_embedding_type differ",
                                 hint="mindgate embeds added and updated memories alike; give both the same type")
    if document:
        _kwarg(config, "task_type", document.pop())
    query = types.get("memory_search_embedding_type")
    if query and query != config.get("model_kwargs", {}).get("task_type"):
        warn_once(base + ".memory_search_embedding_type",
                  f"{base}.memory_search_embedding_type ({query}) is not used: search queries are embedded with "
                  "the memories' task type, so query and memory vectors stay in one space")


def _lmstudio_response_format(config: dict[str, Any], provider: str, where: str) -> None:
    value = config.pop("lmstudio_response_format")
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None or kind == "json_schema":
        return  # what mindgate already sends LM Studio for every structured call, with its own schema
    if kind == "json_object":
        raise ConfigurationError(f"{where}: LM Studio rejects response_format json_object (HTTP 400)",
                                 hint="remove the key: mindgate sends LM Studio a JSON schema for structured output")
    warn_once(where, f"{where} ({kind!r}) is not used: mindgate asks LM Studio for JSON-schema output when it "
                     "needs structured answers and for plain text otherwise")


def _store(config: dict[str, Any], provider: str, where: str) -> None:
    value = config.pop("store")
    if value is not None:
        _kwarg(config, "store", value)  # OpenAI's "store this completion" flag, sent as is


def _response_callback(config: dict[str, Any], provider: str, where: str) -> None:
    config.pop("response_callback")
    raise ConfigurationError(f"{where}: a Python callback cannot be configured in mindgate",
                             hint="remove it; each response's usage is on the gateway's /metrics and in its log")


def _openrouter(config: dict[str, Any], provider: str, where: str) -> None:
    raise ConfigurationError(f"{where}: OpenRouter is not a mode of the openai provider here",
                             hint="use provider `openai_compatible` with `base_url` set to OpenRouter's "
                                  "OpenAI-compatible URL and `api_key`")


def _ignored(config: dict[str, Any], provider: str, where: str) -> None:
    key = where.rsplit(".", 1)[1]
    if config.pop(key) not in (None, False, "auto"):
        warn_once(where, f"{where} is ignored: {_IGNORED_PROVIDER_KEYS[key]}")


def _aws(config: dict[str, Any], provider: str, where: str) -> None:
    key = where.rsplit(".", 1)[1]
    if config.pop(key) is not None:
        raise ConfigurationError(f"{where}: AWS Bedrock is not built into mindgate", hint=_FOREIGN_HINT)


_CONFIG_KEYS: dict[str, Callable[[dict[str, Any], str, str], None]] = {
    "top_k": _top_k,
    "reasoning_effort": _reasoning_effort,
    "is_reasoning_model": _is_reasoning_model,
    "output_dimensionality": _output_dimensionality,
    **dict.fromkeys(_VERTEX_TASK_KEYS, _vertex_task_types),
    "lmstudio_response_format": _lmstudio_response_format,
    "store": _store,
    "response_callback": _response_callback,
    "openrouter_base_url": _openrouter,
    **dict.fromkeys(_IGNORED_PROVIDER_KEYS, _ignored),
    **dict.fromkeys(("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region"), _aws),
}
