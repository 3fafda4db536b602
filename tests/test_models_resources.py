"""The resource readings and the background monitor.

GPU libraries cannot run here (no NVIDIA or AMD device): the probe takes its libraries from loaders, and
these tests hand it small doubles of ``pynvml`` / ``amdsmi`` (labelled as such below) with the calls the
real libraries document. RAM and CPU readings are real (psutil).
"""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from mindgate.models._monitor import ResourceMonitor
from mindgate.providers.management import _resources as resources
from mindgate.providers.management._resources import NO_GPU_LIBRARY, GPUProbe, Resources, read_resources

GiB = 2**30


class NVMLDouble:
    """LIBRARY DOUBLE of pynvml (nvidia-ml-py): two GPUs; ``fail`` makes the memory query raise, as the
    driver does when a GPU falls off the bus."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        if self.fail is not None and handle == 1:
            raise self.fail
        return SimpleNamespace(total=24 * GiB, free=(20 - handle) * GiB, used=(4 + handle) * GiB)

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA GeForce RTX 4090"


class AMDSMIDouble:
    """LIBRARY DOUBLE of amdsmi: one GPU; memory in bytes as ``amdsmi_get_gpu_memory_total/usage`` give it."""

    AmdSmiMemoryType = SimpleNamespace(VRAM="VRAM")

    def amdsmi_get_processor_handles(self) -> list[str]:
        return ["gpu0"]

    def amdsmi_get_gpu_memory_total(self, handle: str, kind: str) -> int:
        assert kind == "VRAM"
        return 16 * GiB

    def amdsmi_get_gpu_memory_usage(self, handle: str, kind: str) -> int:
        return 6 * GiB

    def amdsmi_get_gpu_asic_info(self, handle: str) -> dict[str, str]:
        return {"market_name": "AMD Radeon RX 7800 XT"}


def _probe(*libraries: Any) -> GPUProbe:
    return GPUProbe(tuple((lambda lib=lib: lib) for lib in libraries))


def test_nvidia_gpus_are_read_per_device() -> None:
    reading = read_resources(_probe(resources._NVML(NVMLDouble())))
    assert [(g.index, g.vendor, g.free_bytes) for g in reading.gpus] == [(0, "nvidia", 20 * GiB),
                                                                        (1, "nvidia", 19 * GiB)]
    assert reading.vram_free_bytes == 39 * GiB and reading.gpu_status == "nvidia-ml-py: 2 GPU(s)"
    assert reading.free_bytes(gpu=True) == reading.ram_available_bytes + 39 * GiB


def test_amd_gpus_are_read_through_amdsmi() -> None:
    reading = read_resources(_probe(resources._AMDSMI(AMDSMIDouble())))
    [gpu] = reading.gpus
    assert (gpu.vendor, gpu.name, gpu.total_bytes, gpu.free_bytes) == ("amd", "AMD Radeon RX 7800 XT", 16 * GiB,
                                                                       10 * GiB)


def test_a_failing_gpu_library_is_reported_not_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 19: a driver error used to vanish in ``except Exception: pass``, leaving a partial or empty GPU
    list that read as "no GPU"; now the reading says VRAM is unknown, and why, and the error is logged."""
    probe = _probe(resources._NVML(NVMLDouble(fail=RuntimeError("GPU has fallen off the bus"))))
    with caplog.at_level(logging.WARNING, logger="mindgate.resources"):
        reading = read_resources(probe)
        read_resources(probe)
    assert reading.gpus == ()
    assert "reading GPU memory failed" in reading.gpu_status and "fallen off the bus" in reading.gpu_status
    assert "VRAM unknown" in reading.gpu_status
    assert [r.message for r in caplog.records].count(reading.gpu_status) == 1  # logged once, not every second


def test_without_a_gpu_library_the_reading_says_so() -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    def no_driver() -> Any:
        raise RuntimeError("NVML Shared Library Not Found")

    assert GPUProbe((missing,)).read() == ((), NO_GPU_LIBRARY)
    assert "nvidia-ml-py" in NO_GPU_LIBRARY and "amdsmi" in NO_GPU_LIBRARY
    gpus, status = GPUProbe((no_driver,)).read()
    assert gpus == () and "no GPU found" in status and "NVML Shared Library Not Found" in status
    real = read_resources()
    assert real.source == "psutil" and real.gpu_status and real.ram_total_bytes > real.ram_available_bytes > 0


def test_monitor_serves_the_published_reading_without_reading_again() -> None:
    reads: list[Resources] = []

    def counted() -> Resources:
        reading = read_resources(_probe())
        reads.append(reading)
        return reading

    monitor = ResourceMonitor(60.0, read=counted)
    try:
        first = monitor.latest()
        assert all(monitor.latest() is first for _ in range(1000)) and len(reads) == 1
        seen: list[Resources] = []
        monitor.subscribe(seen.append)
        fresh = monitor.sample_now()
        assert seen == [first, fresh] and monitor.latest() is fresh and monitor.running
    finally:
        monitor.stop()
    assert not monitor.running


def test_monitor_samples_in_the_background_and_survives_a_failing_subscriber() -> None:
    monitor = ResourceMonitor(0.02, read=lambda: read_resources(_probe()))
    got = threading.Event()
    calls = 0

    def broken(_: Resources) -> None:
        raise ValueError("a consumer's bug")

    def counting(_: Resources) -> None:
        nonlocal calls
        calls += 1
        if calls >= 4:
            got.set()

    try:
        monitor.subscribe(broken)
        monitor.subscribe(counting)
        assert got.wait(5), "the monitor stopped sampling"
        before = monitor.latest().taken_at
        time.sleep(0.1)
        assert monitor.latest().taken_at > before
    finally:
        monitor.stop()
