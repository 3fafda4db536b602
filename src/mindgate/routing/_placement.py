"""Fit-aware admission: before a request goes to a model on this machine that is not loaded, check that
it fits free memory, make room by unloading idle models (least recently used first), or refuse so the
router moves on to the next target, saying why.

Contract:

* :meth:`Placement.admit` reads only the published resource snapshot (:mod:`mindgate.models._monitor`)
  and in-process state; a loaded model is admitted at once, without a lock. A model whose memory need is
  unknown here (a server on another machine, a model found only at first use) is admitted as ``unknown``.
* The need is the memory estimate of :mod:`mindgate.providers.management._fit` (weights + KV cache for the context the
  model is loaded with + overhead) plus ``reserve_bytes``. Free memory is the snapshot's, corrected for
  the loads and unloads decided since that snapshot was taken, so a model is never counted twice: once
  by the snapshot and once by the correction.
* Room is made only from idle models: not in use, not pinned (``pinned`` names a target, a model or an
  instance), least recently used first, and only when the unloads free enough; otherwise nothing is
  unloaded. Models with an idle TTL keep it: eviction only ever unloads earlier.
* Decisions that change something (load, unload, skip) go to the :class:`DecisionLog`.

Models on this machine are those of the in-process engine (:class:`~mindgate.providers.local._pool.LocalModelPool`),
recognised by their ``model_path`` and ``n_ctx``, and, once a catalog is attached (:meth:`Placement.attach`,
the gateway does), the models of LM Studio and Ollama servers on a loopback address, known from the
catalog's background listing (size, shape, loaded or not; a load decided here counts as loaded until the
next listing says otherwise). Server models are checked and loaded (the server loads on first use) but never
unloaded to make room: mindgate cannot see whether another client is using them; their own TTL (LM Studio's
``ttl``, Ollama's ``keep_alive``) unloads them. In-process models may be unloaded to make room for them.
The ``auto`` chain's servers are checked from the second request on (the first one finds their model).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mindgate.config import ResourcesConfig, mindgate_home
from mindgate.models._catalog import ModelCatalog, matches
from mindgate.models._decisions import FILE_NAME, DecisionLog
from mindgate.models._monitor import ResourceSource, default_monitor
from mindgate.providers.local._pool import LocalInstance, LocalModelPool, default_pool
from mindgate.providers.management import _fit as fit
from mindgate.providers.management._driver import loads_on_demand
from mindgate.providers.management._gguf_info import read_gguf_info
from mindgate.providers.management._resources import format_bytes


@dataclass(frozen=True)
class Footprint:
    """What one chat model needs on this machine: ``key`` identifies the loaded instance it would use."""

    key: str
    label: str
    estimate: fit.MemoryEstimate
    loaded: bool
    group: str = ""
    gpu: bool = False


_Described = tuple[Footprint, Footprint, Path, int, LocalModelPool]
"""A local model's footprint when not loaded and when loaded, its resolved path, context and pool."""


@dataclass(frozen=True)
class Resident:
    """A loaded model that could be unloaded to make room."""

    key: str
    label: str
    held_bytes: int
    group: str
    last_used: float
    in_use: bool
    pinned: bool
    unload: Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Verdict:
    """``ok`` False means the router should move on. ``action``: ``loaded`` (already), ``load`` (fits),
    ``load after unloading`` (room was made), ``unknown`` (need not known here), ``no fit``."""

    ok: bool
    action: str
    reason: str = ""
    evicted: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.action} ({self.reason})" if self.reason else self.action


_LOADED = Verdict(True, "loaded")
_UNKNOWN = Verdict(True, "unknown", "memory need not known here")


SERVER_CONTEXT = 4096  # what LM Studio and Ollama load with when nothing says otherwise
_shapes: dict[tuple[int, int, int, int], fit.ModelShape] = {}


@lru_cache(maxsize=64)
def _local_shape(path: Path) -> fit.ModelShape:
    """The GGUF's shape, looked up once per path (the request path makes no system call for it) and read
    once per file: hard links and other names of one file share the (slow) header read."""
    stat = path.stat()
    identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    shape = _shapes.get(identity)
    if shape is None:
        shape = _shapes[identity] = fit.ModelShape.from_gguf(read_gguf_info(path))
    return shape




