"""Vertex AI: chat through its OpenAI-compatible endpoint, embeddings through the documented ``:predict`` API.

* Chat: ``POST {root}/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions`` with
  model ids ``google/<model>`` (a bare ``gemini-2.5-flash`` gets the ``google/`` prefix).
* Embeddings: ``POST {root}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:predict``
  with ``{"instances": [{"content"}], "parameters": {"outputDimensionality"}}`` ->
  ``predictions[].embeddings.values``. ``gemini-embedding-*`` takes one instance per request, the others up
  to 250. ``model_kwargs`` ``task_type``/``title`` go into each instance, other keys into ``parameters``.
* ``root`` is ``https://{location}-aiplatform.googleapis.com`` (``https://aiplatform.googleapis.com`` for
  ``global``), or ``base_url`` when set. ``project``/``location`` come from the config, else
  ``GOOGLE_CLOUD_PROJECT``/``GOOGLE_CLOUD_LOCATION`` (location defaults to ``us-central1``), else the
  credentials file's project.
* Auth is ``Authorization: Bearer <access token>``: ``api_key`` or ``GOOGLE_ACCESS_TOKEN`` (e.g. from
  ``gcloud auth print-access-token``), or credentials from ``vertex_credentials_json`` (a file path or the
  JSON itself), ``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's application-default file, turned into
  refreshed tokens by the optional ``google-auth`` package. Nothing touches the network until a request.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from mindgate.config import BaseURLConfig
from mindgate.errors import AuthenticationError, ConfigurationError, NetworkError, ProviderError
from mindgate.providers._base import Embedder, Vector
from mindgate.providers._google import GoogleClient
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.openai_compat import OpenAICompatChatModel, ServerProfile, sampling_defaults


class VertexConfig(BaseURLConfig):
    """``provider: vertexai``: the common keys plus the Google Cloud project, region and service-account
    credentials."""

    vertex_credentials_json: str | None = Field(default=None, description="a service-account JSON file")
    project: str | None = None
    location: str | None = None

DEFAULT_LOCATION = "us-central1"
DEFAULT_CHAT_MODEL = "google/gemini-2.5-flash"
DEFAULT_EMBEDDING_MODEL = "text-embedding-005"
TOKEN_ENV = "GOOGLE_ACCESS_TOKEN"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MAX_INSTANCES = 250
_INSTANCE_KEYS = frozenset({"task_type", "title"})
KEY_HINT = (f"set {TOKEN_ENV} (e.g. `gcloud auth print-access-token`; such tokens expire after an hour) or "
            "point GOOGLE_APPLICATION_CREDENTIALS / `vertex_credentials_json` at a service-account file")

PROFILE = ServerProfile(
    provider="vertexai",
    display="Vertex AI",
    start_hint="check your network connection, `location` and `base_url`",
    key_env=TOKEN_ENV,
    model_hint="use a Vertex AI model id (chat: google/gemini-2.5-flash; embeddings: text-embedding-005 or "
               "gemini-embedding-001)",
)


class TokenSource(Protocol):
    async def token(self) -> str: ...


class StaticToken:
    """An access token given as is (it is not refreshed)."""

    def __init__(self, value: str) -> None:
        self.value = value

    async def token(self) -> str:
        return self.value


class GoogleAuthToken:
    """Access tokens from google-auth credentials, refreshed (in a worker thread) when missing or expired."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()  # a thread lock: callers may run on different event loops

    async def token(self) -> str:
        if not self.credentials.valid:
            await asyncio.to_thread(self._refresh)
        return str(self.credentials.token)

    def _refresh(self) -> None:
        import google.auth.exceptions
        import google.auth.transport.requests

        try:
            with self._lock:
                if not self.credentials.valid:
                    self.credentials.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.TransportError as exc:
            raise NetworkError(f"cannot reach Google's token endpoint to refresh Vertex AI credentials: {exc}",
                               url=str(getattr(self.credentials, "_token_uri", "")),
                               hint="check your network connection") from None
        except google.auth.exceptions.RefreshError as exc:
            raise AuthenticationError(f"Google rejected the Vertex AI credentials: {exc}", provider="vertexai",
                                      hint=KEY_HINT, retryable=False) from None


class VertexClient(GoogleClient):
    """Google's error format plus a bearer token fetched per request from a :class:`TokenSource`."""

    def __init__(self, base_url: str, *, tokens: TokenSource, **kwargs: Any) -> None:
        super().__init__(base_url, profile=PROFILE, key_hint=KEY_HINT, **kwargs)
        self.tokens = tokens

    async def request_headers(self) -> dict[str, str] | None:
        return {"Authorization": f"Bearer {await self.tokens.token()}"}

    async def list_models(self) -> list[str]:
        """Vertex AI's OpenAI-compatible endpoint has no model listing."""
        return []


