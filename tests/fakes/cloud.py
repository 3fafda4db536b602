"""CONTRACT FAKES of cloud model APIs that cannot be reached from the tests: OpenAI, Azure OpenAI, the Gemini
API's OpenAI-compatible endpoint, Vertex AI (OpenAI-compatible chat, ``:predict`` embeddings, an OAuth2 token
endpoint), Together AI, and Hugging Face's TEI and TGI servers. None of them is the vendor: each is a small
real HTTP server on 127.0.0.1 answering with the request/response and error shapes the vendor documents,
including the quirks the adapters must handle (listed per class). Answers are deterministic (see
:mod:`fakes._openai`): chat echoes the last user message, embeddings are hash-seeded unit vectors.

Shared knobs: ``rate_limit_next`` (answer that many requests with the vendor's 429 first), ``reply`` /
``tool_calls`` (chat answers), ``requests`` (every request received, by the harness).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._openai import OpenAISurface, hash_embedding, openai_error
from ._server import FakeServer

Handler = Callable[[Request], Awaitable[Response]]


class _Vendor(OpenAISurface, FakeServer):
    def __init__(self) -> None:
        FakeServer.__init__(self)
        self._init_surface()
        self.rate_limit_next = 0
        self.headers_seen: list[dict[str, str]] = []

    def _limited(self) -> bool:
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return True
        return False

    async def _json(self, request: Request) -> dict[str, Any]:
        self.headers_seen.append(dict(request.headers))
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _inputs(body: dict[str, Any]) -> list[str] | None:
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        return inputs if isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs) else None


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value[7:] if value.lower().startswith("bearer ") else None


OPENAI_CHAT_FIELDS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens", "max_completion_tokens",
    "n", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "store", "metadata", "service_tier",
    "reasoning_effort", "modalities", "audio", "prediction", "web_search_options", "safety_identifier",
    "prompt_cache_key", "verbosity", "functions", "function_call",
})


class OpenAIFake(_Vendor):
    """OpenAI (``/v1/models``, ``/v1/chat/completions``, ``/v1/embeddings``). Quirks: no key is 401 with
    ``code: null``, a wrong key 401 ``invalid_api_key`` (key shown masked); an unknown model is 404
    ``model_not_found``; 429 ``rate_limit_exceeded`` with ``retry-after`` and ``x-ratelimit-reset-requests``;
    ``dimensions`` works for text-embedding-3 models and is a 400 for text-embedding-ada-002; a chat
    request with an argument OpenAI does not know (e.g. ``top_k``) is a 400 "Unrecognized request argument
    supplied"."""

    def __init__(self, api_key: str = "sk-test-0123456789abcdef") -> None:
        super().__init__()
        self.api_key = api_key
        self.chat_models = ["gpt-4o-mini", "gpt-4o"]
        self.embedding_models = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                                 "text-embedding-ada-002": 1536}

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/models", self._models, methods=["GET"]),
                                 Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                 Route("/v1/embeddings", self._embeddings, methods=["POST"])])

    def _guard(self, request: Request) -> Response | None:
        key = _bearer(request)
        if not key:
            return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if key != self.api_key:
            return openai_error(401, f"Incorrect API key provided: {key[:3]}*****{key[-4:]}. You can find your API "
                                     "key at https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        if self._limited():
            return JSONResponse({"error": {"message": "Rate limit reached for requests per min (RPM): Limit 3, "
                                                      "Used 3, Requested 1. Please try again in 2s.",
                                           "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
                                status_code=429, headers={"retry-after": "2", "x-ratelimit-reset-requests": "2s"})
        return None

    @staticmethod
    def _no_model(name: str) -> Response:
        return openai_error(404, f"The model `{name}` does not exist or you do not have access to it.",
                            code="model_not_found")

    async def _models(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        ids = [*self.chat_models, *self.embedding_models]
        return JSONResponse({"object": "list", "data": [{"id": i, "object": "model", "created": 1715367049,
                                                         "owned_by": "system"} for i in ids]})

    async def _chat(self, request: Request) -> Response:
        body = await self._json(request)
        if (denied := self._guard(request)) is not None:
            return denied
        unknown = sorted(set(body) - OPENAI_CHAT_FIELDS)
        if unknown:  # OpenAI's documented behaviour for an argument its API does not have
            return openai_error(400, f"Unrecognized request argument supplied: {unknown[0]}")
        if body.get("model") not in self.chat_models:
            return self._no_model(str(body.get("model")))
        return self.chat_response(body, str(body["model"]))

    async def _embeddings(self, request: Request) -> Response:
        body = await self._json(request)
        if (denied := self._guard(request)) is not None:
            return denied
        name = str(body.get("model"))
        if name not in self.embedding_models:
            return self._no_model(name)
        inputs = self._inputs(body)
        if inputs is None:
            return openai_error(400, "'$.input' is invalid. Please check the API reference.")
        dims = self.embedding_models[name]
        if body.get("dimensions") is not None:
            if not name.startswith("text-embedding-3"):
                return openai_error(400, "This model does not support specifying dimensions.", param="dimensions")
            dims = int(body["dimensions"])
        return self.embeddings_response(inputs, name, dims)


class AzureOpenAIFake(_Vendor):
    """Azure OpenAI (``/openai/deployments/{deployment}/chat/completions|embeddings?api-version=``). Quirks:
    the key goes in an ``api-key`` header (an Entra ID ``Authorization: Bearer`` token also works); a bad key
    is 401 ``{"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API
    endpoint..."}}``; no ``api-version`` is 404 ``Resource not found``; an unknown deployment is 404
    ``DeploymentNotFound``; 429 names the retry delay and sends ``retry-after``. Error bodies have ``code``
    and ``message`` only."""

    def __init__(self, api_key: str = "azure-key-123", ad_token: str = "entra-token-456") -> None:
        super().__init__()
        self.api_key = api_key
        self.ad_token = ad_token
        self.deployments: dict[str, int | None] = {"gpt4o-prod": None, "embed-small": 1536}
        self.api_versions_seen: list[str] = []

    def build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/openai/deployments/{deployment}/chat/completions", self._handler(chat=True), methods=["POST"]),
            Route("/openai/deployments/{deployment}/embeddings", self._handler(chat=False), methods=["POST"])])

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)

    def _handler(self, *, chat: bool) -> Handler:
        async def handle(request: Request) -> Response:
            body = await self._json(request)
            if request.headers.get("api-key") != self.api_key and _bearer(request) != self.ad_token:
                return self._error(401, "401", "Access denied due to invalid subscription key or wrong API "
                                               "endpoint. Make sure to provide a valid key for an active "
                                               "subscription and use a correct regional API endpoint for your "
                                               "resource.")
            version = request.query_params.get("api-version")
            if not version:
                return self._error(404, "404", "Resource not found")
            self.api_versions_seen.append(version)
            deployment = request.path_params["deployment"]
            if deployment not in self.deployments or (self.deployments[deployment] is None) != chat:
                return self._error(404, "DeploymentNotFound", "The API deployment for this resource does not "
                                   "exist. If you created the deployment within the last 5 minutes, please wait "
                                   "a moment and try again.")
            if self._limited():
                operation = "ChatCompletions_Create" if chat else "Embeddings_Create"
                return self._error(429, "429", f"Requests to the {operation} Operation under Azure OpenAI API "
                                   f"version {version} have exceeded token rate limit of your current OpenAI S0 "
                                   "pricing tier. Please retry after 6 seconds.", headers={"retry-after": "6"})
            if chat:
                return self.chat_response(body, deployment)
            inputs = self._inputs(body)
            if inputs is None:
                return self._error(400, "BadRequest", "'$.input' is invalid.")
            return self.embeddings_response(inputs, deployment, int(body.get("dimensions") or
                                                                    self.deployments[deployment] or 0))
        return handle


def _google_error(status: int, state: str, message: str, details: list[dict[str, Any]] | None = None, *,
                  listed: bool) -> Response:
    error = {"error": {"code": status, "message": message, "status": state, **({"details": details} if details
                                                                               else {})}}
    return JSONResponse([error] if listed else error, status_code=status)


class GeminiFake(_Vendor):
    """The Gemini API's OpenAI-compatible endpoint (``/v1beta/openai/models|chat/completions|embeddings``).
    Quirks: error bodies are Google's format wrapped in a one-element list; a bad key is HTTP 400
    ``INVALID_ARGUMENT`` with ``ErrorInfo.reason`` ``API_KEY_INVALID``; an unknown model is 404 ``NOT_FOUND``;
    429 ``RESOURCE_EXHAUSTED`` gives the wait only as ``RetryInfo.retryDelay``; ``/models`` ids carry a
    ``models/`` prefix. ``honor_dimensions`` decides whether ``dimensions`` shortens embeddings (the
    compatibility layer does not document it)."""

    PREFIX = "/v1beta/openai"

    def __init__(self, api_key: str = "AIza-test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.chat_models = ["gemini-2.5-flash", "gemini-2.5-pro"]
        self.embedding_models = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
        self.honor_dimensions = True

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route(f"{self.PREFIX}/models", self._models, methods=["GET"]),
                                 Route(f"{self.PREFIX}/chat/completions", self._chat, methods=["POST"]),
                                 Route(f"{self.PREFIX}/embeddings", self._embeddings, methods=["POST"])])

    def _guard(self, request: Request) -> Response | None:
        if _bearer(request) != self.api_key:
            return _google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}],
                listed=True)
        if self._limited():
            return _google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your "
                                 "plan and billing details.", [
                                     {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}],
                                 listed=True)
        return None

    @staticmethod
    def _no_model(name: str) -> Response:
        return _google_error(404, "NOT_FOUND", f"models/{name} is not found for API version v1beta, or is not "
                             "supported for generateContent. Call ListModels to see the list of available models "
                             "and their supported methods.", listed=True)

    async def _models(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        ids = [*self.chat_models, *self.embedding_models]
        return JSONResponse({"object": "list", "data": [{"id": f"models/{i}", "object": "model",
                                                         "owned_by": "google"} for i in ids]})

    async def _chat(self, request: Request) -> Response:
        body = await self._json(request)
        if (denied := self._guard(request)) is not None:
            return denied
        name = str(body.get("model", "")).removeprefix("models/")
        if name not in self.chat_models:
            return self._no_model(name)
        return self.chat_response(body, name)

    async def _embeddings(self, request: Request) -> Response:
        body = await self._json(request)
        if (denied := self._guard(request)) is not None:
            return denied
        name = str(body.get("model", "")).removeprefix("models/")
        if name not in self.embedding_models:
            return self._no_model(name)
        inputs = self._inputs(body)
        if inputs is None or len(inputs) > 100:
            return _google_error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: at most 100 "
                                 "requests can be in one batch", listed=True)
        dims = self.embedding_models[name]
        if self.honor_dimensions and body.get("dimensions"):
            dims = int(body["dimensions"])
        return self.embeddings_response(inputs, name, dims)


