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


OPENAI_LISTING = "/v1/models"
"""The ``source`` suffix of a model listed by OpenAI's ``GET /v1/models``: ids only, no types or sizes."""


@dataclass(frozen=True)
class Endpoint:
    """A server (or the in-process engine) whose models mindgate manages.

    ``provider`` is the provider's registered name; its spec names the driver that manages it
    (:func:`~mindgate.providers.management._driver.driver_for`). ``url`` is written as that driver's ``url_form``
    says: the server root (``http://localhost:1234``: LM Studio, Ollama), the API base (``http://host:8000/v1``:
    OpenAI-compatible servers), or None (the in-process engine). ``sdk`` False keeps LM Studio
    on its REST API even when the ``lmstudio`` SDK is installed. ``proxies`` are httpx mount patterns -> proxy
    URL (mem0's ``http_client_proxies``): management requests go through them as inference requests do.
    """

    name: str
    provider: str
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model_path: str | None = None
    n_ctx: int | None = None
    timeout: float = 10.0
    connect_timeout: float = 2.0
    sdk: bool = True
    proxies: tuple[tuple[str, str], ...] = field(default=(), repr=False)

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
    """A progress report of a load. ``fraction`` is the server's own load progress when it reports one
    (LM Studio through its SDK; ``estimated`` False), else estimated from elapsed time against the
    expected load time (model size at ~1 GB/s; ``estimated`` True); 1.0 when done."""

    stage: Literal["checking", "unloading", "loading", "loaded", "reused"]
    model_id: str
    fraction: float | None
    elapsed_s: float
    message: str = ""
    estimated: bool = False


ProgressCallback = Callable[[LoadProgress], None]

GpuOffload = float | Literal["max", "off"]


@dataclass(frozen=True)
class LoadOptions:
    """What ``lms load`` can choose beyond context length and TTL: ``gpu`` (the fraction of layers offloaded to
    the GPU, ``"max"`` or ``"off"``) and ``identifier`` (the instance's name in API calls). None = the
    server's choice."""

    gpu: GpuOffload | None = None
    identifier: str | None = None

    def __bool__(self) -> bool:
        return self.gpu is not None or self.identifier is not None


NO_OPTIONS = LoadOptions()


DownloadState = Literal["downloading", "paused", "completed", "failed", "already_downloaded"]


@dataclass(frozen=True)
class DownloadProgress:
    """A download's state as the server reports it (LM Studio's job status, or Ollama's pull stream).
    ``job_id`` is the server's id (LM Studio) to ask again later; bytes are None when the server has not
    said yet."""

    endpoint: str
    model: str
    status: DownloadState
    job_id: str | None = None
    downloaded_bytes: int | None = None
    total_bytes: int | None = None
    bytes_per_second: float | None = None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "already_downloaded")

    @property
    def fraction(self) -> float | None:
        if self.status in ("completed", "already_downloaded"):
            return 1.0
        if self.total_bytes and self.downloaded_bytes is not None:
            return min(1.0, self.downloaded_bytes / self.total_bytes)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": self.fraction, "done": self.done}


DownloadCallback = Callable[[DownloadProgress], None]
