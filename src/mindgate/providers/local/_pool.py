"""The in-process engine's loaded models: one ``llama_cpp.Llama`` per (GGUF path, context length), shared by
everything in the process, loaded on first use, unloaded on request or after an idle TTL.

Contract (thread-safe; the async methods run the blocking work in a thread):

* ``with pool.lease(path, n_ctx=4096) as llama:`` gives exclusive use of a loaded ``Llama`` whose context
  is at least ``n_ctx`` (an already-loaded one is reused; a smaller-context copy not in use is replaced, so
  a file is never held twice without need). Leases of the same instance run one at a time (llama.cpp
  contexts are not thread-safe); a leased instance is never unloaded by the TTL.
* ``load`` / ``unload`` / ``instances`` manage and show what is loaded; loads are serialised.
* Idle TTL: an instance unused for ``ttl`` seconds (per load or lease, the latest given wins, else the
  pool's ``default_ttl``; None = never) is unloaded by a background thread.
* Before loading, the memory need (weights + KV cache + overhead, :mod:`mindgate.providers.management._fit`) is checked
  against available RAM (plus free VRAM when layers are offloaded); a model that does not fit raises
  :class:`~mindgate.providers.management._fit.InsufficientMemoryError` naming a context length that would fit.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindgate._assets import default_gguf_path
from mindgate.errors import ConfigurationError, ProviderError
from mindgate.providers.management import _fit as fit
from mindgate.providers.management import _resources as resources
from mindgate.providers.management._gguf_info import read_gguf_info

DEFAULT_N_CTX = 4096


@dataclass(frozen=True)
class LocalInstance:
    """A loaded local model as the pool reports it (times are ``time.monotonic()`` seconds)."""

    path: Path
    n_ctx: int
    loaded_at: float
    last_used: float
    ttl: float | None
    in_use: bool

    @property
    def id(self) -> str:
        return f"{self.path.stem}@ctx{self.n_ctx}"


@dataclass
class _Slot:
    llama: Any
    path: Path
    n_ctx: int
    ttl: float | None
    loaded_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0
    use_lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> LocalInstance:
        return LocalInstance(self.path, self.n_ctx, self.loaded_at, self.last_used, self.ttl, self.leases > 0)


def _default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


class LocalModelPool:
    """Loaded ``llama_cpp.Llama`` instances keyed by (path, n_ctx); see the module docstring."""

    def __init__(self, *, default_ttl: float | None = None, n_threads: int | None = None,
                 check_fit: bool = True) -> None:
        self.default_ttl = default_ttl
        self.n_threads = n_threads
        self.check_fit = check_fit
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._reaper: threading.Thread | None = None

    # -- public API --------------------------------------------------------------------------------

    @contextmanager
    def lease(self, path: str | Path | None = None, *, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None,
              ttl: float | None = None, **llama_kwargs: Any) -> Iterator[Any]:
        """Exclusive use of a loaded ``Llama`` for ``path`` with at least ``n_ctx`` tokens of context."""
        slot = self._acquire(self._resolve(path), n_ctx, n_threads, ttl, llama_kwargs)
        try:
            with slot.use_lock:
                yield slot.llama
        finally:
            with self._lock:
                slot.leases -= 1
                slot.last_used = time.monotonic()

    def load(self, path: str | Path | None = None, *, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None,
             ttl: float | None = None, **llama_kwargs: Any) -> LocalInstance:
        """Load (or reuse) the model; returns the instance. ``ttl`` replaces the instance's idle TTL."""
        slot = self._acquire(self._resolve(path), n_ctx, n_threads, ttl, llama_kwargs)
        with self._lock:
            slot.leases -= 1
            if ttl is not None:
                slot.ttl = ttl
                self._ensure_reaper()
            return slot.view()

    def unload(self, path: str | Path | None = None, *, n_ctx: int | None = None) -> list[LocalInstance]:
        """Unload the instances of ``path`` (all loaded models when None; only ``n_ctx`` when given).
        Waits for a lease in progress on an instance to finish before freeing it."""
        target = self._resolve(path) if path is not None else None
        with self._lock:
            chosen = [s for s in self._slots
                      if (target is None or s.path == target) and (n_ctx is None or s.n_ctx == n_ctx)]
            self._slots = [s for s in self._slots if s not in chosen]
        for slot in chosen:
            self._free(slot)
        return [s.view() for s in chosen]

    def instances(self) -> list[LocalInstance]:
        with self._lock:
            return [s.view() for s in self._slots]

    def find(self, path: str | Path | None = None, *, n_ctx: int | None = None) -> LocalInstance | None:
        """The loaded instance of ``path`` with the smallest context of at least ``n_ctx``, if any."""
        target = self._resolve(path)
        with self._lock:
            slot = self._adequate(target, n_ctx or 0)
            return slot.view() if slot else None

    def holds(self, resolved: Path, n_ctx: int) -> bool:
        """Whether an instance of the already-resolved ``resolved`` with at least ``n_ctx`` tokens is loaded
        (no file system access: for the request path)."""
        with self._lock:
            return self._adequate(resolved, n_ctx) is not None

    def close(self) -> None:
        """Unload everything and stop the TTL thread."""
        self._closed = True
        self._wake.set()
        self.unload()

    async def aload(self, path: str | Path | None = None, **kwargs: Any) -> LocalInstance:
        return await asyncio.to_thread(lambda: self.load(path, **kwargs))

    async def aunload(self, path: str | Path | None = None, *, n_ctx: int | None = None) -> list[LocalInstance]:
        return await asyncio.to_thread(lambda: self.unload(path, n_ctx=n_ctx))

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _resolve(path: str | Path | None) -> Path:
        file = Path(path).expanduser() if path else default_gguf_path()
        if not file.is_file():
            raise ConfigurationError(f"GGUF model file not found: {file}",
                                     hint="set `model_path` to a .gguf file, or leave it out for the shipped "
                                          "SmolLM2-135M-Instruct")
        return file.resolve()

    def _adequate(self, path: Path, n_ctx: int) -> _Slot | None:
        fitting = [s for s in self._slots if s.path == path and s.n_ctx >= n_ctx]
        return min(fitting, key=lambda s: s.n_ctx) if fitting else None

    def _acquire(self, path: Path, n_ctx: int, n_threads: int | None, ttl: float | None,
                 llama_kwargs: dict[str, Any]) -> _Slot:
        """A slot with a lease taken (``leases`` incremented), loading it when needed."""
        if n_ctx < 1:
            raise ConfigurationError(f"n_ctx must be positive, got {n_ctx}")
        with self._lock:
            slot = self._adequate(path, n_ctx)
            if slot is not None:
                return self._take(slot, ttl)
        with self._load_lock:
            with self._lock:  # another thread may have loaded it while this one waited
                slot = self._adequate(path, n_ctx)
                if slot is not None:
                    return self._take(slot, ttl)
                smaller = [s for s in self._slots if s.path == path and s.leases == 0]
                self._slots = [s for s in self._slots if s not in smaller]
            for old in smaller:
                self._free(old)
            if self.check_fit:
                self._check_fit(path, n_ctx, gpu=bool(llama_kwargs.get("n_gpu_layers")))
            llama = self._new_llama(path, n_ctx, n_threads or self.n_threads or _default_threads(), llama_kwargs)
            slot = _Slot(llama, path, n_ctx, ttl if ttl is not None else self.default_ttl, leases=1)
            with self._lock:
                self._slots.append(slot)
                if slot.ttl is not None:
                    self._ensure_reaper()
            return slot

    def _take(self, slot: _Slot, ttl: float | None) -> _Slot:
        """Lease ``slot`` (caller holds ``_lock``); a given ``ttl`` becomes the instance's idle TTL."""
        slot.leases += 1
        if ttl is not None and slot.ttl != ttl:
            slot.ttl = ttl
            self._ensure_reaper()
        return slot

    @staticmethod
    def _check_fit(path: Path, n_ctx: int, *, gpu: bool) -> None:
        shape = fit.ModelShape.from_gguf(read_gguf_info(path))
        needed = fit.estimate(shape, n_ctx)
        free = resources.snapshot(max_age=0).free_bytes(gpu=gpu)
        if needed.total_bytes > free:
            shorter = fit.max_fitting_context(shape, free, upper=n_ctx)
            raise fit.refusal(f"local model {path.name} with a {n_ctx}-token context", needed, free,
                              shorter_context=shorter)

    @staticmethod
    def _new_llama(path: Path, n_ctx: int, n_threads: int, llama_kwargs: dict[str, Any]) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigurationError("the local chat engine needs llama-cpp-python",
                                     hint="pip install 'mindgate[local]'") from None
        kwargs = {"n_threads_batch": n_threads, "verbose": False, **llama_kwargs}
        try:
            return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(f"llama.cpp could not load {path}: {exc}", provider="local", retryable=False,
                                hint="check that the file is a valid GGUF model") from None

    @staticmethod
    def _free(slot: _Slot) -> None:
        with slot.use_lock:
            close: Callable[[], None] | None = getattr(slot.llama, "close", None)
            if close is not None:
                close()
            slot.llama = None

    def _ensure_reaper(self) -> None:
        """Start the TTL thread (caller holds ``_lock``)."""
        self._wake.set()
        if self._reaper is None and not self._closed:
            self._reaper = threading.Thread(target=self._reap_loop, name="mindgate-local-ttl", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        while True:
            with self._lock:
                ttls = [s.ttl for s in self._slots if s.ttl is not None]
                if not ttls or self._closed:
                    self._reaper = None
                    return
            self._wake.wait(timeout=min(max(min(ttls) / 4, 0.05), 30.0))
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                expired = [s for s in self._slots
                           if s.ttl is not None and s.leases == 0 and now - s.last_used >= s.ttl]
                self._slots = [s for s in self._slots if s not in expired]
            for slot in expired:
                self._free(slot)


_default: LocalModelPool | None = None
_default_lock = threading.Lock()


def default_pool() -> LocalModelPool:
    """The process-wide pool the local engine and ``mindgate models`` share."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalModelPool()
        return _default