class VertexFake(_Vendor):
    """Vertex AI for one project: OpenAI-compatible chat at ``/v1/projects/{p}/locations/{l}/endpoints/openapi/
    chat/completions`` (models named ``google/<id>``), embeddings at ``/v1/projects/{p}/locations/{l}/publishers/
    google/models/{model}:predict`` (``instances[{content, task_type?}]`` -> ``predictions[].embeddings.values``,
    ``parameters.outputDimensionality``; ``gemini-embedding-001`` takes one instance per request, others up to
    250), and a Google OAuth2 token endpoint at ``/token`` (JWT-bearer grant, as service-account credentials
    use) that mints access tokens. Quirks: every call needs ``Authorization: Bearer <token>`` (else 401
    ``UNAUTHENTICATED``); another project is 403 ``PERMISSION_DENIED``; an unknown publisher model is 404;
    errors on the OpenAI-compatible endpoint are list-wrapped, on ``:predict`` they are not."""

    def __init__(self, project: str = "demo-project", token: str = "ya29.static-token") -> None:
        super().__init__()
        self.project = project
        self.tokens = {token}
        self.chat_models = ["google/gemini-2.5-flash", "google/gemini-2.0-flash-001"]
        self.embedding_models = {"text-embedding-005": 768, "gemini-embedding-001": 3072}
        self.token_grants: list[dict[str, Any]] = []

    def build_app(self) -> Starlette:
        base = "/v1/projects/{project}/locations/{location}"
        return Starlette(routes=[Route(f"{base}/endpoints/openapi/chat/completions", self._chat, methods=["POST"]),
                                 Route(f"{base}/publishers/google/models/{{model}}:predict", self._predict,
                                       methods=["POST"]),
                                 Route("/token", self._token, methods=["POST"])])

    def _guard(self, request: Request, *, listed: bool) -> Response | None:
        if _bearer(request) not in self.tokens:
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                                 "OAuth 2 access token, login cookie or other valid authentication credential.",
                                 listed=listed)
        project = request.path_params["project"]
        if project != self.project:
            return _google_error(403, "PERMISSION_DENIED", f"Permission 'aiplatform.endpoints.predict' denied on "
                                 f"resource '//aiplatform.googleapis.com/projects/{project}/locations/"
                                 f"{request.path_params['location']}' (or it may not exist).", listed=listed)
        if self._limited():
            return _google_error(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later.",
                                 listed=listed)
        return None

    async def _chat(self, request: Request) -> Response:
        body = await self._json(request)
        if (denied := self._guard(request, listed=True)) is not None:
            return denied
        if body.get("model") not in self.chat_models:
            return _google_error(404, "NOT_FOUND", f"Publisher Model `{body.get('model')}` was not found or your "
                                 "project does not have access to it.", listed=True)
        return self.chat_response(body, str(body["model"]))

    async def _predict(self, request: Request) -> Response:
        body = await self._json(request)
        if (denied := self._guard(request, listed=False)) is not None:
            return denied
        model = request.path_params["model"]
        if model not in self.embedding_models:
            path = f"projects/{self.project}/locations/{request.path_params['location']}/publishers/google/models/"
            return _google_error(404, "NOT_FOUND", f"Publisher Model `{path}{model}` not found.", listed=False)
        instances = body.get("instances")
        limit = 1 if model.startswith("gemini-embedding") else 250
        if not isinstance(instances, list) or not instances or len(instances) > limit:
            return _google_error(400, "INVALID_ARGUMENT", f"Unable to submit request because the model supports "
                                 f"up to {limit} instances per request.", listed=False)
        if not all(isinstance(i, dict) and isinstance(i.get("content"), str) for i in instances):
            return _google_error(400, "INVALID_ARGUMENT", "instances[].content must be a string", listed=False)
        dims = int((body.get("parameters") or {}).get("outputDimensionality") or self.embedding_models[model])
        return JSONResponse({"predictions": [
            {"embeddings": {"values": hash_embedding(f"{i.get('task_type', '')}|{i['content']}", dims),
                            "statistics": {"truncated": False, "token_count": len(i["content"].split())}}}
            for i in instances], "metadata": {"billableCharacterCount": sum(len(i["content"]) for i in instances)}})

    async def _token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        grant = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or assertion.count(".") != 2:
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid JWT grant."},
                                status_code=400)
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.token_grants.append(claims)
        token = f"ya29.minted-{secrets.token_hex(8)}"
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