class Placement:
    """Admission by fit over one resource source and the in-process engine's pool; see the module
    docstring."""

    def __init__(self, source: ResourceSource, *, pool: LocalModelPool | None = None, evict: bool = True,
                 pinned: Iterable[str] = (), reserve_bytes: int = 0, decisions: DecisionLog | None = None,
                 check_fit: bool = True) -> None:
        self.source = source
        self.check_fit = check_fit
        self.pool = pool or default_pool()
        self.evict = evict
        self.pinned = frozenset(pinned)
        self.reserve_bytes = reserve_bytes
        self.decisions = decisions or DecisionLog()
        self._pending: list[tuple[float, int]] = []  # (time.time(), bytes taken (+) or given back (-))
        self._pending_lock = threading.Lock()
        self._locks: dict[int, asyncio.Lock] = {}
        self._known: dict[int, tuple[Any, _Described | None]] = {}
        self.catalog: ModelCatalog | None = None
        self._assumed: dict[str, float] = {}  # server model key -> when a load was decided (monotonic)

    def attach(self, catalog: ModelCatalog) -> None:
        """Check LM Studio and Ollama models on this machine too, as ``catalog`` lists them."""
        self.catalog = catalog

    # -- what a model needs and holds ------------------------------------------------------------------

    def footprint(self, model: Any) -> Footprint | None:
        """The model's need on this machine; None when it is not a model of this machine's engine. What
        does not change (path, estimate) is worked out once per model; per call only the pool is asked."""
        described = self._described(model)
        if described is None:
            return None
        unloaded, loaded, resolved, n_ctx, pool = described
        return loaded if pool.holds(resolved, n_ctx) else unloaded

    def _described(self, model: Any) -> _Described | None:
        known = self._known.get(id(model))
        if known is None or known[0] is not model:
            known = self._known[id(model)] = (model, self._describe(model))
        return known[1]

    def _describe(self, model: Any) -> _Described | None:
        path, n_ctx = getattr(model, "model_path", None), getattr(model, "n_ctx", None)
        if getattr(model, "provider", None) != "local" or not isinstance(path, Path) or not isinstance(n_ctx, int):
            return None
        pool: LocalModelPool = getattr(model, "pool", None) or self.pool
        resolved = path.resolve()
        estimate = fit.estimate(_local_shape(resolved), n_ctx)
        unloaded = Footprint(f"{resolved}@ctx{n_ctx}", f"{path.stem}@ctx{n_ctx}", estimate, False, str(resolved))
        return unloaded, dataclasses.replace(unloaded, loaded=True), resolved, n_ctx, pool

    def server_footprint(self, model: Any) -> Footprint | None:
        """The need of an LM Studio or Ollama model on a loopback server, from the catalog's last listing;
        None when there is no catalog, the server is elsewhere, or the listing does not give the size."""
        catalog = self.catalog
        model = getattr(model, "resolved_model", None) or model  # the auto chain's servers, once found
        provider = getattr(model, "provider", None)
        base = getattr(getattr(model, "client", None), "base_url", None)
        if catalog is None or not loads_on_demand(provider) or not isinstance(base, str):
            return None
        root = base.rstrip("/").removesuffix("/v1")
        endpoint = next((e for e in catalog.endpoints if e.provider == provider and e.url == root), None)
        if endpoint is None or not endpoint.on_this_machine:
            return None
        info = next((m for m in catalog.cached_models()
                     if m.endpoint == endpoint.name and matches(m, str(getattr(model, "model", "")))), None)
        if info is None or not info.size_bytes:
            return None
        context = info.loaded_context_length or endpoint.n_ctx or SERVER_CONTEXT
        if info.max_context_length:
            context = min(context, info.max_context_length)
        shape = fit.ModelShape(info.size_bytes, info.kv_elements_per_token, info.max_context_length)
        key = f"{endpoint.name}:{info.id}"
        assumed = self._assumed.get(key)
        listed = catalog.listed_at(endpoint.name)
        loaded = info.loaded or (assumed is not None and (listed is None or listed < assumed))
        return Footprint(key, key, fit.estimate(shape, context), loaded, key, gpu=True)

    @staticmethod
    def uses_gpu(model: Any) -> bool:
        """Whether ``model`` may use free VRAM: servers that load on demand (LM Studio, Ollama) offload to the
        GPU; the in-process engine here runs on the CPU."""
        model = getattr(model, "resolved_model", None) or model
        return loads_on_demand(getattr(model, "provider", None))

    def held_bytes(self, model: Any) -> int:
        """Memory ``model`` holds now (its estimate when loaded, else 0): free to itself, never counted twice."""
        footprint = self.footprint(model) or self.server_footprint(model)
        return footprint.estimate.total_bytes if footprint is not None and footprint.loaded else 0

    def residents(self) -> list[Resident]:
        """Loaded models of this machine, least recently used first."""
        out = []
        for instance in self.pool.instances():
            shape = _local_shape(instance.path)
            pinned = bool(self.pinned & {instance.id, instance.path.stem, instance.path.name, str(instance.path)})
            out.append(Resident(f"{instance.path}@ctx{instance.n_ctx}", instance.id,
                                fit.estimate(shape, instance.n_ctx).total_bytes, str(instance.path),
                                instance.last_used, instance.in_use, pinned, self._unloader(instance)))
        return sorted(out, key=lambda r: r.last_used)

    def _unloader(self, instance: LocalInstance) -> Callable[[], Awaitable[Any]]:
        async def unload() -> Any:
            return await self.pool.aunload(instance.path, n_ctx=instance.n_ctx)

        return unload

    def pending_bytes(self) -> int:
        """Bytes taken (less those given back) by loads and unloads decided after the latest reading."""
        reading = self.source.latest()
        with self._pending_lock:
            self._pending = [(at, delta) for at, delta in self._pending if at > reading.taken_at]
            return sum(delta for _, delta in self._pending)

    def free_bytes(self, *, gpu: bool = False) -> int:
        """The latest reading's free memory, corrected for loads and unloads decided after it was taken."""
        return self.source.latest().free_bytes(gpu=gpu) - self.pending_bytes()

    def _note(self, delta: int) -> None:
        with self._pending_lock:
            self._pending.append((time.time(), delta))

    # -- admission -----------------------------------------------------------------------------------

    async def admit(self, model: Any, *, target: str, chain: str) -> Verdict:
        if not self.check_fit:
            return _UNKNOWN
        described = self._described(model)
        if described is None:
            return await self._admit_server(model, target, chain)
        unloaded, _, resolved, n_ctx, pool = described
        if pool.holds(resolved, n_ctx):
            return _LOADED
        async with self._lock():
            if pool.holds(resolved, n_ctx):  # another request loaded it meanwhile
                return _LOADED
            return await self._place(unloaded, target, chain)

    async def _admit_server(self, model: Any, target: str, chain: str) -> Verdict:
        footprint = self.server_footprint(model)
        if footprint is None:
            return _UNKNOWN
        if footprint.loaded:
            return _LOADED
        async with self._lock():
            verdict = await self._place(footprint, target, chain)
            if verdict.ok:
                self._assumed[footprint.key] = time.monotonic()
            return verdict

    def _lock(self) -> asyncio.Lock:
        key = id(asyncio.get_running_loop())
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _place(self, footprint: Footprint, target: str, chain: str) -> Verdict:
        need = footprint.estimate.total_bytes + self.reserve_bytes
        free = self.free_bytes(gpu=footprint.gpu)
        needs = f"needs {format_bytes(need)}, {format_bytes(free)} free"
        residents = self.residents()
        # the pool itself replaces an idle smaller-context copy of the same file when it loads this one
        replaced = sum(r.held_bytes for r in residents if r.group == footprint.group and not r.in_use)
        idle = [r for r in residents if r.group != footprint.group and not r.in_use and not r.pinned]
        chosen: list[Resident] = []
        freed = replaced
        for resident in idle if self.evict else []:
            if free + freed >= need:
                break
            chosen.append(resident)
            freed += resident.held_bytes
        if free + freed < need:
            reason = f"{footprint.label} does not fit: {needs}" + self._why_not_evicted(free + freed)
            self.decisions.record(chain, target, "skip", reason)
            return Verdict(False, "no fit", reason)
        for resident in chosen:
            await resident.unload()
            self._note(-resident.held_bytes)
            self.decisions.record(chain, resident.label, "unload",
                                  f"idle (least recently used) to make room for {footprint.label}: "
                                  f"frees {format_bytes(resident.held_bytes)}")
        self._note(footprint.estimate.total_bytes - replaced)
        if not chosen:
            self.decisions.record(chain, target, "load", f"{footprint.label} fits: {needs}")
            return Verdict(True, "load", needs)
        names = tuple(r.label for r in chosen)
        reason = f"{needs}; unloaded {', '.join(names)}"
        self.decisions.record(chain, target, "load", f"{footprint.label} after unloading: {reason}")
        return Verdict(True, "load after unloading", reason, names)

    def _why_not_evicted(self, could_free: int) -> str:
        if not self.evict:
            return " (unloading idle models is off)"
        held = [r for r in self.residents() if r.in_use or r.pinned]
        kept = ", ".join(f"{r.label} ({'in use' if r.in_use else 'pinned'})" for r in held)
        return (f"; even with every idle model unloaded only {format_bytes(could_free)} would be free"
                + (f"; kept loaded: {kept}" if kept else ""))


_shared: Placement | None = None
_shared_lock = threading.Lock()


def shared_placement(settings: ResourcesConfig | None = None) -> Placement:
    """The process-wide placement over the resource monitor and the local pool; its decisions are also
    written to ``MINDGATE_HOME/switching.jsonl`` for ``mindgate doctor``. ``settings`` (the config's
    ``resources`` section) apply to it from then on."""
    global _shared
    settings = settings or ResourcesConfig()
    with _shared_lock:
        if _shared is None:
            _shared = Placement(default_monitor(settings.sample_interval),
                                decisions=DecisionLog(path=mindgate_home() / FILE_NAME))
        else:
            default_monitor(settings.sample_interval)
        _shared.check_fit = settings.fit_routing
        _shared.evict = settings.evict_idle
        _shared.pinned = frozenset(settings.pinned)
        _shared.reserve_bytes = int(settings.reserve)
        return _shared
