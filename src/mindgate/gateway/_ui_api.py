"""The dashboard's JSON endpoints under ``/ui/api`` (the memory pages use the public ``/v1/memories`` API).

Every endpoint authenticates exactly like the API: when API keys are configured, a request without a
valid ``Authorization: Bearer <key>`` is a 401. Loading and unloading models changes the machine for every
user, so it is refused (403) to keys bound to users; a key bound to models may load and unload only those.

* ``GET /ui/api/session``: whether keys are on, and what the presented key may do;
* ``GET /ui/api/models[?refresh=true]``: the catalog across endpoints, each model with its fit now and any
  load in progress, the endpoints' reachability, and free RAM/VRAM;
* ``POST /ui/api/models/load`` ``{endpoint, model, context_length?}``: starts a load in the background
  (202 with the job); ``GET /ui/api/models/jobs/{id}``: its progress (the server's own when LM Studio's
  SDK reports it, ``estimated`` otherwise); ``POST /ui/api/models/unload``;
* ``POST /ui/api/models/download`` ``{model, endpoint?, quantization?}``: starts a download on LM Studio or
  Ollama in the background (202); ``GET /ui/api/models`` lists downloads under ``downloads``;
* ``GET /ui/api/resources``: free RAM/VRAM per device (the resource monitor's latest reading), the models
  loaded in this process with their memory estimate, tier state per chain, and the last switching
  decisions with their reasons;
* ``GET /ui/api/scopes``: the memory scopes that exist (users, agents, runs) with their counts;
* ``GET /ui/api/routing``: every chain's targets with breaker state, counters and latency;
* ``GET /ui/api/timeseries``: the last hour of API traffic per minute (:mod:`.ui_timeseries`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from mindgate import __version__
from mindgate.errors import MindgateError, NotFoundError, PermissionDeniedError
from mindgate.gateway._auth import Principal
from mindgate.gateway._responses import JSONBytes
from mindgate.gateway._state import Gateway, gateway_of
from mindgate.gateway._ui_timeseries import TrafficSeries, router_fallbacks
from mindgate.models._catalog import ModelCatalog, ModelInfo
from mindgate.models._manager import ModelManager
from mindgate.models._monitor import default_monitor
from mindgate.providers.management._records import LoadProgress
from mindgate.routing._placement import Placement, shared_placement

router = APIRouter(prefix="/ui/api", tags=["ui"], include_in_schema=False)

JOBS_KEPT = 50
JOB_RETENTION_S = 600.0
SCOPES_LISTED = 500


@dataclass
class LoadJob:
    """A model load started from the dashboard, with its latest progress report."""

    id: str
    endpoint: str
    model: str
    stage: str = "queued"
    fraction: float | None = 0.0
    estimated: bool = False
    message: str = ""
    error: str | None = None
    done: bool = False
    started: float = field(default_factory=time.time)
    finished: float | None = None
    task: asyncio.Task[Any] | None = field(default=None, repr=False)

    def progress(self, report: LoadProgress) -> None:
        self.stage, self.fraction, self.message = report.stage, report.fraction, report.message
        self.estimated = report.estimated

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "model": self.model, "stage": self.stage,
                "fraction": self.fraction, "estimated": self.estimated, "message": self.message,
                "error": self.error, "done": self.done,
                "started": self.started, "finished": self.finished}


class UIState:
    """What the dashboard keeps beside the gateway: the traffic series, a model manager over the gateway's
    catalog (built on first use when the gateway has none), and recent load jobs. Closed with the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.series = TrafficSeries(fallback_total=router_fallbacks(gateway.targets.all))
        self.jobs: dict[str, LoadJob] = {}
        self.download_errors: dict[str, str] = {}
        self.download_starting: dict[str, str] = {}
        self._downloads: set[asyncio.Task[Any]] = set()
        self._manager: ModelManager | None = None

    @property
    def manager(self) -> ModelManager:
        if self._manager is None:
            catalog = self.gateway.targets.catalog or ModelCatalog.from_config(self.gateway.config)
            self._manager = ModelManager(catalog)
        return self._manager

    def start_load(self, endpoint: str, model: str, context_length: int | None) -> LoadJob:
        running = self.running_job(endpoint, model)
        if running is not None:
            return running
        self._prune()
        job = LoadJob(uuid.uuid4().hex, endpoint, model)
        self.jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job, context_length))
        return job

    async def _run(self, job: LoadJob, context_length: int | None) -> None:
        try:
            result = await self.manager.aload(job.model, endpoint=job.endpoint, context_length=context_length,
                                              progress=job.progress)
            job.stage, job.fraction = ("reused" if result.reused else "loaded"), 1.0
            job.message = f"{'already loaded' if result.reused else 'loaded'} as {result.instance_id}"
        except MindgateError as exc:
            job.stage, job.error = "failed", str(exc)
        except Exception as exc:  # reported to the page, which otherwise would wait forever
            job.stage, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.done, job.finished = True, time.time()

    def start_download(self, model: str, endpoint: str | None, quantization: str | None) -> None:
        async def run() -> None:
            try:
                await self.manager.adownload(model, endpoint=endpoint, quantization=quantization)
            except MindgateError as exc:
                self.download_errors[model] = str(exc)

        self.download_errors.pop(model, None)
        self.download_starting[model] = endpoint or ""
        task = asyncio.get_running_loop().create_task(run())
        self._downloads.add(task)
        task.add_done_callback(self._downloads.discard)

    def downloads(self) -> list[dict[str, Any]]:
        """Downloads started here: the server's latest report for each, or ``starting`` until there is one."""
        reported = self.manager.downloads() if self._manager is not None else []
        out = [{**d.to_dict(), "error": self.download_errors.get(d.model)} for d in reported]
        for model, endpoint in list(self.download_starting.items()):
            if any(d.model == model for d in reported):
                del self.download_starting[model]
            elif model in self.download_errors:  # failed before the server reported anything
                out.append({"model": model, "endpoint": endpoint, "status": "failed", "done": True,
                            "fraction": None, "error": self.download_errors[model]})
            else:
                out.append({"model": model, "endpoint": endpoint, "status": "starting", "done": False,
                            "fraction": None, "error": None})
        return out

    def running_job(self, endpoint: str, model: str) -> LoadJob | None:
        return next((j for j in self.jobs.values() if not j.done and j.endpoint == endpoint and j.model == model),
                    None)

    def _prune(self) -> None:
        now = time.time()
        finished = sorted((j for j in self.jobs.values() if j.done), key=lambda j: j.finished or 0)
        for job in finished:
            if len(self.jobs) >= JOBS_KEPT or now - (job.finished or now) > JOB_RETENTION_S:
                del self.jobs[job.id]

    async def aclose(self) -> None:
        for task in list(self._downloads):
            task.cancel()
        for job in self.jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job.task


class ModelAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=256, description="the endpoint name the catalog lists")
    model: str = Field(min_length=1, max_length=512)
    context_length: int | None = Field(default=None, gt=0, le=10_000_000)


def ui_state(request: Request) -> UIState:
    state: UIState = request.app.state.ui
    return state


def _authenticated(request: Request) -> tuple[Gateway, Principal | None]:
    gateway = gateway_of(request)
    return gateway, gateway.authenticate(request)


def _may_manage(principal: Principal | None, model: str | None = None) -> None:
    """403 unless the key may load and unload models (and this model, when named)."""
    if principal is None:
        return
    if principal.users is not None:
        raise PermissionDeniedError(f"API key {principal.name!r} is bound to users and may not load or unload "
                                    "models", hint="use a key that is not bound to users")
    if model is not None:
        principal.check_model(model)


def _can_manage(principal: Principal | None) -> bool:
    try:
        _may_manage(principal)
    except PermissionDeniedError:
        return False
    return True


@router.get("/session")
async def session(request: Request) -> Response:
    """Whether keys are on, and what the presented key may do (the login check)."""
    gateway, principal = _authenticated(request)
    return JSONBytes({"auth_required": gateway.keys.enabled, "key": principal.name if principal else None,
                      "users": sorted(principal.users) if principal and principal.users is not None else None,
                      "models": sorted(principal.models) if principal and principal.models is not None else None,
                      "can_manage_models": _can_manage(principal), "version": __version__})


def _model_row(state: UIState, model: ModelInfo) -> dict[str, Any]:
    try:
        report = state.manager.fit_report(model)
        fit: dict[str, Any] = {"fits": report.fits, "already_loaded": report.already_loaded,
                               "context_length": report.context_length, "free_bytes": report.free_bytes,
                               "needed_bytes": report.estimate.total_bytes if report.estimate else None}
    except MindgateError as exc:
        fit = {"fits": None, "error": str(exc)}
    job = state.running_job(model.endpoint, model.id)
    return {"id": model.id, "endpoint": model.endpoint, "provider": model.provider, "type": model.type.value,
            "state": model.state.value, "max_context_length": model.max_context_length,
            "loaded_context_length": model.loaded_context_length, "size_bytes": model.size_bytes,
            "quantization": model.quantization, "instances": [i.id for i in model.instances],
            "architecture": model.architecture, "fit": fit, "job": job.to_dict() if job else None}


@router.get("/models")
async def models(request: Request, refresh: bool = False) -> Response:
    """The catalog across endpoints with fit, jobs and free memory."""
    _, principal = _authenticated(request)
    state = ui_state(request)
    listing = await state.manager.catalog.alist(refresh=refresh)
    return JSONBytes({"models": [_model_row(state, m) for m in listing.models],
                      "endpoints": [s.to_dict() for s in listing.endpoints],
                      "resources": default_monitor().latest().to_dict(), "downloads": state.downloads(),
                      "can_manage": _can_manage(principal)})


