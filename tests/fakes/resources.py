"""FAKE RESOURCE FEED (a labelled test double): stands in for the machine's memory readings.

The real source is :class:`mindgate.models._monitor.ResourceMonitor` (psutil + GPU libraries, sampled in a
thread). Tests cannot make this machine run out of memory, so this feed implements the same
``ResourceSource`` contract (``latest`` / ``subscribe``) with readings the test pushes: each ``push``
publishes a :class:`~mindgate.providers.management._resources.Resources` to every subscriber at once, as the monitor's
thread does after each sample. Reading times advance by ``advance`` seconds per push (never behind the
wall clock), so hysteresis timing is driven without sleeping. ``source`` reads ``"fake feed (tests)"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mindgate.providers.management._resources import GPUInfo, Resources

GiB = 2**30
MiB = 2**20
Subscriber = Callable[[Resources], None]


class FakeResourceFeed:
    """Readings pushed by the test (see the module docstring)."""

    def __init__(self, free_bytes: int, *, total_bytes: int = 64 * GiB, vram_free_bytes: int | None = None) -> None:
        self.total_bytes = total_bytes
        self._subscribers: list[Subscriber] = []
        self._latest = self._reading(free_bytes, time.time(), vram_free_bytes)
        self.reads = 0

    def _reading(self, free_bytes: int, at: float, vram_free_bytes: int | None = None) -> Resources:
        gpus = () if vram_free_bytes is None else (GPUInfo(0, "fake GPU", 24 * GiB, vram_free_bytes),)
        return Resources(ram_total_bytes=self.total_bytes, ram_available_bytes=free_bytes, cpu_count=2,
                         cpu_percent=0.0, gpus=gpus, gpu_status="fake feed (tests)", source="fake feed (tests)",
                         taken_at=at)

    def latest(self) -> Resources:
        self.reads += 1
        return self._latest

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        callback(self._latest)
        return lambda: self._subscribers.remove(callback)

    def push(self, free_bytes: int, *, advance: float = 1.0, vram_free_bytes: int | None = None) -> Resources:
        """Publish a reading ``advance`` seconds after the previous one (with one GPU when ``vram_free_bytes``)."""
        self._latest = self._reading(free_bytes, max(time.time(), self._latest.taken_at + advance), vram_free_bytes)
        for callback in list(self._subscribers):
            callback(self._latest)
        return self._latest
