"""The whole configuration as pydantic models.

The top level is mem0-shaped (``embedder`` / ``llm`` / ``vector_store``, each ``{"provider", "config"}``)
so a mem0 user's dict works unchanged; mindgate's own sections are ``providers`` (named endpoints),
``routing``, ``gateway``, ``memory``, ``mcp`` (the stdio memory server), ``mcp_servers`` (tool servers the
gateway may run for models) and ``tool_loop``.

Sources, later wins: defaults < YAML file (``--config`` / ``MINDGATE_CONFIG``) or dict < environment
(``MINDGATE_<SECTION>__<KEY>...``, e.g. ``MINDGATE_LLM__CONFIG__MODEL=qwen2.5-7b-instruct``).
Every validation failure becomes a :class:`~mindgate.errors.ConfigurationError` that names the key path
and the valid choices; nothing unknown is silently ignored.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mindgate._env import environment_overrides
from mindgate._mem0_compat import normalize as normalize_mem0
from mindgate._plugins import provider_names
from mindgate._provider_config import AUTO as AUTO
from mindgate._provider_config import RESPONSES_API_DESCRIPTION as RESPONSES_API_DESCRIPTION
from mindgate._provider_config import TTL_DESCRIPTION as TTL_DESCRIPTION
from mindgate._provider_config import AutoConfig as AutoConfig
from mindgate._provider_config import BaseURLConfig as BaseURLConfig
from mindgate._provider_config import EmbedderSection as EmbedderSection
from mindgate._provider_config import EndpointConfig as EndpointConfig
from mindgate._provider_config import LLMSection as LLMSection
from mindgate._provider_config import ProviderConfig as ProviderConfig
from mindgate._provider_config import ResponsesAPI as ResponsesAPI
from mindgate._provider_config import base_url_keys as base_url_keys
from mindgate._provider_config import config_model as config_model
from mindgate._provider_config import model_in
from mindgate._reranker_config import (
    RERANKER_PROVIDERS,
    CrossEncoderRerankerSection,
    LLMRerankerSection,
    RerankerSection,
)
from mindgate.errors import ConfigurationError

_HOST_ENTRY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?")

StoreProviderName = Literal["sqlite", "pgvector"]
STORE_TAGS = get_args(StoreProviderName)
# The defaults of hybrid search and fact-augmented keys, measured together with `bench/retrieval.py` on
# LongMemEval S (each message added by its own call): turn recall@5/@10 over RRF with plain keys, no question
# type lower. `--calibrate` refits them on held-out questions.
FUSION_ALPHA = 0.6
KEY_CONTEXT_WEIGHT = 0.5
KEY_FACTS_WEIGHT = 1.5
TIME_WEIGHT = 0.2
SPEAKER_WEIGHT = 0.4

def mindgate_home() -> Path:
    """``MINDGATE_HOME`` or ``~/.mindgate``: where the embedded store and state live."""
    return Path(os.environ.get("MINDGATE_HOME") or Path.home() / ".mindgate").expanduser()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class SQLiteStoreConfig(_Strict):
    path: str | None = Field(default=None, description="database file; default MINDGATE_HOME/<collection>.db")
    collection_name: str = Field(default="memory", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    embedding_model_dims: int | None = Field(default=None, gt=0)
    busy_timeout_ms: int = Field(default=30_000, gt=0)
    vector_cache_mb: int | None = Field(default=None, ge=0, description="memory (MiB) for in-memory copies of "
                                        "searched scopes' vectors (exact search, ~0.6 ms less per search of a "
                                        "1,000-memory scope); default 1/8 of RAM (or of a container's limit), "
                                        "256 MiB..4 GiB; 0 = off")

    def resolved_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        return mindgate_home() / f"{self.collection_name}.db"


class PgVectorStoreConfig(_Strict):
    dsn: str | None = Field(default=None, repr=False)
    connection_string: str | None = Field(default=None, repr=False, description="mem0's name for dsn")
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    sslmode: str | None = Field(default=None, description="libpq sslmode, e.g. require")
    collection_name: str = Field(default="memory", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
    embedding_model_dims: int | None = Field(default=None, gt=0)
    minconn: int = Field(default=1, ge=0)
    maxconn: int = Field(default=8, gt=0)
    hnsw: bool = True
    connect_timeout: float = Field(default=5.0, gt=0)


class SQLiteStoreSection(_Strict):
    provider: Literal["sqlite"] = "sqlite"
    config: SQLiteStoreConfig = Field(default_factory=SQLiteStoreConfig)


class PgVectorStoreSection(_Strict):
    provider: Literal["pgvector"]
    config: PgVectorStoreConfig = Field(default_factory=PgVectorStoreConfig)


VectorStoreSection = Annotated[SQLiteStoreSection | PgVectorStoreSection, Field(discriminator="provider")]


class TargetConfig(_Strict):
    """One step of a fallback chain: an endpoint (a name under ``providers:`` or a provider name).

    A plain string is shorthand for ``endpoint[:model]``, e.g. ``"lan:qwen2.5-7b-instruct"`` or
    ``"ollama:llama3.2:latest"`` (split at the first colon)."""

    endpoint: str
    model: str | None = None
    name: str | None = Field(default=None, description="shown in status; default endpoint[:model]")
    timeout: float | None = Field(default=None, gt=0)
    first_token_timeout: float | None = Field(default=None, gt=0)
    context_length: int | None = Field(default=None, gt=0)
    min_free_memory: ByteSize | None = Field(default=None, description="tiers: free memory this target needs, "
                                             "e.g. 6GiB; list a chain's targets large to small")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            endpoint, _, model = data.partition(":")
            return {"endpoint": endpoint, "model": model or None}
        return data

    @property
    def display_name(self) -> str:
        return self.name or (f"{self.endpoint}:{self.model}" if self.model else self.endpoint)


class ChainConfig(_Strict):
    targets: list[TargetConfig] = Field(min_length=1)
    mcp_servers: list[str] = Field(default_factory=list, description="tool servers (names under mcp_servers) "
                                   "offered on every chat request routed to this chain")
    retries: int = Field(default=2, ge=0, le=10)
    backoff_base: float = Field(default=0.25, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown: float = Field(default=30.0, gt=0)


class SemanticRouteConfig(_Strict):
    name: str
    utterances: list[str] = Field(min_length=1)
    target: str = Field(description="a chain name, or endpoint[:model]")
    threshold: float = Field(default=0.5, ge=-1, le=1)


class RoutingConfig(_Strict):
    chains: dict[str, ChainConfig] = Field(default_factory=dict)
    default: str = Field(default="auto", description="chain used when no route matches")
    routes: list[SemanticRouteConfig] = Field(default_factory=list)
    health_check_interval: float | None = Field(default=None, gt=0)


class ResourcesConfig(_Strict):
    """How mindgate watches the machine's memory and switches models by it."""

    sample_interval: float = Field(default=1.0, gt=0, le=3600, description="seconds between background readings "
                                   "of free RAM/VRAM")
    fit_routing: bool = Field(default=True, description="before routing to a local model that is not loaded, "
                              "check that it fits free memory")
    evict_idle: bool = Field(default=True, description="unload idle models, least recently used first, to make "
                             "room for a model that does not fit")
    pinned: list[str] = Field(default_factory=list, description="models or instances never unloaded to make room")
    reserve: ByteSize = Field(default=ByteSize(0), description="memory always left free, e.g. 512MiB")
    tier_hysteresis: float = Field(default=0.15, ge=0, le=4, description="a larger tier comes back only when its "
                                   "min_free_memory is exceeded by this fraction")
    tier_recover_after: float = Field(default=30.0, ge=0, description="seconds that margin must hold before "
                                      "going back up a tier")


