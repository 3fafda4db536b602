"""The common records of model management: endpoints, catalog entries, endpoint health, load progress.

Every provider's listing is normalised into :class:`ModelInfo`, so callers never see a vendor's shape.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

ManagedProvider = Literal["lmstudio", "ollama", "openai_compatible", "local"]


class ModelType(StrEnum):
    LLM = "llm"
    EMBEDDING = "embedding"
    VLM = "vlm"


class ModelState(StrEnum):
    LOADED = "loaded"
    NOT_LOADED = "not-loaded"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Capabilities:
    """What a model can do; None where the provider does not say."""

    tool_use: bool | None = None
    vision: bool | None = None
    reasoning: bool | None = None


@dataclass(frozen=True)
class LoadedInstance:
    """One loaded copy of a model. ``expires_at`` is an ISO time (Ollama) when the server reports one."""

    id: str
    context_length: int | None = None
    expires_at: str | None = None
    size_vram_bytes: int | None = None
    ttl: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A model on one endpoint, in the same shape whatever the provider.

    ``source`` names the API the facts came from (e.g. ``"lmstudio /api/v1/models"``) so a reader knows
    how much to trust them. Shape numbers (``n_layers`` ...) are filled when the provider publishes them
    (GGUF metadata, Ollama ``/api/show``) and feed the memory estimate.
    """

    provider: str
    endpoint: str
    id: str
    type: ModelType = ModelType.LLM
    state: ModelState = ModelState.UNKNOWN
    max_context_length: int | None = None
    loaded_context_length: int | None = None
    size_bytes: int | None = None
    quantization: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    source: str = ""
    architecture: str | None = None
    instances: tuple[LoadedInstance, ...] = ()
    path: str | None = None
    kv_elements_per_token: int | None = None

    @property
    def loaded(self) -> bool:
        return self.state is ModelState.LOADED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class Endpoint:
    """A server (or the in-process engine) whose models mindgate manages.

    ``url`` is the server root for ``lmstudio`` / ``ollama`` (``http://localhost:1234``), the API base for
    ``openai_compatible`` (``http://host:8000/v1``), and None for ``local``.
    """

    name: str
    provider: ManagedProvider
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model_path: str | None = None
    n_ctx: int | None = None
    timeout: float = 10.0
    connect_timeout: float = 2.0

    @property
    def on_this_machine(self) -> bool:
        """True for the local engine and for servers on a loopback address (their memory is ours)."""
        if self.provider == "local" or self.url is None:
            return True
        host = urlsplit(self.url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class EndpointStatus:
    """Whether an endpoint answered the last listing, which API it used, and the error when it did not."""

    endpoint: Endpoint
    reachable: bool
    api: str | None = None
    error: str | None = None
    latency_s: float | None = None
    model_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint.name, "provider": self.endpoint.provider, "url": self.endpoint.url,
                "reachable": self.reachable, "api": self.api, "error": self.error, "latency_s": self.latency_s,
                "model_count": self.model_count}


@dataclass(frozen=True)
class LoadProgress:
    """A progress report of a load. ``fraction`` is estimated from elapsed time against the expected
    load time (model size at ~1 GB/s) while the server gives no progress; 1.0 when done."""

    stage: Literal["checking", "unloading", "loading", "loaded", "reused"]
    model_id: str
    fraction: float | None
    elapsed_s: float
    message: str = ""


ProgressCallback = Callable[[LoadProgress], None]
