"""Fit-aware admission: before a request goes to a model on this machine that is not loaded, check that
it fits free memory, make room by unloading idle models (least recently used first), or refuse so the
router moves on to the next target, saying why.

Contract:

* :meth:`Placement.admit` reads only the published resource snapshot (:mod:`mindgate.models.monitor`)
  and in-process state; a loaded model is admitted at once, without a lock. A model whose memory need is
  unknown here (a server on another machine, a model found only at first use) is admitted as ``unknown``.
* The need is the memory estimate of :mod:`mindgate.models.fit` (weights + KV cache for the context the
  model is loaded with + overhead) plus ``reserve_bytes``. Free memory is the snapshot's, corrected for
  the loads and unloads decided since that snapshot was taken, so a model is never counted twice: once
  by the snapshot and once by the correction.
* Room is made only from idle models: not in use, not pinned (``pinned`` names a target, a model or an
  instance), least recently used first, and only when the unloads free enough; otherwise nothing is
  unloaded. Models with an idle TTL keep it: eviction only ever unloads earlier.
* Decisions that change something (load, unload, skip) go to the :class:`DecisionLog`.

Models on this machine are those of the in-process engine (:class:`~mindgate.models.local_pool.LocalModelPool`);
the placement recognises a chat model by its ``model_path`` and ``n_ctx`` (the local provider's model).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mindgate.config import ResourcesConfig, mindgate_home
from mindgate.models import fit
from mindgate.models.decisions import FILE_NAME, DecisionLog
from mindgate.models.gguf_info import read_gguf_info
from mindgate.models.local_pool import LocalInstance, LocalModelPool, default_pool
from mindgate.models.monitor import ResourceSource, default_monitor
from mindgate.models.resources import format_bytes


@dataclass(frozen=True)
class Footprint:
    """What one chat model needs on this machine: ``key`` identifies the loaded instance it would use."""

    key: str
    label: str
    estimate: fit.MemoryEstimate
    loaded: bool
    group: str = ""
    gpu: bool = False


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


@lru_cache(maxsize=64)
def _resolved(path: Path) -> Path:
    return path.resolve()


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

    # -- what a model needs and holds ------------------------------------------------------------------

    def footprint(self, model: Any) -> Footprint | None:
        """The model's need on this machine; None when it is not a model of this machine's engine."""
        path, n_ctx = getattr(model, "model_path", None), getattr(model, "n_ctx", None)
        if getattr(model, "provider", None) != "local" or not isinstance(path, Path) or not isinstance(n_ctx, int):
            return None
        pool: LocalModelPool = getattr(model, "pool", None) or self.pool
        resolved = _resolved(path)
        estimate = fit.estimate(_local_shape(resolved), n_ctx)
        loaded = pool.holds(resolved, n_ctx)
        return Footprint(f"{resolved}@ctx{n_ctx}", f"{path.stem}@ctx{n_ctx}", estimate, loaded, str(resolved))

    def held_bytes(self, model: Any) -> int:
        """Memory ``model`` holds now (its estimate when loaded, else 0): free to itself, never counted twice."""
        footprint = self.footprint(model)
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
        footprint = self.footprint(model) if self.check_fit else None
        if footprint is None:
            return Verdict(True, "unknown", "memory need not known here")
        if footprint.loaded:
            return Verdict(True, "loaded")
        async with self._lock():
            footprint = self.footprint(model) or footprint  # another request may have loaded it meanwhile
            if footprint.loaded:
                return Verdict(True, "loaded")
            return await self._place(footprint, target, chain)

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