class ApiKeyConfig(_Strict):
    """A gateway API key: give ``key`` (plain, hashed on load) or ``key_sha256``."""

    name: str = "default"
    key: str | None = Field(default=None, repr=False)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    users: list[str] | None = Field(default=None, description="users this key may act for; None = any")
    models: list[str] | None = None
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    mcp_servers: list[str] | None = Field(default=None, description="tool servers this key may use; None = all")
    mcp_tools: list[str] | None = Field(default=None, description="`server.tool` names this key may use; "
                                        "None = all tools of its servers")

    @model_validator(mode="after")
    def _one_key(self) -> ApiKeyConfig:
        if not (self.key or self.key_sha256):
            raise ValueError("an API key needs `key` or `key_sha256`")
        return self


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8741, ge=0, le=65535)
    allow_remote: bool = Field(default=False, description="must be true to bind a non-loopback host")
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list, description="names besides localhost and loopback IPs "
                                     "that a request's Host may give on a loopback bind (`name`, `name:port`, or `*`)")
    memory: bool = Field(default=True, description="memory-augmented chat when a request names a user")
    mcp: bool = Field(default=True, description="serve memory as an MCP server (streamable HTTP) at /mcp")
    log_contents: bool = False
    docs: bool = Field(default=True, description="serve /docs, /redoc and /openapi.json (behind the API keys)")
    keep_alive_s: float = Field(default=65.0, gt=0, le=3600,
                                description="idle keep-alive; above client pools' expiry (5 s for httpx)")
    header_timeout_s: float = Field(default=10.0, gt=0, le=600,
                                    description="time a connection has to send a request's complete headers")
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600,
                                  description="time an admitted request has to send its complete body")
    max_connections: int = Field(default=512, gt=0, le=1_000_000,
                                 description="open connections beyond this are answered 503 with Retry-After")
    allow_any_model: bool = Field(default=False, description="without API keys, let requests name (and so "
                                  "load) any downloaded model, not only loaded ones and those the config names")
    store_responses: bool = Field(default=True, description="keep /v1/responses answers sent with store: true")
    response_retention_days: float | None = Field(default=30.0, gt=0,
                                                  description="days a stored response is kept; null: forever")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*" and not _HOST_ENTRY.fullmatch(entry):
                raise ValueError(f"{entry!r} is not a host name, host:port or *: "
                                 "e.g. mindgate.lan or mindgate.lan:8741")
        return value


