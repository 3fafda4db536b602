"""What this machine has free for models right now: RAM and CPU via psutil, VRAM via NVML.

Contract: :func:`snapshot` is cheap (a few system calls; the result is cached for ``max_age`` seconds)
and never raises for a missing GPU library: without ``nvidia-ml-py`` or an NVIDIA driver, ``gpus`` is
empty. On Apple Silicon, GPU memory is the system RAM (unified memory), so it is reported as RAM and
``unified_memory`` is True. CPU load is the average since the previous call (non-blocking).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass(frozen=True)
class GPUInfo:
    """One NVIDIA GPU as NVML reports it, in bytes."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.free_bytes


@dataclass(frozen=True)
class Resources:
    """A snapshot of the machine's memory and CPU, in bytes and percent."""

    ram_total_bytes: int
    ram_available_bytes: int
    cpu_count: int
    cpu_percent: float
    gpus: tuple[GPUInfo, ...] = ()
    unified_memory: bool = False
    taken_at: float = field(default_factory=time.time)

    @property
    def vram_total_bytes(self) -> int:
        return sum(g.total_bytes for g in self.gpus)

    @property
    def vram_free_bytes(self) -> int:
        return sum(g.free_bytes for g in self.gpus)

    def free_bytes(self, *, gpu: bool = True) -> int:
        """Memory a model could use now: available RAM, plus free VRAM when ``gpu`` (llama.cpp-based
        servers split a model between GPU and CPU, so the two add up)."""
        return self.ram_available_bytes + (self.vram_free_bytes if gpu else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ram_total_bytes": self.ram_total_bytes, "ram_available_bytes": self.ram_available_bytes,
            "cpu_count": self.cpu_count, "cpu_percent": self.cpu_percent, "unified_memory": self.unified_memory,
            "gpus": [{"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_bytes": g.free_bytes}
                     for g in self.gpus],
        }


class _NVML:
    """NVML, initialised once; ``available`` is False when the library or driver is missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._module: Any = None
        self._tried = False

    def _init(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self._module = pynvml
                except Exception:  # no package, no driver, no GPU: all mean "no NVIDIA VRAM here"
                    self._module = None
            return self._module

    def gpus(self) -> tuple[GPUInfo, ...]:
        nvml = self._init()
        if nvml is None:
            return ()
        out = []
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                name = nvml.nvmlDeviceGetName(handle)
                out.append(GPUInfo(i, name.decode() if isinstance(name, bytes) else str(name),
                                   int(memory.total), int(memory.free)))
        except Exception:  # a GPU that vanished or a driver error: report what was read
            pass
        return tuple(out)


_nvml = _NVML()
_cache_lock = threading.Lock()
_cached: Resources | None = None


def _is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def snapshot(max_age: float = 0.5) -> Resources:
    """The machine's free memory and CPU load, at most ``max_age`` seconds old."""
    global _cached
    with _cache_lock:
        if _cached is not None and time.time() - _cached.taken_at <= max_age:
            return _cached
    memory = psutil.virtual_memory()
    resources = Resources(
        ram_total_bytes=int(memory.total),
        ram_available_bytes=int(memory.available),
        cpu_count=os.cpu_count() or 1,
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        gpus=() if _is_apple_silicon() else _nvml.gpus(),
        unified_memory=_is_apple_silicon(),
    )
    with _cache_lock:
        _cached = resources
    return resources


def format_bytes(n: int | float | None) -> str:
    """``1536 * 2**20`` -> ``"1.5 GiB"``; None -> ``"?"``."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
