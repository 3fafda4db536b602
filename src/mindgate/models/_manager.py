"""``ModelManager``: load and unload models on their endpoints, safely and idempotently, and pick the best
model that fits in memory now.

Contracts:

* Model operations are serialised per endpoint (an asyncio lock), and identical concurrent loads share
  one in-flight operation: 20 callers loading the same model cause one load request to the server.
* ``load`` is idempotent: a model with a loaded instance whose context is adequate (at least the requested
  length, or any when none is requested) is reused and nothing is sent. An instance with too small a
  context is unloaded before loading again, so LM Studio never ends up with a second ``model:2`` copy.
* TTL: LM Studio gets ``ttl`` on the load request, Ollama ``keep_alive`` (no TTL = stay loaded), the local
  engine an idle TTL in its pool.
* Before a load on this machine (local engine or a loopback server), the memory estimate
  (:class:`~mindgate.models.MemoryEstimate`) is checked against free RAM/VRAM; a model that does not fit is refused with
  :class:`~mindgate.errors.InsufficientMemoryError`, naming a shorter context and smaller models that
  would fit. Servers on other machines are not checked (their memory is not visible from here).
* Progress: ``progress`` receives :class:`~mindgate.providers.management._records.LoadProgress` reports (checking,
  unloading, loading, then loaded or reused). While loading, the fraction is the server's own when it
  reports one (LM Studio through its SDK), else estimated from elapsed time every 0.2 s.
* ``options`` (:class:`~mindgate.providers.management._records.LoadOptions`: GPU offload, instance identifier) are LM
  Studio's; an identifier always asks for a new instance (that is what it is for).
* Downloads (``download``) go to the endpoint's server (LM Studio's download jobs, Ollama's pull) and
  report :class:`~mindgate.providers.management._records.DownloadProgress`; running ones are listed by ``downloads()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mindgate._sync import run_sync
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError, MindgateError, ProviderError, ResourceError
from mindgate.models._catalog import ModelCatalog
from mindgate.providers.management import _fit as fit
from mindgate.providers.management._http import client_for
from mindgate.providers.management._records import (
    NO_OPTIONS,
    DownloadCallback,
    DownloadProgress,
    Endpoint,
    LoadedInstance,
    LoadOptions,
    LoadProgress,
    ModelInfo,
    ModelState,
    ModelType,
    ProgressCallback,
)
from mindgate.providers.management._resources import Resources, format_bytes, snapshot

DEFAULT_SERVER_CONTEXT = 4096
LOAD_BYTES_PER_SECOND = 1e9
HEARTBEAT_S = 0.2


@dataclass(frozen=True)
class LoadResult:
    """What ``load`` did: the instance serving the model, whether it was already loaded, and the model's
    record as read after the load."""

    model: ModelInfo
    instance_id: str
    context_length: int | None
    reused: bool
    ttl: float | None
    estimate: fit.MemoryEstimate | None
    seconds: float


@dataclass(frozen=True)
class FitReport:
    """Whether ``model`` fits now at ``context_length``. ``fits`` is None when it cannot be known (a server
    on another machine, or a model of unknown size); a loaded model with an adequate context fits."""

    model: ModelInfo
    context_length: int
    estimate: fit.MemoryEstimate | None
    free_bytes: int | None
    fits: bool | None
    already_loaded: bool

    def describe(self) -> str:
        if self.already_loaded:
            return f"{self.model.id} is loaded"
        if self.estimate is None or self.free_bytes is None:
            return f"{self.model.id}: memory need unknown here"
        verdict = "fits" if self.fits else "does not fit"
        return (f"{self.model.id} {verdict}: needs {format_bytes(self.estimate.total_bytes)}, "
                f"{format_bytes(self.free_bytes)} free")


class RouteTarget(Protocol):
    """Anything naming an endpoint and a model, e.g. :class:`mindgate.config.TargetConfig`."""

    endpoint: str
    model: str | None


Candidate = str | tuple[str, str] | RouteTarget


def adequate_instance(model: ModelInfo, context_length: int | None) -> LoadedInstance | None:
    """A loaded instance whose context is at least ``context_length`` (unknown contexts count as adequate:
    better to reuse than to create a duplicate)."""
    for instance in model.instances:
        if context_length is None or instance.context_length is None or instance.context_length >= context_length:
            return instance
    return None


def _default_context(model: ModelInfo, endpoint: Endpoint) -> int:
    wanted = endpoint.n_ctx or DEFAULT_SERVER_CONTEXT
    return min(wanted, model.max_context_length) if model.max_context_length else wanted


class ModelManager:
    """Loads, unloads and selects models across a :class:`ModelCatalog`'s endpoints."""

    def __init__(self, catalog: ModelCatalog, *, resources: Callable[[], Resources] = snapshot) -> None:
        self.catalog = catalog
        self.resources = resources
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._inflight: dict[tuple[Any, ...], asyncio.Future[LoadResult]] = {}
        self._downloads: dict[tuple[str, str], DownloadProgress] = {}

    @classmethod
    def from_config(cls, config: MindgateConfig | None = None, **kwargs: Any) -> ModelManager:
        return cls(ModelCatalog.from_config(config), **kwargs)

    def _lock(self, endpoint: str) -> asyncio.Lock:
        key = (id(asyncio.get_running_loop()), endpoint)
        if key not in self._locks:
            self._locks[key] = asyncio.Lock()
        return self._locks[key]

    # -- estimates and selection -------------------------------------------------------------------

    def fit_report(self, model: ModelInfo, *, context_length: int | None = None,
                   freed_bytes: int = 0) -> FitReport:
        """The memory check for ``model`` (no network; uses the record and a resources snapshot)."""
        endpoint = self.catalog.endpoint(model.endpoint)
        n_ctx = context_length or _default_context(model, endpoint)
        loaded = adequate_instance(model, context_length) is not None
        if not model.size_bytes:
            return FitReport(model, n_ctx, None, None, True if loaded else None, loaded)
        shape = fit.ModelShape(model.size_bytes, model.kv_elements_per_token, model.max_context_length)
        estimate = fit.estimate(shape, n_ctx)
        if not endpoint.on_this_machine:
            return FitReport(model, n_ctx, estimate, None, True if loaded else None, loaded)
        free = self.resources().free_bytes(gpu=endpoint.provider != "local") + freed_bytes
        return FitReport(model, n_ctx, estimate, free, loaded or estimate.total_bytes <= free, loaded)

    async def aestimate(self, model_id: str, *, endpoint: str | None = None,
                        context_length: int | None = None) -> FitReport:
        model = await self.catalog.aresolve(model_id, endpoint=endpoint)
        return self.fit_report(model, context_length=context_length)

    def _refusal(self, report: FitReport) -> fit.InsufficientMemoryError:
        assert report.estimate is not None and report.free_bytes is not None
        model = report.model
        shape = fit.ModelShape(model.size_bytes or 0, model.kv_elements_per_token, model.max_context_length)
        shorter = fit.max_fitting_context(shape, report.free_bytes, upper=report.context_length)
        alternatives = []
        for other in self.catalog.cached_models():
            if (other.id == model.id and other.endpoint == model.endpoint) or other.type != model.type:
                continue
            other_ctx = min(report.context_length, other.max_context_length or report.context_length)
            other_report = self.fit_report(other, context_length=other_ctx)
            if other_report.already_loaded:
                alternatives.append(fit.Alternative(f"{other.endpoint}:{other.id}", 0, loaded=True))
            elif other_report.estimate is not None and other_report.free_bytes is not None:
                alternatives.append(fit.Alternative(f"{other.endpoint}:{other.id}", other_report.estimate.total_bytes))
        return fit.refusal(f"{model.endpoint}:{model.id} with a {report.context_length}-token context",
                           report.estimate, report.free_bytes, shorter_context=shorter, alternatives=alternatives)

    async def aselect(self, candidates: Sequence[Candidate], *, context_length: int | None = None,
                      model_type: ModelType | None = None) -> FitReport:
        """The first acceptable candidate (best first) that fits now: a loaded one, one that fits free
        memory, or one on another machine (whose memory cannot be checked from here).

        A candidate is a model id, an ``(endpoint, model)`` pair, or a route target with ``endpoint`` and
        ``model`` attributes. Raises ResourceError (each candidate's need vs free memory) when none fits."""
        if not candidates:
            raise ConfigurationError("no candidate models to select from", hint="pass at least one model id")
        reasons = []
        for candidate in candidates:
            endpoint, model_id = self._candidate(candidate)
            try:
                model = await self.catalog.aresolve(model_id, endpoint=endpoint)
            except MindgateError as exc:
                reasons.append(f"{model_id}: {exc.message}")
                continue
            if model_type is not None and model.type is not model_type:
                reasons.append(f"{model.id}: is a {model.type.value} model, not {model_type.value}")
                continue
            report = self.fit_report(model, context_length=context_length)
            if report.fits is not False:
                return report
            reasons.append(report.describe())
        raise ResourceError("none of the candidate models can be used now:\n  " + "\n  ".join(reasons),
                            hint="unload models to free memory, ask for a shorter context, or add smaller models")

    @staticmethod
    def _candidate(candidate: Candidate) -> tuple[str | None, str]:
        if isinstance(candidate, str):
            return None, candidate
        if isinstance(candidate, tuple):
            return candidate[0], candidate[1]
        if not candidate.model:
            raise ConfigurationError(f"candidate {candidate!r} names no model",
                                     hint="give a model id, (endpoint, model), or a target with `model` set")
        return candidate.endpoint, candidate.model

    # -- load / unload -----------------------------------------------------------------------------

    async def aload(self, model_id: str, *, endpoint: str | None = None, context_length: int | None = None,
                    ttl: float | None = None, progress: ProgressCallback | None = None,
                    check_fit: bool = True, options: LoadOptions = NO_OPTIONS) -> LoadResult:
        """Make ``model_id`` loaded (reusing an adequate instance); see the module docstring."""
        if context_length is not None and context_length < 1:
            raise ConfigurationError(f"context_length must be positive, got {context_length}")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError(f"ttl must be positive seconds, got {ttl}")
        if isinstance(options.gpu, float) and not 0.0 <= options.gpu <= 1.0:
            raise ConfigurationError(f"GPU offload must be a ratio from 0 to 1, `max` or `off`; got {options.gpu}")
        key = (id(asyncio.get_running_loop()), endpoint, model_id, context_length, ttl, check_fit, options)
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._load(model_id, endpoint, context_length, ttl, progress, check_fit,
                                                      options))
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    async def _load(self, model_id: str, endpoint_name: str | None, context_length: int | None,
                    ttl: float | None, progress: ProgressCallback | None, check_fit: bool,
                    options: LoadOptions) -> LoadResult:
        started = time.monotonic()
        server_reports = False

        def report(stage: Any, fraction: float | None, message: str = "", *, estimated: bool = False) -> None:
            if progress is not None and not (estimated and server_reports):
                progress(LoadProgress(stage, model_id, fraction, time.monotonic() - started, message, estimated))

        def server_progress(fraction: float) -> None:
            nonlocal server_reports
            server_reports = True
            report("loading", min(1.0, max(0.0, fraction)), "LM Studio's load progress")

        report("checking", 0.0, "looking up the model")
        model = await self.catalog.aresolve(model_id, endpoint=endpoint_name)
        endpoint = self.catalog.endpoint(model.endpoint)
        async with self._lock(endpoint.name):
            model = await self.catalog.aresolve(model.id, endpoint=endpoint.name, refresh=True)
            instance = None if options.identifier else adequate_instance(model, context_length)
            if instance is not None:
                report("reused", 1.0, f"already loaded as {instance.id}")
                return LoadResult(model, instance.id, instance.context_length, True, instance.ttl, None,
                                  time.monotonic() - started)
            estimate = None
            if check_fit:
                freed = self._bytes_held(model)
                fit_report = self.fit_report(model, context_length=context_length, freed_bytes=freed)
                estimate = fit_report.estimate
                if fit_report.fits is False:
                    raise self._refusal(fit_report)
            async with client_for(endpoint) as client:
                driver = self.catalog.driver(endpoint, client)
                if model.instances and not options.identifier:
                    report("unloading", 0.0, "unloading instances with too small a context")
                    await driver.unload(model, [i.id for i in model.instances])
                report("loading", 0.0, f"loading on {endpoint.name}")
                heartbeat = asyncio.ensure_future(self._heartbeat(report, model, started))
                try:
                    loaded = await driver.load(model, context_length=context_length, ttl=ttl, options=options,
                                               progress=server_progress)
                finally:
                    heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heartbeat
            self.catalog.invalidate(endpoint.name)
            with contextlib.suppress(MindgateError):  # the load succeeded; a failed re-read only costs detail
                model = await self.catalog.aresolve(model.id, endpoint=endpoint.name)
            context = loaded.context_length or next(
                (i.context_length for i in model.instances if i.id == loaded.id), None)
            report("loaded", 1.0, f"loaded as {loaded.id}")
            return LoadResult(model, loaded.id, context, False, ttl, estimate, time.monotonic() - started)

    @staticmethod
    def _bytes_held(model: ModelInfo) -> int:
        """Memory the model's current (inadequate) instances hold, freed when they are unloaded first."""
        if not model.instances or not model.size_bytes:
            return 0
        shape = fit.ModelShape(model.size_bytes, model.kv_elements_per_token, model.max_context_length)
        return sum(fit.estimate(shape, i.context_length or DEFAULT_SERVER_CONTEXT).total_bytes
                   for i in model.instances)

    @staticmethod
    async def _heartbeat(report: Callable[..., None], model: ModelInfo, started: float) -> None:
        expected = 0.5 + (model.size_bytes or 0) / LOAD_BYTES_PER_SECOND
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            report("loading", min(0.95, (time.monotonic() - started) / expected), estimated=True)

    async def aunload(self, model_id: str, *, endpoint: str | None = None) -> list[str]:
        """Unload ``model_id`` (every instance, or just the one when ``model_id`` is an instance id such as
        ``model:2``); returns the instance ids unloaded (empty when it was not loaded)."""
        model = await self.catalog.aresolve(model_id, endpoint=endpoint)
        target = self.catalog.endpoint(model.endpoint)
        async with self._lock(target.name):
            model = await self.catalog.aresolve(model.id, endpoint=target.name, refresh=True)
            if model.state is not ModelState.LOADED:
                return []
            named = [i.id for i in model.instances if i.id == model_id and i.id != model.id]
            ids = named or [i.id for i in model.instances]
            async with client_for(target) as client:
                done = await self.catalog.driver(target, client).unload(model, ids)
            self.catalog.invalidate(target.name)
            return done

    async def aunload_all(self, *, endpoint: str | None = None) -> list[str]:
        """Unload every loaded model (on ``endpoint``, or on every endpoint); returns the instance ids."""
        listing = await self.catalog.alist(refresh=True, endpoint=endpoint)
        done: list[str] = []
        for model in listing.loaded:
            done += await self.aunload(model.id, endpoint=model.endpoint)
        return done

    async def adownload(self, model_id: str, *, endpoint: str | None = None, quantization: str | None = None,
                        job_id: str | None = None, progress: DownloadCallback | None = None) -> DownloadProgress:
        """Download ``model_id`` onto ``endpoint``'s server (default: the first LM Studio endpoint, else the first
        Ollama one),
        or follow its download job ``job_id`` (LM Studio); returns the final state. A failed download raises
        ProviderError with the server's reason."""
        target = self._download_endpoint(endpoint)
        key = (target.name, model_id if job_id is None else f"job:{job_id}")

        def track(state: DownloadProgress) -> None:
            self._downloads[key] = state
            if progress is not None:
                progress(state)

        try:
            async with client_for(target) as client:
                final = await self.catalog.driver(target, client).download(
                    model_id, quantization=quantization, progress=track, job_id=job_id)
        finally:
            self.catalog.invalidate(target.name)
        if final.status == "failed":
            raise ProviderError(f"downloading {model_id} on {target.name} failed"
                                + (f": {final.message}" if final.message else ""), provider=target.provider,
                                retryable=True, hint=f"try again; `mindgate models get {model_id}"
                                                     + (f" --job {final.job_id}`" if final.job_id else "`")
                                                     + " resumes where the server can")
        return final

    def downloads(self) -> list[DownloadProgress]:
        """Downloads this manager started or followed, running ones first (finished ones stay listed)."""
        return sorted(self._downloads.values(), key=lambda d: d.done)

    def _download_endpoint(self, name: str | None) -> Endpoint:
        if name is not None:
            return self.catalog.endpoint(name)
        for provider in ("lmstudio", "ollama"):
            for endpoint in self.catalog.endpoints:
                if endpoint.provider == provider:
                    return endpoint
        raise ConfigurationError("no LM Studio or Ollama endpoint is configured to download to",
                                 hint="configure one under `providers:`, or pass --endpoint")

    async def aps(self, *, refresh: bool = True) -> list[ModelInfo]:
        """Loaded models across endpoints (fresh by default)."""
        return (await self.catalog.alist(refresh=refresh)).loaded

    # -- sync facade -------------------------------------------------------------------------------

    def load(self, model_id: str, **kwargs: Any) -> LoadResult:
        return run_sync(self.aload(model_id, **kwargs))

    def unload(self, model_id: str, *, endpoint: str | None = None) -> list[str]:
        return run_sync(self.aunload(model_id, endpoint=endpoint))

    def unload_all(self, *, endpoint: str | None = None) -> list[str]:
        return run_sync(self.aunload_all(endpoint=endpoint))

    def download(self, model_id: str, **kwargs: Any) -> DownloadProgress:
        return run_sync(self.adownload(model_id, **kwargs))

    def ps(self, *, refresh: bool = True) -> list[ModelInfo]:
        return run_sync(self.aps(refresh=refresh))

    def estimate(self, model_id: str, **kwargs: Any) -> FitReport:
        return run_sync(self.aestimate(model_id, **kwargs))

    def select(self, candidates: Sequence[Candidate], **kwargs: Any) -> FitReport:
        return run_sync(self.aselect(candidates, **kwargs))