class MemorySettings(_Strict):
    custom_instructions: str | None = Field(default=None, description="extra fact-extraction guidance")
    similar_memories: int = Field(default=5, ge=0, le=50, description="existing memories shown to the LLM")
    search_limit: int = Field(default=10, gt=0)
    candidates: int = Field(default=50, gt=0, description="per-retriever candidates before fusion")
    fusion: Literal["convex", "rrf"] = Field(default="convex", description="how vector and text ranks are fused")
    fusion_alpha: float = Field(default=FUSION_ALPHA, ge=0, le=1, description="convex fusion: weight of the "
                                "vector score (calibrated on held-out LongMemEval questions)")
    rrf_k: int = Field(default=60, gt=0)
    query_cache: int = Field(default=1024, ge=0, description="query embeddings kept for repeated searches")
    search_threads: int | None = Field(default=None, gt=0, le=256, description="threads searches run in, at a "
                                       "lower CPU priority than the event loop; default: one fewer than the cores")
    recency: bool = Field(default=False, description="rank newer memories higher among relevant ones")
    key_context: bool = Field(default=False, description="index a message stored from a conversation with "
                              "its previous turn (vector key = text + weighted context); changing it asks "
                              "for `mindgate reindex`")
    key_context_weight: float = Field(default=KEY_CONTEXT_WEIGHT, ge=0, le=2,
                                      description="weight of the previous turn in a key (key_context)")
    key_context_window: float = Field(default=1800.0, gt=0, description="seconds between two messages of "
                                      "one scope for the earlier to be the later one's key context")
    key_facts: bool = Field(default=True, description="index a user message stored from a conversation with "
                            "its first-person statements (vector key = text + weighted facts); a store built "
                            "without them is searched as it is unless this is set explicitly, and changing it "
                            "asks for `mindgate reindex`")
    key_facts_weight: float = Field(default=KEY_FACTS_WEIGHT, ge=0, le=4,
                                    description="weight of the fact sentences in a key (key_facts)")
    expansion_weight: float = Field(default=1.0, ge=0, le=4, description="comparison questions (\"between X and "
                                    "Y\", \"..., X or Y?\"): weight of each compared part searched on its own; 0 "
                                    "turns it off")
    time_aware: bool = Field(default=True, description="boost memories from the times a query names "
                             "(\"last week\", \"in May\", \"3 days ago\") relative to its reference time")
    time_weight: float = Field(default=TIME_WEIGHT, ge=0, le=2, description="weight of the time signal")
    speaker_weight: float = Field(default=SPEAKER_WEIGHT, ge=0, le=2, description="weight of the speaker signal: "
                                  "memories stored from the role a query asks about (the user's own words for "
                                  "\"my ...\", the assistant's for \"you recommended ...\"); 0 turns it off")
    inject_limit: int = Field(default=5, ge=0)
    inject_token_budget: int = Field(default=512, ge=0)
    mode: Literal["inject", "tool"] = Field(default="inject", description="chat memory: inject memories into "
                                            "the prompt, or offer the model a search_memory tool")