class TogetherFake(_Vendor):
    """Together AI (``/v1/models``, ``/v1/chat/completions``, ``/v1/embeddings``). Quirks: ``/v1/models`` is a
    bare JSON array of ``{id, object, type, display_name, context_length, ...}``; a model only available on
    a dedicated endpoint is 400 ``model_not_available`` ("Unable to access non-serverless model ..."); error
    bodies carry a request ``id``; a bad key is 401 ``invalid_api_key``."""

    def __init__(self, api_key: str = "together-key-789") -> None:
        super().__init__()
        self.api_key = api_key
        self.models: dict[str, tuple[str, int]] = {
            "meta-llama/Llama-3.3-70B-Instruct-Turbo": ("chat", 0),
            "Qwen/Qwen2.5-7B-Instruct-Turbo": ("chat", 0),
            "togethercomputer/m2-bert-80M-8k-retrieval": ("embedding", 768),
            "BAAI/bge-large-en-v1.5": ("embedding", 1024),
        }
        self.dedicated_only = ["mistralai/Mixtral-8x7B-Instruct-v0.1"]

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/models", self._models, methods=["GET"]),
                                 Route("/v1/chat/completions", self._handler("chat"), methods=["POST"]),
                                 Route("/v1/embeddings", self._handler("embedding"), methods=["POST"])])

    @staticmethod
    def _error(status: int, message: str, code: str) -> Response:
        return JSONResponse({"id": f"o{secrets.token_hex(6)}", "error": {
            "message": message, "type": "invalid_request_error", "param": None, "code": code}}, status_code=status)

    def _guard(self, request: Request) -> Response | None:
        if _bearer(request) != self.api_key:
            return self._error(401, "Invalid API key provided. You can find your API key at "
                                    "https://api.together.xyz/settings/api-keys.", "invalid_api_key")
        return None

    async def _models(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        return JSONResponse([{"id": name, "object": "model", "created": 1692896905, "type": kind,
                              "display_name": name.split("/")[-1], "organization": name.split("/")[0],
                              "context_length": 8192} for name, (kind, _) in self.models.items()])

    def _handler(self, kind: str) -> Handler:
        async def handle(request: Request) -> Response:
            body = await self._json(request)
            if (denied := self._guard(request)) is not None:
                return denied
            name = str(body.get("model"))
            if name in self.dedicated_only:
                return self._error(400, f"Unable to access non-serverless model {name}. Please visit "
                                   f"https://api.together.ai/models/{name} to create and start a new dedicated "
                                   "endpoint for the model.", "model_not_available")
            if name not in self.models or self.models[name][0] != kind:
                return self._error(404, f"Unable to access model {name}. Please visit https://api.together.ai/"
                                   "models to view the list of supported models.", "model_not_available")
            if kind == "chat":
                return self.chat_response(body, name)
            inputs = self._inputs(body)
            if inputs is None:
                return self._error(400, "input must be a string or a list of strings", "invalid_request")
            return self.embeddings_response(inputs, name, self.models[name][1])
        return handle


class TEIFake(_Vendor):
    """Hugging Face Text Embeddings Inference (its openapi.json): ``GET /info`` (``model_id``,
    ``max_client_batch_size``, ...), ``GET /health``, ``POST /embed`` (``{"inputs"}`` -> list of vectors) and
    the OpenAI-compatible ``POST /v1/embeddings``. Quirks: the ``model`` field is ignored (one model per
    server); more inputs than ``max_client_batch_size`` is 413 (``{"message", "type": "validation"}`` on
    ``/v1``, ``{"error", "error_type": "Validation"}`` on ``/embed``)."""

    def __init__(self, model_id: str = "BAAI/bge-small-en-v1.5", dims: int = 384, max_batch: int = 8) -> None:
        super().__init__()
        self.model_id, self.dims, self.max_batch = model_id, dims, max_batch

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/info", self._info, methods=["GET"]),
                                 Route("/health", lambda r: Response(status_code=200), methods=["GET"]),
                                 Route("/embed", self._embed, methods=["POST"]),
                                 Route("/v1/embeddings", self._openai_embed, methods=["POST"])])

    async def _info(self, request: Request) -> Response:
        return JSONResponse({"model_id": self.model_id, "model_sha": None, "model_dtype": "float32",
                             "model_type": {"embedding": {"pooling": "mean"}}, "max_concurrent_requests": 512,
                             "max_input_length": 512, "max_batch_tokens": 16384,
                             "max_client_batch_size": self.max_batch, "auto_truncate": False,
                             "tokenization_workers": 2, "version": "1.7.1"})

    def _too_many(self, n: int) -> str:
        return f"batch size {n} > maximum allowed batch size {self.max_batch}"

    async def _embed(self, request: Request) -> Response:
        body = await self._json(request)
        raw = body.get("inputs")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs:
            return JSONResponse({"error": "`inputs` cannot be empty", "error_type": "Validation"}, status_code=422)
        if len(inputs) > self.max_batch:
            return JSONResponse({"error": self._too_many(len(inputs)), "error_type": "Validation"}, status_code=413)
        return JSONResponse([hash_embedding(t, self.dims) for t in inputs])

    async def _openai_embed(self, request: Request) -> Response:
        body = await self._json(request)
        inputs = self._inputs(body)
        if inputs is None:
            return JSONResponse({"message": "invalid input", "type": "validation"}, status_code=422)
        if len(inputs) > self.max_batch:
            return JSONResponse({"message": self._too_many(len(inputs)), "type": "validation"}, status_code=413)
        return self.embeddings_response(inputs, self.model_id, self.dims)


class TGIFake(_Vendor):
    """Hugging Face Text Generation Inference's OpenAI-compatible chat (``/v1/chat/completions``,
    ``/v1/models``, ``/info``). Quirk: one model per server, so any ``model`` value (conventionally ``"tgi"``)
    is accepted and answers carry the served ``model_id``."""

    def __init__(self, model_id: str = "HuggingFaceTB/SmolLM2-1.7B-Instruct") -> None:
        super().__init__()
        self.model_id = model_id

    def build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/info", lambda r: JSONResponse({"model_id": self.model_id, "version": "3.0.0"}), methods=["GET"]),
            Route("/v1/models", lambda r: JSONResponse({"object": "list", "data": [
                {"id": self.model_id, "object": "model", "created": 0, "owned_by": self.model_id}]}),
                methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        body = await self._json(request)
        if not body.get("messages"):
            return JSONResponse({"error": "Input validation error: `messages` cannot be empty",
                                 "error_type": "validation"}, status_code=422)
        return self.chat_response(body, self.model_id)