def _placements(gateway: Gateway) -> list[Placement]:
    """The placements the gateway's routers use (the process-wide one when none has its own)."""
    found: list[Placement] = []
    for model in gateway.targets.all().values():
        placement = getattr(model, "placement", None)
        if isinstance(placement, Placement) and placement not in found:
            found.append(placement)
    return found or [shared_placement(gateway.config.resources)]


@router.get("/resources")
async def resources(request: Request) -> Response:
    """Free memory per device, what is loaded in this process, tiers, and the last switching decisions."""
    gateway, _ = _authenticated(request)
    placements = _placements(gateway)
    now = time.monotonic()
    loaded = [{"instance": r.label, "held_bytes": r.held_bytes, "idle_s": round(now - r.last_used, 1),
               "in_use": r.in_use, "pinned": r.pinned} for r in placements[0].residents()]
    decisions = sorted((d for p in placements for d in p.decisions.recent()), key=lambda d: d.at, reverse=True)
    tiers = [{"chain": name, **policy.status()} for name, model in gateway.targets.all().items()
             if (policy := getattr(model, "tiers", None)) is not None]
    return JSONBytes({"resources": placements[0].source.latest().to_dict(), "loaded": loaded, "tiers": tiers,
                      "decisions": [d.to_dict() for d in decisions[:20]],
                      "fit_routing": gateway.config.resources.fit_routing})


@router.post("/models/load")
async def load_model(body: ModelAction, request: Request) -> Response:
    """Start loading a model; poll ``/ui/api/models/jobs/{id}`` for progress."""
    _, principal = _authenticated(request)
    _may_manage(principal, body.model)
    state = ui_state(request)
    # an unknown endpoint (400) or model (404) is refused now rather than reported by a failed job later
    await state.manager.catalog.aresolve(body.model, endpoint=body.endpoint)
    job = state.start_load(body.endpoint, body.model, body.context_length)
    return JSONBytes(job.to_dict(), status_code=202)


class DownloadAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512)
    endpoint: str | None = Field(default=None, min_length=1, max_length=256)
    quantization: str | None = Field(default=None, min_length=1, max_length=64)


@router.post("/models/download")
async def download_model(body: DownloadAction, request: Request) -> Response:
    """Start downloading a model onto LM Studio or Ollama; its progress shows under ``downloads``."""
    _, principal = _authenticated(request)
    _may_manage(principal, body.model)
    state = ui_state(request)
    if body.endpoint is not None:
        state.manager.catalog.endpoint(body.endpoint)  # an unknown endpoint is a 400 now
    state.start_download(body.model, body.endpoint, body.quantization)
    return JSONBytes({"model": body.model, "endpoint": body.endpoint, "status": "started"}, status_code=202)


@router.get("/models/jobs/{job_id}")
async def load_job(job_id: str, request: Request) -> Response:
    _authenticated(request)
    job = ui_state(request).jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no load job {job_id!r}", hint="jobs are kept for 10 minutes after they finish")
    return JSONBytes(job.to_dict())


@router.post("/models/unload")
async def unload_model(body: ModelAction, request: Request) -> Response:
    """Unload every instance of a model (or one instance, when ``model`` names it)."""
    _, principal = _authenticated(request)
    _may_manage(principal, body.model)
    unloaded = await ui_state(request).manager.aunload(body.model, endpoint=body.endpoint)
    return JSONBytes({"endpoint": body.endpoint, "model": body.model, "unloaded": unloaded})


@router.get("/routing")
async def routing(request: Request) -> Response:
    """Every chain (and model or route used so far) with its targets' breaker state and counters."""
    gateway, _ = _authenticated(request)
    chains = []
    for name, model in gateway.targets.all().items():
        status = getattr(model, "status", None)
        if callable(status):
            rows = status()
            chains.append({"name": name, "default": name == gateway.targets.default_name, "router": True,
                           "targets": rows, "fallbacks": sum(row["successes"] for row in rows[1:])})
        else:
            chains.append({"name": name, "default": name == gateway.targets.default_name, "router": False,
                           "targets": [{"name": f"{model.provider}:{model.model}", "provider": model.provider,
                                        "model": model.model, "state": None}], "fallbacks": 0})
    routes = [{"name": r.name, "target": r.target, "threshold": r.threshold} for r in gateway.config.routing.routes]
    return JSONBytes({"chains": chains, "routes": routes, "now": time.time()})


@router.get("/timeseries")
async def timeseries(request: Request) -> Response:
    """Requests, 5xx, latency p50/p99 and fallbacks per minute over the last hour."""
    _authenticated(request)
    return JSONBytes(ui_state(request).series.snapshot())


@router.get("/scopes")
async def scopes(request: Request) -> Response:
    """The scopes that hold live memories (users, agents, runs) with their counts, largest first. A key
    bound to users sees only those users' scopes."""
    gateway, principal = _authenticated(request)
    rows = (await gateway.memory.scopes(limit=SCOPES_LISTED))["results"]
    if principal is not None and principal.users is not None:
        rows = [r for r in rows if r["kind"] == "user_id" and r["id"] in principal.users]
    return JSONBytes({"scopes": rows, "limit": SCOPES_LISTED})