class McpServerConfig(_Strict):
    """A tool server the gateway may run for models: a stdio ``command`` or a streamable-HTTP ``url``."""

    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="added to a minimal environment (no secrets "
                                "of the gateway's own environment are passed on)")
    cwd: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    tools: list[str] | None = Field(default=None, description="tools offered to models; None = all it lists")
    timeout: float = Field(default=30.0, gt=0, description="seconds one tool call may take")
    connect_timeout: float = Field(default=30.0, gt=0, description="seconds to start or reach the server")
    max_output_chars: int = Field(default=16_000, gt=0, description="a longer tool result is cut to this")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of `command` (a stdio server) or `url` (a streamable-HTTP server)")
        return self


class ToolLoopSettings(_Strict):
    """The gateway's server-side tool loop (MCP tools, and ``memory.mode: tool``)."""

    max_steps: int = Field(default=6, ge=1, le=50, description="model calls that may request tools, per request")
    max_calls_per_step: int = Field(default=8, ge=1, le=64)


ContextPolicyName = Literal["auto", "error", "truncate", "summarize", "memory"]


class ContextSettings(_Strict):
    """How conversations are fitted to the serving model's window (docs/context.md).

    ``policy`` ``auto`` means ``summarize`` when a summariser is available, else ``truncate``. ``routes`` and
    ``models`` override it per chain / semantic route name and per model (the request's ``model`` or a
    target's name or model id); a request overrides all of them (``X-Mindgate-Context`` header or the
    body's ``mindgate.context``)."""

    policy: ContextPolicyName = "auto"
    reserve: int = Field(default=64, ge=0, description="tokens kept free besides max_tokens")
    summarizer: str | None = Field(default=None, description="chain name or endpoint[:model]; default: the "
                                                             "cheapest local target of the serving chain")
    summary_tokens: int = Field(default=256, gt=0, le=8192,
                                description="cap of the summary, of the verbatim facts and of the recalled block, "
                                            "each at most 1/8 of the target's prompt budget")
    keep_ratio: float = Field(default=0.4, gt=0, le=1, description="share of the room recent turns keep "
                                                                   "after a new summary or memory cut")
    recall_limit: int = Field(default=5, ge=0, le=50)
    routes: dict[str, ContextPolicyName] = Field(default_factory=dict)
    models: dict[str, ContextPolicyName] = Field(default_factory=dict)


class McpSettings(_Strict):
    """``mindgate mcp`` (memory as an MCP server on stdio): whose memories it serves when the command line
    names no scope (``--user`` / ``--agent`` / ``--run`` win over these)."""

    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    agent_id: str | None = Field(default=None, min_length=1, max_length=256)
    run_id: str | None = Field(default=None, min_length=1, max_length=256)
    read_only: bool = Field(default=False, description="offer only the tools that do not change memory")


