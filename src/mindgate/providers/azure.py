"""Azure OpenAI: ``{endpoint}/openai/deployments/{deployment}/...?api-version=...`` with an ``api-key`` header.

Settings come from mem0's ``azure_kwargs`` (``api_key``, ``azure_deployment``, ``azure_endpoint``,
``api_version``, ``default_headers``), else the environment: mem0's role-specific variables first
(``LLM_AZURE_*`` for chat, ``EMBEDDING_AZURE_*`` for embeddings), then the usual ``AZURE_OPENAI_API_KEY``,
``AZURE_OPENAI_ENDPOINT``, ``OPENAI_API_VERSION`` / ``AZURE_OPENAI_API_VERSION``. The deployment falls back to
``model`` (as in the OpenAI SDK). ``AZURE_OPENAI_AD_TOKEN`` (an Entra ID token) replaces the key. A missing
setting is a :class:`ConfigurationError` naming the variable.

Documented quirks: a request without ``api-version`` (or to a wrong endpoint path) is HTTP 404
``{"error": {"code": "404", "message": "Resource not found"}}``; an unknown deployment is HTTP 404 with
code ``DeploymentNotFound``; the data-plane API cannot list deployments, so that error lists nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from mindgate.config import ProviderConfig
from mindgate.errors import ConfigurationError, ModelNotFoundError, ProviderError
from mindgate.providers._http_errors import error_code, server_message
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatClient,
    OpenAICompatEmbedder,
    ServerProfile,
    sampling_defaults,
)


class AzureKwargs(BaseModel):
    """mem0's ``azure_kwargs``; each falls back to the usual ``AZURE_OPENAI_*`` variable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api_key: str | None = Field(default=None, repr=False)
    azure_deployment: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    default_headers: dict[str, str] | None = None


class AzureConfig(ProviderConfig):
    """``provider: azure_openai``: the common keys plus ``azure_kwargs`` (no base-URL key: the endpoint is
    ``azure_kwargs.azure_endpoint`` or ``AZURE_OPENAI_ENDPOINT``)."""

    azure_kwargs: AzureKwargs | None = None


PROFILE = ServerProfile(
    provider="azure_openai",
    display="Azure OpenAI",
    start_hint="check `azure_endpoint` (https://RESOURCE.openai.azure.com) and your network connection",
    key_env="AZURE_OPENAI_API_KEY",
    developer_role=True,
    model_hint="use the name of a deployment in your Azure OpenAI resource",
)

_ENV = {
    # setting: (mem0 chat variable, mem0 embedder variable, standard variables...)
    "api_key": ("LLM_AZURE_OPENAI_API_KEY", "EMBEDDING_AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"),
    "azure_deployment": ("LLM_AZURE_DEPLOYMENT", "EMBEDDING_AZURE_DEPLOYMENT", "AZURE_OPENAI_DEPLOYMENT"),
    "azure_endpoint": ("LLM_AZURE_ENDPOINT", "EMBEDDING_AZURE_ENDPOINT", "AZURE_OPENAI_ENDPOINT"),
    "api_version": ("LLM_AZURE_API_VERSION", "EMBEDDING_AZURE_API_VERSION", "OPENAI_API_VERSION",
                    "AZURE_OPENAI_API_VERSION"),
}


@dataclass(frozen=True)
class AzureSettings:
    endpoint: str
    deployment: str
    api_version: str
    api_key: str | None
    ad_token: str | None
    headers: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"{self.endpoint.rstrip('/')}/openai/deployments/{self.deployment}"


def _lookup(kwargs: AzureKwargs, setting: str, role: str) -> str | None:
    value = getattr(kwargs, setting)
    if value:
        return str(value)
    mem0_chat, mem0_embed, *standard = _ENV[setting]
    names = [mem0_chat if role == "chat" else mem0_embed, *standard]
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def _missing(setting: str) -> ConfigurationError:
    standard = " or ".join(_ENV[setting][2:])
    return ConfigurationError(f"provider 'azure_openai' needs {setting.replace('_', ' ')}",
                              hint=f"set azure_kwargs.{setting} in the provider config or {standard}")


