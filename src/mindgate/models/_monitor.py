"""The resource monitor: the machine's free memory sampled in a background thread and published, so the
request path reads a snapshot and never makes system calls.

Contract:

* :meth:`ResourceMonitor.latest` returns the newest published
  :class:`~mindgate.providers.management._resources.Resources` (immutable; reading it takes no lock and no
  system call). The first call takes one reading at once.
* The sampling thread (a daemon) starts on first use and reads every ``interval`` seconds
  (``resources.sample_interval``, default 1 s); :meth:`stop` ends it.
* :meth:`subscribe` registers a callback run in the sampling thread after each reading (event-driven
  consumers such as tier policies); it must be quick. A callback that raises is logged, never kills the
  sampler. :meth:`sample_now` takes and publishes a reading at once (after an unload, say).
* Anything with ``latest``/``subscribe`` is a :class:`ResourceSource`; tests pass a labelled fake feed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from mindgate.providers.management._resources import Resources, read_resources

log = logging.getLogger("mindgate.resources")

DEFAULT_INTERVAL = 1.0
Subscriber = Callable[[Resources], None]


class ResourceSource(Protocol):
    """Where the router and the placement read free memory from."""

    def latest(self) -> Resources: ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]: ...


class ResourceMonitor:
    """Samples :func:`~mindgate.providers.management._resources.read_resources` every ``interval`` seconds in a
    thread."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, *, read: Callable[[], Resources] = read_resources) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive seconds, got {interval}")
        self.interval = interval
        self._read = read
        self._latest: Resources | None = None
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> Resources:
        current = self._latest
        if current is None:
            current = self.sample_now()
        if self._thread is None:
            self.start()
        return current

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` after each reading (and once now, with the latest); returns the unsubscriber."""
        with self._lock:
            self._subscribers.append(callback)
        self._notify(callback, self.latest())

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def sample_now(self) -> Resources:
        """Take a reading, publish it to every subscriber, and return it."""
        reading = self._read()
        self._latest = reading
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            self._notify(callback, reading)
        return reading

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mindgate-resources", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample_now()
            except Exception:  # a failed reading keeps the previous one; the next interval tries again
                log.exception("reading the machine's resources failed")

    @staticmethod
    def _notify(callback: Subscriber, reading: Resources) -> None:
        try:
            callback(reading)
        except Exception:  # one consumer's bug must not stop the others or the sampler
            log.exception("a resource subscriber failed")


_default: ResourceMonitor | None = None
_default_lock = threading.Lock()


def default_monitor(interval: float | None = None) -> ResourceMonitor:
    """The process-wide monitor (``interval`` applies when it is created, or changes a running one's)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ResourceMonitor(interval or DEFAULT_INTERVAL)
        elif interval is not None:
            _default.interval = interval
        return _default