def _load_credentials(source: str) -> tuple[Any, str | None]:
    """google-auth credentials from a service-account or authorized-user JSON (a path or the JSON itself)."""
    try:
        from google.oauth2 import credentials as user_credentials
        from google.oauth2 import service_account
    except ImportError:
        raise ConfigurationError("Vertex AI credentials files need the google-auth package",
                                 hint=f"pip install google-auth, or set {TOKEN_ENV} to an access token") from None
    try:
        text = source if source.lstrip().startswith("{") else Path(source).expanduser().read_text(encoding="utf-8")
        info = json.loads(text)
        kind = info.get("type") if isinstance(info, dict) else None
        if kind == "service_account":
            credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        elif kind == "authorized_user":
            credentials = user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
        else:
            raise ValueError(f"credential type {kind!r} is not supported (use service_account or authorized_user)")
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot load Vertex AI credentials from {source[:200]!r}: {exc}",
                                 hint="give the path of a service-account or authorized-user JSON file") from None
    return credentials, info.get("project_id") or info.get("quota_project_id")


def _adc_file() -> str | None:
    folder = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    path = Path(folder) / "application_default_credentials.json"
    return str(path) if path.is_file() else None


def _tokens(config: VertexConfig) -> tuple[TokenSource, str | None]:
    """The token source and the project the credentials name (if any)."""
    if config.api_key:
        return StaticToken(config.api_key), None
    if config.vertex_credentials_json:
        credentials, project = _load_credentials(config.vertex_credentials_json)
        return GoogleAuthToken(credentials), project
    if os.environ.get(TOKEN_ENV):
        return StaticToken(os.environ[TOKEN_ENV]), None
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or _adc_file()
    if path:
        credentials, project = _load_credentials(path)
        return GoogleAuthToken(credentials), project
    raise ConfigurationError("provider 'vertexai' needs credentials", hint=KEY_HINT)


def _location_path(config: VertexConfig) -> tuple[str, TokenSource]:
    """``{root}/v1/projects/{project}/locations/{location}`` and the token source."""
    tokens, credentials_project = _tokens(config)
    project = config.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or credentials_project
    if not project:
        raise ConfigurationError("provider 'vertexai' needs a Google Cloud project",
                                 hint="set `project` in the provider config or GOOGLE_CLOUD_PROJECT")
    location = config.location or os.environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION
    root = config.base_url_for("vertexai") or (
        "https://aiplatform.googleapis.com" if location == "global" else f"https://{location}-aiplatform.googleapis.com")
    return f"{root.rstrip('/')}/v1/projects/{project}/locations/{location}", tokens


def _client(config: VertexConfig, suffix: str) -> VertexClient:
    base, tokens = _location_path(config)
    return VertexClient(f"{base}{suffix}", tokens=tokens, headers=config.headers, timeout=config.timeout,
                        connect_timeout=config.connect_timeout, proxy=config.http_client_proxies)


class VertexEmbedder(Embedder):
    """Text embeddings over the ``:predict`` API."""

    provider = "vertexai"

    def __init__(self, client: VertexClient, model: str, *, embedding_dims: int | None = None,
                 batch_size: int = 64, model_kwargs: dict[str, Any] | None = None) -> None:
        limit = 1 if model.startswith("gemini-embedding") else MAX_INSTANCES
        super().__init__(model, embedding_dims=embedding_dims, batch_size=min(batch_size, limit))
        self.client = client
        kwargs = dict(model_kwargs or {})
        self.instance_fields = {k: v for k, v in kwargs.items() if k in _INSTANCE_KEYS}
        self.parameters = {k: v for k, v in kwargs.items() if k not in _INSTANCE_KEYS}
        if embedding_dims and "outputDimensionality" not in self.parameters:
            self.parameters["outputDimensionality"] = embedding_dims

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        body: dict[str, Any] = {"instances": [{**self.instance_fields, "content": text} for text in texts]}
        if self.parameters:
            body["parameters"] = self.parameters
        data = await self.client.request_json("POST", f"/{self.model}:predict", body, model=self.model)
        predictions = data.get("predictions") if isinstance(data, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(texts):
            raise ProviderError(f"Vertex AI returned {len(predictions or [])} predictions for {len(texts)} inputs",
                                provider="vertexai", retryable=True)
        try:
            return np.asarray([p["embeddings"]["values"] for p in predictions], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise ProviderError("Vertex AI returned predictions in an unexpected shape (expected "
                                "predictions[].embeddings.values)", provider="vertexai", retryable=False) from None

    async def aclose(self) -> None:
        await self.client.aclose()


def chat_model(config: VertexConfig) -> OpenAICompatChatModel:
    model = config.model or DEFAULT_CHAT_MODEL
    return OpenAICompatChatModel(_client(config, "/endpoints/openapi"), model if "/" in model else f"google/{model}",
                                 defaults=sampling_defaults(config), extra_body=config.model_kwargs)


def embedder(config: VertexConfig) -> VertexEmbedder:
    return VertexEmbedder(_client(config, "/publishers/google/models"), config.model or DEFAULT_EMBEDDING_MODEL,
                          embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                          model_kwargs=config.model_kwargs)


SPEC = ProviderSpec(name="vertexai", config_model=VertexConfig,
                    display=PROFILE.display, chat_model=chat_model, embedder=embedder,
                    start_hint=PROFILE.start_hint, key_env=PROFILE.key_env, takes_reasoning_effort=True)
