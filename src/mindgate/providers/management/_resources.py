"""What this machine has free for models right now: RAM and CPU via psutil, VRAM per GPU via the vendor's
management library (NVIDIA: ``nvidia-ml-py``; AMD: ``amdsmi``), Apple unified memory counted as RAM.

Contract: :func:`read_resources` takes one reading (a few system calls) and never raises for a missing or
failing GPU library; instead :attr:`Resources.gpu_status` says what was seen and why VRAM is unknown
("no GPU library: ...", "nvidia-ml-py: reading GPU memory failed: ..."), so nothing is silently reported
as "no GPU". On Apple Silicon, GPU memory is the system RAM (unified memory): it is reported as RAM and
``unified_memory`` is True. CPU load is the average since the previous reading (non-blocking).
:func:`snapshot` is the same reading cached for ``max_age`` seconds; a running gateway reads the
background :class:`~mindgate.models._monitor.ResourceMonitor` instead.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

log = logging.getLogger("mindgate.resources")

NO_GPU_LIBRARY = ("no GPU library: VRAM is not visible (install nvidia-ml-py for NVIDIA GPUs or amdsmi for AMD "
                  "GPUs); models are checked against RAM only")


@dataclass(frozen=True)
class GPUInfo:
    """One GPU as its vendor's library reports it, in bytes; ``vendor`` is ``"nvidia"`` or ``"amd"``."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    vendor: str = "nvidia"


@dataclass(frozen=True)
class Resources:
    """A reading of the machine's memory and CPU, in bytes and percent. ``gpu_status`` says where the GPU
    figures came from or why there are none; ``source`` names what took the reading (``psutil``, or a
    labelled test feed)."""

    ram_total_bytes: int
    ram_available_bytes: int
    cpu_count: int
    cpu_percent: float
    gpus: tuple[GPUInfo, ...] = ()
    unified_memory: bool = False
    gpu_status: str = NO_GPU_LIBRARY
    source: str = "psutil"
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
            "gpus": [{"index": g.index, "name": g.name, "vendor": g.vendor, "total_bytes": g.total_bytes,
                      "free_bytes": g.free_bytes} for g in self.gpus],
            "vram_total_bytes": self.vram_total_bytes, "vram_free_bytes": self.vram_free_bytes,
            "gpu_status": self.gpu_status, "source": self.source, "taken_at": self.taken_at,
        }


class _GPULibrary:
    """One vendor library, initialised once. ``read`` raises when the library fails mid-way."""

    name = ""

    def __init__(self, module: Any) -> None:
        self.module = module

    def read(self) -> tuple[GPUInfo, ...]:
        raise NotImplementedError


class _NVML(_GPULibrary):
    name = "nvidia-ml-py"

    def read(self) -> tuple[GPUInfo, ...]:
        nvml = self.module
        out = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            out.append(GPUInfo(i, name.decode() if isinstance(name, bytes) else str(name),
                               int(memory.total), int(memory.free), "nvidia"))
        return tuple(out)


class _AMDSMI(_GPULibrary):
    name = "amdsmi"

    def read(self) -> tuple[GPUInfo, ...]:
        smi = self.module
        vram = smi.AmdSmiMemoryType.VRAM
        out = []
        for i, handle in enumerate(smi.amdsmi_get_processor_handles()):
            total = int(smi.amdsmi_get_gpu_memory_total(handle, vram))
            used = int(smi.amdsmi_get_gpu_memory_usage(handle, vram))
            name = str((smi.amdsmi_get_gpu_asic_info(handle) or {}).get("market_name") or f"AMD GPU {i}")
            out.append(GPUInfo(i, name, total, max(0, total - used), "amd"))
        return tuple(out)


def _load_nvml() -> _GPULibrary:
    import pynvml

    pynvml.nvmlInit()
    return _NVML(pynvml)


def _load_amdsmi() -> _GPULibrary:
    import amdsmi

    amdsmi.amdsmi_init()
    return _AMDSMI(amdsmi)


class GPUProbe:
    """Finds the GPU libraries present (once) and reads them. ``loaders`` exist for tests, which hand in a
    library double; the default tries nvidia-ml-py, then amdsmi."""

    def __init__(self, loaders: tuple[Callable[[], _GPULibrary], ...] = (_load_nvml, _load_amdsmi)) -> None:
        self._loaders = loaders
        self._lock = threading.Lock()
        self._libraries: list[_GPULibrary] | None = None
        self._absent: list[str] = []
        self._logged: set[str] = set()

    def _init(self) -> list[_GPULibrary]:
        with self._lock:
            if self._libraries is None:
                self._libraries = []
                for load in self._loaders:
                    try:
                        self._libraries.append(load())
                    except ImportError:
                        continue  # the library is not installed: said in the status below
                    except Exception as exc:  # installed, but no driver or no device of that vendor
                        self._absent.append(f"{getattr(load, '__name__', 'library').removeprefix('_load_')}: "
                                            f"{type(exc).__name__}: {exc}")
            return self._libraries

    def read(self) -> tuple[tuple[GPUInfo, ...], str]:
        """``(gpus, status)``; a library that fails contributes no GPUs and says why in ``status``."""
        libraries = self._init()
        if not libraries:
            if self._absent:
                return (), "no GPU found (" + "; ".join(self._absent) + "); models are checked against RAM only"
            return (), NO_GPU_LIBRARY
        gpus: list[GPUInfo] = []
        notes = []
        for library in libraries:
            try:
                found = library.read()
            except Exception as exc:  # a vanished GPU or a driver error: VRAM of this vendor is unknown now
                message = f"{library.name}: reading GPU memory failed ({type(exc).__name__}: {exc}); VRAM unknown"
                if message not in self._logged:
                    self._logged.add(message)
                    log.warning("%s", message)
                notes.append(message)
                continue
            base = len(gpus)
            gpus.extend(GPUInfo(base + g.index, g.name, g.total_bytes, g.free_bytes, g.vendor) for g in found)
            notes.append(f"{library.name}: {len(found)} GPU(s)")
        return tuple(gpus), "; ".join(notes)


_probe = GPUProbe()
_cache_lock = threading.Lock()
_cached: Resources | None = None


def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def read_resources(probe: GPUProbe | None = None) -> Resources:
    """One reading of free memory (RAM, and VRAM per GPU) and CPU load."""
    memory = psutil.virtual_memory()
    if is_apple_silicon():
        gpus: tuple[GPUInfo, ...] = ()
        status = "Apple unified memory: the GPU uses system RAM, counted as RAM"
    else:
        gpus, status = (probe or _probe).read()
    return Resources(ram_total_bytes=int(memory.total), ram_available_bytes=int(memory.available),
                     cpu_count=os.cpu_count() or 1, cpu_percent=float(psutil.cpu_percent(interval=None)),
                     gpus=gpus, unified_memory=is_apple_silicon(), gpu_status=status)


def snapshot(max_age: float = 0.5) -> Resources:
    """:func:`read_resources`, at most ``max_age`` seconds old."""
    global _cached
    with _cache_lock:
        if _cached is not None and time.time() - _cached.taken_at <= max_age:
            return _cached
    resources = read_resources()
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
