"""CONTRACT FAKE of LM Studio's SDK channel (the websocket protocol of the official ``lmstudio`` Python SDK),
served by :class:`~fakes.lmstudio.LMStudioFake` on its HTTP port as LM Studio serves it. Not LM Studio.

Built from what the SDK publishes: its message schemas (``lmstudio._sdk_models``, generated from LM Studio's
``lms.json``) and its protocol handling (``lmstudio.json_api`` / ``lmstudio.async_api``):

* probe: ``GET /lmstudio-greeting`` -> ``{"lmstudio": true}``;
* one websocket per namespace (``/llm``, ``/embedding``, ``/system``, ``/files``, ``/repository``); the first
  client message is ``{"authVersion": 1, "clientIdentifier", "clientPasskey"}``, answered
  ``{"success": true}``;
* remote calls ``{"type": "rpcCall", "endpoint", "callId", "parameter"?}`` -> ``{"type": "rpcResult",
  "callId", "result"?}`` or ``{"type": "rpcError", "callId", "error": {"title", ...}}``. Served: ``system``
  ``listDownloadedModels`` (``LlmInfo`` / ``EmbeddingModelInfo``: type, modelKey, format, displayName, path,
  sizeBytes, maxContextLength, vision, trainedForToolUse, architecture) and ``version`` (``{version,
  build}``); ``llm`` / ``embedding`` ``listLoaded`` and ``getModelInfo`` (``LlmInstanceInfo``: the info plus
  identifier, instanceReference, contextLength), ``countTokens`` (``{tokenCount}``), ``unloadModel``
  (``{identifier}``);
* channels ``{"type": "channelCreate", "endpoint": "loadModel", "channelId", "creationParameter":
  {modelKey, identifier?, ttlMs?, loadConfigStack}}`` answered with ``channelSend`` messages
  ``{"type": "resolved"}``, ``{"type": "startLoading"}``, ``{"type": "progress", "progress": f}`` (several),
  ``{"type": "success", "info": <instance info>}``, then ``{"type": "channelClose"}``. Load config fields are
  read from the stack's ``apiOverride`` layer by their server keys (``llm.load.contextLength``,
  ``llm.load.llama.acceleration.offloadRatio``; ``embedding.load.*`` for embedding models).

Token counts use the same stand-in tokenizer as the REST fakes (whitespace words), so a test can predict them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._openai import count_tokens

if TYPE_CHECKING:
    from .lmstudio import LMStudioFake, LMStudioInstance, LMStudioModel

NAMESPACES = ("llm", "embedding", "system", "files", "repository")
LOAD_PROGRESS_STEPS = (0.25, 0.5, 0.75)


class SDKChannel:
    """The websocket side of :class:`LMStudioFake`. ``events`` logs every message a client sent
    (namespace, message) so tests can assert on what reached the channel."""

    def __init__(self, fake: LMStudioFake) -> None:
        self.fake = fake
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.version = {"version": "0.4.1", "build": 3}

    def routes(self) -> list[Route | WebSocketRoute]:
        out: list[Route | WebSocketRoute] = [Route("/lmstudio-greeting", self._greeting, methods=["GET"])]
        out += [WebSocketRoute(f"/{namespace}", self._session) for namespace in NAMESPACES]
        return out

    def calls(self, endpoint: str) -> list[dict[str, Any]]:
        """Messages (rpc calls and channel creations) that named ``endpoint``."""
        return [m for _, m in self.events if m.get("endpoint") == endpoint]

    async def _greeting(self, request: Request) -> Response:
        return JSONResponse({"lmstudio": True})

    # -- shapes ------------------------------------------------------------------------------------

    @staticmethod
    def model_info(model: LMStudioModel) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "embedding" if model.type == "embedding" else "llm", "modelKey": model.id,
                                "format": model.format, "displayName": model.display_name or model.key,
                                "path": model.path, "sizeBytes": model.size_bytes,
                                "maxContextLength": model.max_context_length,
                                "paramsString": model.params_string, "architecture": model.architecture}
        if model.type != "embedding":
            info.update(vision=model.vision, trainedForToolUse=model.tool_use)
        return info

    def instance_info(self, instance: LMStudioInstance) -> dict[str, Any]:
        return {**self.model_info(instance.model), "identifier": instance.id,
                "instanceReference": f"ref-{instance.id}", "contextLength": instance.context_length}

    # -- session -----------------------------------------------------------------------------------

    async def _session(self, websocket: WebSocket) -> None:
        namespace = websocket.url.path.strip("/")
        await websocket.accept()
        try:
            auth = await websocket.receive_json()
            if not (isinstance(auth, dict) and auth.get("authVersion") == 1 and auth.get("clientIdentifier")):
                await websocket.send_json({"success": False, "error": {"title": "Invalid authentication packet"}})
                await websocket.close()
                return
            await websocket.send_json({"success": True})
            while True:
                message = await websocket.receive_json()
                self.events.append((namespace, message))
                if message.get("type") == "rpcCall":
                    await websocket.send_json(await self._rpc(namespace, message))
                elif message.get("type") == "channelCreate":
                    await self._channel(namespace, message, websocket)
        except WebSocketDisconnect:
            return

    async def _rpc(self, namespace: str, message: dict[str, Any]) -> dict[str, Any]:
        call_id, endpoint = message.get("callId"), message.get("endpoint")
        parameter = message.get("parameter") or {}
        try:
            result = self._call(namespace, str(endpoint), parameter)
        except LookupError as exc:
            return {"type": "rpcError", "callId": call_id, "error": {"title": str(exc)}}
        reply: dict[str, Any] = {"type": "rpcResult", "callId": call_id}
        if result is not None:
            reply["result"] = result
        return reply

    def _kind_matches(self, namespace: str, model: LMStudioModel) -> bool:
        return (model.type == "embedding") == (namespace == "embedding")

    def _instance(self, namespace: str, parameter: dict[str, Any]) -> LMStudioInstance:
        specifier = parameter.get("specifier") or {}
        wanted = (specifier.get("query") or {}).get("identifier")
        self.fake._expire()
        for instance in self.fake.loaded:
            if self._kind_matches(namespace, instance.model) and wanted in (instance.id, instance.model.id,
                                                                              instance.model.key):
                return instance
        raise LookupError(f'No loaded model satisfies all requirements ("{wanted}")')

    def _call(self, namespace: str, endpoint: str, parameter: dict[str, Any]) -> Any:
        if namespace == "system" and endpoint == "listDownloadedModels":
            return [self.model_info(m) for m in self.fake.models]
        if namespace == "system" and endpoint == "version":
            return self.version
        if namespace in ("llm", "embedding"):
            if endpoint == "listLoaded":
                self.fake._expire()
                return [self.instance_info(i) for i in self.fake.loaded if self._kind_matches(namespace, i.model)]
            if endpoint == "getModelInfo":
                return self.instance_info(self._instance(namespace, parameter))
            if endpoint == "countTokens":
                instance = self._instance(namespace, parameter)
                instance.last_used = asyncio.get_running_loop().time()
                return {"tokenCount": count_tokens(str(parameter.get("inputString", "")))}
            if endpoint == "unloadModel":
                identifier = parameter.get("identifier")
                match = [i for i in self.fake.loaded if i.id == identifier]
                if not match:
                    raise LookupError(f"No model found with identifier {identifier!r}")
                self.fake.loaded.remove(match[0])
                return None
        raise LookupError(f"Unknown endpoint {namespace}.{endpoint}")

    async def _channel(self, namespace: str, message: dict[str, Any], websocket: WebSocket) -> None:
        channel_id = message.get("channelId")

        async def send(contents: dict[str, Any]) -> None:
            await websocket.send_json({"type": "channelSend", "channelId": channel_id, "message": contents})

        if message.get("endpoint") != "loadModel" or namespace not in ("llm", "embedding"):
            await websocket.send_json({"type": "channelError", "channelId": channel_id,
                                       "error": {"title": f"Unknown channel endpoint {message.get('endpoint')}"}})
            return
        params = message.get("creationParameter") or {}
        model = self.fake.find_model(str(params.get("modelKey")))
        identifier = params.get("identifier")
        if model is None or not self._kind_matches(namespace, model):
            await websocket.send_json({"type": "channelError", "channelId": channel_id,
                                       "error": {"title": f"Model not found: {params.get('modelKey')}"}})
            return
        if identifier and any(i.id == identifier for i in self.fake.loaded):
            await websocket.send_json({"type": "channelError", "channelId": channel_id,
                                       "error": {"title": f"An instance with identifier {identifier!r} exists"}})
            return
        config = self._load_config(params.get("loadConfigStack") or {})
        prefix = "embedding.load" if namespace == "embedding" else "llm.load"
        context = config.get(f"{prefix}.contextLength") or min(4096, model.max_context_length)
        await send({"type": "resolved", "info": self.model_info(model)})
        await send({"type": "startLoading"})
        for fraction in LOAD_PROGRESS_STEPS:
            await asyncio.sleep(self.fake.load_delay / len(LOAD_PROGRESS_STEPS))
            await send({"type": "progress", "progress": fraction})
        ttl_ms = params.get("ttlMs")
        instance = self.fake.load_instance(model.id, context_length=int(context),
                                           ttl=ttl_ms / 1000 if ttl_ms else None, identifier=identifier,
                                           gpu=config.get(f"{prefix}.llama.acceleration.offloadRatio"))
        await send({"type": "success", "info": self.instance_info(instance)})
        await websocket.send_json({"type": "channelClose", "channelId": channel_id})

    @staticmethod
    def _load_config(stack: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for layer in stack.get("layers") or []:
            for field in (layer.get("config") or {}).get("fields") or []:
                out[str(field.get("key"))] = field.get("value")
        return out