def azure_settings(config: AzureConfig, role: str) -> AzureSettings:
    """Resolve the Azure settings for ``role`` (``"chat"`` or ``"embed"``) from the config and environment."""
    kwargs = config.azure_kwargs or AzureKwargs()
    endpoint = _lookup(kwargs, "azure_endpoint", role)
    if not endpoint:
        raise _missing("azure_endpoint")
    deployment = _lookup(kwargs, "azure_deployment", role) or config.model
    if not deployment:
        raise ConfigurationError("provider 'azure_openai' needs a deployment name",
                                 hint="set azure_kwargs.azure_deployment (or `model`) to the deployment's name")
    api_version = _lookup(kwargs, "api_version", role)
    if not api_version:
        raise _missing("api_version")
    api_key = _lookup(kwargs, "api_key", role)
    ad_token = None if api_key else os.environ.get("AZURE_OPENAI_AD_TOKEN")
    if not api_key and not ad_token:
        raise ConfigurationError("provider 'azure_openai' needs an API key",
                                 hint="set azure_kwargs.api_key in the provider config or AZURE_OPENAI_API_KEY "
                                      "(or an Entra ID token in AZURE_OPENAI_AD_TOKEN)")
    headers = {**(kwargs.default_headers or {}), **config.headers}
    return AzureSettings(endpoint, deployment, api_version, api_key, ad_token, headers)


class AzureClient(OpenAICompatClient):
    """The shared client with Azure's 404 forms told apart."""

    def __init__(self, settings: AzureSettings, *, timeout: float, connect_timeout: float,
                 proxy: str | dict[str, str] | None = None) -> None:
        headers = dict(settings.headers)
        if settings.ad_token:
            headers["Authorization"] = f"Bearer {settings.ad_token}"
        super().__init__(settings.base_url, profile=PROFILE, api_key=settings.api_key, headers=headers,
                         params={"api-version": settings.api_version}, timeout=timeout,
                         connect_timeout=connect_timeout, auth_header="api-key", proxy=proxy)
        self.settings = settings

    async def list_models(self) -> list[str]:
        """The data-plane API has no deployment listing."""
        return []

    async def raise_for_status(self, status: int, body: str, headers: Mapping[str, str], *,
                               model: str | None) -> None:
        if status == 404:
            message = server_message(body)
            s = self.settings
            if error_code(body) == "DeploymentNotFound":
                raise ModelNotFoundError(f"deployment {s.deployment!r} does not exist on Azure OpenAI at "
                                         f"{s.endpoint} ({message})", provider=PROFILE.provider, status_code=404,
                                         body=body, hint="check the deployment name under Deployments in the "
                                                         "Azure AI Foundry portal and set azure_kwargs."
                                                         "azure_deployment")
            raise ProviderError(f"Azure OpenAI at {s.endpoint} answered HTTP 404 ({message}) for deployment "
                                f"{s.deployment!r} with api-version {s.api_version}", provider=PROFILE.provider,
                                status_code=404, body=body, retryable=False,
                                hint="check azure_endpoint (https://RESOURCE.openai.azure.com, no path) and "
                                     "api_version (e.g. 2024-10-21)")
        await super().raise_for_status(status, body, headers, model=model)


def _client(config: AzureConfig, role: str) -> AzureClient:
    return AzureClient(azure_settings(config, role), timeout=config.timeout, connect_timeout=config.connect_timeout,
                       proxy=config.http_client_proxies)


def chat_model(config: AzureConfig) -> OpenAICompatChatModel:
    client = _client(config, "chat")
    return OpenAICompatChatModel(client, client.settings.deployment, defaults=sampling_defaults(config),
                                 extra_body=config.model_kwargs)


def embedder(config: AzureConfig) -> OpenAICompatEmbedder:
    client = _client(config, "embed")
    extra = dict(config.model_kwargs)
    if config.embedding_dims and "dimensions" not in extra:
        extra["dimensions"] = config.embedding_dims  # text-embedding-3 deployments can shorten their output
    return OpenAICompatEmbedder(client, client.settings.deployment,
                                embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                                extra_body=extra)


SPEC = ProviderSpec(name="azure_openai", config_model=AzureConfig,
                    display=PROFILE.display, chat_model=chat_model, embedder=embedder,
                    base_url_keys=(), start_hint=PROFILE.start_hint, key_env=PROFILE.key_env,
                    takes_reasoning_effort=True)
