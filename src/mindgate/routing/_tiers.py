"""Tiers: a chain whose targets run from large to small, each with the free memory it needs
(``min_free_memory``), serves new requests from the largest one the machine can hold now.

Contract (driven by the resource monitor's readings, never per request; the request path reads one int):

* Free memory for a tier counts what that tier's own model holds when it is loaded (a loaded model is
  not "using up" the memory it needs), so a model never pushes itself down.
* Down at once: when the current tier's free memory drops below its ``min_free_memory`` (memory
  pressure), the policy moves to the largest tier whose minimum is met (the smallest tier when none is).
* Back up with hysteresis: a larger tier is chosen again only after its free memory has stayed at or
  above ``min_free_memory * (1 + hysteresis)`` for ``recover_after`` seconds (reading times, so a test feed
  drives it without sleeping). Free memory hovering around a threshold therefore never flaps.
* Every change is a decision (``tier-down`` / ``tier-up``) with the numbers in its reason.
* Free memory is RAM, plus free VRAM for models of servers that offload to the GPU (LM Studio, Ollama).
* Targets without ``min_free_memory`` always qualify.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mindgate.models._decisions import DecisionLog
from mindgate.models._monitor import ResourceSource
from mindgate.providers.management._resources import Resources, format_bytes

DEFAULT_HYSTERESIS = 0.15
DEFAULT_RECOVER_AFTER = 30.0


@dataclass(frozen=True)
class Tier:
    """One target of a tiered chain: its name, model, and the free memory it needs (None: no minimum)."""

    name: str
    model: Any
    min_free_bytes: int | None


class TierPolicy:
    """Which tier new requests start at; see the module docstring."""

    def __init__(self, chain: str, tiers: Sequence[Tier], source: ResourceSource, *,
                 held_bytes: Callable[[Any], int], pending_bytes: Callable[[], int] = lambda: 0,
                 uses_gpu: Callable[[Any], bool] = lambda model: False,
                 hysteresis: float = DEFAULT_HYSTERESIS, recover_after: float = DEFAULT_RECOVER_AFTER,
                 decisions: DecisionLog | None = None) -> None:
        self.chain = chain
        self.tiers = list(tiers)
        self.hysteresis = hysteresis
        self.recover_after = recover_after
        self.decisions = decisions or DecisionLog()
        self._held = held_bytes
        self._pending = pending_bytes
        self._gpu = uses_gpu
        self._lock = threading.Lock()
        self._current: int | None = None
        self._up_since: float | None = None
        self.reason = ""
        self._unsubscribe = source.subscribe(self.update)

    @property
    def current(self) -> int:
        """The index of the tier new requests start at (0 until the first reading)."""
        return self._current or 0

    def close(self) -> None:
        self._unsubscribe()

    def _free_for(self, tier: Tier, reading: Resources) -> int:
        return reading.free_bytes(gpu=self._gpu(tier.model)) - self._pending() + self._held(tier.model)

    def _meets(self, tier: Tier, free: int, factor: float = 1.0) -> bool:
        return tier.min_free_bytes is None or free >= tier.min_free_bytes * factor

    def update(self, reading: Resources) -> None:
        """Re-evaluate with a new reading (called by the resource source)."""
        with self._lock:
            free = [self._free_for(t, reading) for t in self.tiers]
            last = len(self.tiers) - 1
            best = next((i for i, t in enumerate(self.tiers) if self._meets(t, free[i])), last)
            if self._current is None:
                self._current = best
                self.reason = self._why(best, free)
                return
            if best > self._current:
                self._move(best, "tier-down", free)
                return
            up = next((i for i in range(self._current)
                       if self._meets(self.tiers[i], free[i], 1 + self.hysteresis)), None)
            if up is None:
                self._up_since = None
                return
            if self._up_since is None:
                self._up_since = reading.taken_at
            if reading.taken_at - self._up_since >= self.recover_after:
                self._move(up, "tier-up", free)

    def _move(self, index: int, action: str, free: list[int]) -> None:
        self._current = index
        self._up_since = None
        self.reason = self._why(index, free)
        self.decisions.record(self.chain, self.tiers[index].name, action, self.reason)

    def _why(self, index: int, free: list[int]) -> str:
        tier = self.tiers[index]
        parts = []
        for i, larger in enumerate(self.tiers[:index]):
            if larger.min_free_bytes is not None:
                parts.append(f"{larger.name} needs {format_bytes(larger.min_free_bytes)} free, "
                             f"{format_bytes(free[i])} is")
        head = f"tier {index + 1} of {len(self.tiers)}"
        if tier.min_free_bytes is not None:
            head += f" ({format_bytes(free[index])} free, needs {format_bytes(tier.min_free_bytes)})"
        return head + (": " + "; ".join(parts) if parts else "")

    def status(self) -> dict[str, Any]:
        return {"current": self.tiers[self.current].name, "index": self.current, "reason": self.reason,
                "hysteresis": self.hysteresis, "recover_after": self.recover_after,
                "tiers": [{"name": t.name, "min_free_bytes": t.min_free_bytes} for t in self.tiers]}