class MindgateConfig(_Strict):
    """The whole configuration."""

    version: str | None = Field(default=None, description="accepted for mem0 compatibility")
    embedder: EmbedderSection = Field(default_factory=EmbedderSection)
    embedders: dict[str, EmbedderSection] = Field(
        default_factory=dict, description="more embedders, by name, for /v1/embeddings requests naming them")
    llm: LLMSection = Field(default_factory=LLMSection)
    vector_store: VectorStoreSection = Field(default_factory=SQLiteStoreSection)
    providers: dict[str, EndpointConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    context: ContextSettings = Field(default_factory=ContextSettings)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    mcp: McpSettings = Field(default_factory=McpSettings)
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    tool_loop: ToolLoopSettings = Field(default_factory=ToolLoopSettings)
    reranker: RerankerSection | None = Field(default=None, description="rerank search's fused candidates")

    @model_validator(mode="before")
    @classmethod
    def _store_provider_default(cls, data: Any) -> Any:
        store = data.get("vector_store") if isinstance(data, dict) else None
        if isinstance(store, dict) and "provider" not in store:
            data = {**data, "vector_store": {**store, "provider": "sqlite"}}
        return data

    @field_validator("providers")
    @classmethod
    def _endpoint_names(cls, value: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        for name in value:
            if name == AUTO or name in provider_names():
                raise ValueError(f"endpoint name {name!r} shadows the provider of the same name; rename it")
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, value: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
                raise ValueError(f"MCP server name {name!r} must be 1-32 letters, digits, '_' or '-'")
        return value

    @model_validator(mode="after")
    def _mcp_names(self) -> MindgateConfig:
        known = set(self.mcp_servers)
        named = [(f"routing.chains.{c}", chain.mcp_servers) for c, chain in self.routing.chains.items()]
        named += [(f"gateway.api_keys[{k.name}]", k.mcp_servers or []) for k in self.gateway.api_keys]
        for where, names in named:
            unknown = sorted(set(names) - known)
            if unknown:
                raise ValueError(f"{where}.mcp_servers names {', '.join(unknown)}, not configured under "
                                 f"mcp_servers (configured: {', '.join(sorted(known)) or 'none'})")
        return self

    # -- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None, *, env: bool = True) -> MindgateConfig:
        """Validate a mem0-shaped dict (mem0's key names mapped by :mod:`mindgate._mem0_compat`), applying
        ``MINDGATE_*`` overrides when ``env`` is true."""
        merged: dict[str, Any] = dict(data or {})
        if env:
            merged = _deep_merge(merged, environment_overrides(cls.model_fields))
        merged = normalize_mem0(merged)
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise _configuration_error(exc, cls) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, env: bool = True) -> MindgateConfig:
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read config file {file}: {exc.strerror}",
                                     hint="pass an existing YAML file with --config or MINDGATE_CONFIG") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"config file {file} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"config file {file} must hold a mapping at the top level, "
                                     f"not {type(data).__name__}")
        return cls.from_dict(data, env=env)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> MindgateConfig:
        """``path``, else ``MINDGATE_CONFIG``, else defaults; environment overrides applied."""
        path = path or os.environ.get("MINDGATE_CONFIG")
        return cls.from_file(path) if path else cls.from_dict({})


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# discriminated unions: the tag pydantic puts in an error's location after these keys is left out of the path
_TAGS: dict[str, tuple[str, ...]] = {"vector_store": STORE_TAGS, "reranker": RERANKER_PROVIDERS}


def _configuration_error(exc: ValidationError, model: type[BaseModel]) -> ConfigurationError:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-after", "function-before"))]
        loc = [p for i, p in enumerate(loc) if not (i and p in _TAGS.get(loc[i - 1], ()))]
        path = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            tag = err["loc"][1] if len(err["loc"]) > 1 and err["loc"][0] in _TAGS else None
            valid = _fields_at(model, loc[:-1], str(tag) if tag else None)
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            did_you_mean = f" (did you mean `{close[0]}`?)" if close else ""
            lines.append(f"{path}: unknown key{did_you_mean}; valid keys: {', '.join(valid)}")
        elif err["type"] == "provider_key":  # already names the key, the provider and its keys
            lines.append(f"{path}: {err['msg']}")
        elif err["type"] == "union_tag_invalid":
            lines.append(f"{path}.provider: {err['input'].get('provider')!r} is not a valid choice; "
                         f"valid providers: {', '.join(_TAGS.get(path, STORE_TAGS))}")
        elif err["type"] == "literal_error":
            lines.append(f"{path}: {err['input']!r} is not a valid choice; {err['msg'].replace('Input', 'it')}")
        else:
            lines.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
    return ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines))


def _fields_at(model: type[BaseModel], loc: list[str], tag: str | None = None) -> list[str]:
    """Field names of the model found by walking ``loc`` (best effort, for error messages)."""
    current: Any = model
    for part in loc:
        if current is SQLiteStoreSection and tag == "pgvector":
            current = PgVectorStoreSection
        if current is CrossEncoderRerankerSection and tag == "llm_reranker":
            current = LLMRerankerSection
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = model_in(field.annotation)
        elif current is not None:
            # a dict[str, Model] value: the key is a free name, the model follows
            continue
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


