"""Will a model fit in memory? An estimate before loading, and the refusal that says what would fit.

Estimate = weights + KV cache + overhead:

* weights: the model file's size (GGUF weights are loaded as stored);
* KV cache: ``2 (K and V) * n_layers * n_ctx * n_kv_heads * head_dim * bytes_per_element`` from GGUF
  metadata (or Ollama's ``/api/show``), with f16 K/V (2 bytes) as llama.cpp does by default. When the shape
  is unknown (LM Studio does not publish it), it is estimated from the file size
  (``size / 60000`` bytes per token, which is close for current GQA models: ~78 KB/token for a 4.7 GB 7B);
  the estimate says which it used;
* overhead: compute buffers and runtime, ``16 MiB + 5% of the weights`` (calibrated by bench/fit.py against
  the resident memory of the local llama.cpp engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mindgate.errors import InsufficientMemoryError
from mindgate.providers.management._gguf_info import GGUFInfo
from mindgate.providers.management._resources import format_bytes

KV_BYTES_PER_ELEMENT = 2
OVERHEAD_FIXED_BYTES = 16 * 2**20
OVERHEAD_FRACTION = 0.05
SIZE_BYTES_PER_KV_TOKEN = 60_000
CONTEXT_STEP = 256


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model. ``kv_elements_per_token`` is K+V elements per token
    over all layers (None when unknown)."""

    size_bytes: int
    kv_elements_per_token: int | None = None
    max_context_length: int | None = None

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        return cls(info.size_bytes, info.kv_bytes_per_token, info.context_length)

    @classmethod
    def from_dims(cls, size_bytes: int, *, n_layers: int | None, n_heads: int | None, n_kv_heads: int | None,
                  embedding_length: int | None, max_context_length: int | None = None) -> ModelShape:
        """From the numbers Ollama's ``/api/show`` gives (``<arch>.block_count`` etc.)."""
        per_token = None
        if n_layers and n_heads and embedding_length:
            head_dim = embedding_length // n_heads
            per_token = 2 * n_layers * (n_kv_heads or n_heads) * head_dim
        return cls(size_bytes, per_token, max_context_length)


def kv_cache_bytes(n_layers: int, n_ctx: int, n_kv_heads: int, head_dim: int,
                   bytes_per_element: int = KV_BYTES_PER_ELEMENT) -> int:
    """K and V caches of ``n_ctx`` tokens: ``2 * n_layers * n_ctx * n_kv_heads * head_dim * bytes``."""
    return 2 * n_layers * n_ctx * n_kv_heads * head_dim * bytes_per_element


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs loaded at ``context_length``; ``kv_source`` is ``"metadata"`` or ``"size"``."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    context_length: int
    kv_source: str

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes

    def describe(self) -> str:
        kv = "KV cache" if self.kv_source == "metadata" else "KV cache (estimated from size)"
        return (f"{format_bytes(self.total_bytes)} (weights {format_bytes(self.weights_bytes)} + {kv} "
                f"{format_bytes(self.kv_cache_bytes)} for {self.context_length} tokens + overhead "
                f"{format_bytes(self.overhead_bytes)})")


def _kv_per_token_bytes(shape: ModelShape, bytes_per_element: int) -> tuple[float, str]:
    if shape.kv_elements_per_token:
        return shape.kv_elements_per_token * bytes_per_element, "metadata"
    return shape.size_bytes / SIZE_BYTES_PER_KV_TOKEN, "size"


def estimate(shape: ModelShape, context_length: int, *,
             kv_bytes_per_element: int = KV_BYTES_PER_ELEMENT) -> MemoryEstimate:
    """Memory the model needs loaded with ``context_length`` tokens of context."""
    per_token, source = _kv_per_token_bytes(shape, kv_bytes_per_element)
    overhead = OVERHEAD_FIXED_BYTES + int(shape.size_bytes * OVERHEAD_FRACTION)
    return MemoryEstimate(shape.size_bytes, int(per_token * context_length), overhead, context_length, source)


def max_fitting_context(shape: ModelShape, free_bytes: int, *, upper: int | None = None,
                        kv_bytes_per_element: int = KV_BYTES_PER_ELEMENT) -> int | None:
    """The longest context (a multiple of 256, at most ``upper``) that fits in ``free_bytes``; None when
    not even 256 tokens fit."""
    per_token, _ = _kv_per_token_bytes(shape, kv_bytes_per_element)
    room = free_bytes - estimate(shape, 0, kv_bytes_per_element=kv_bytes_per_element).total_bytes
    if room <= 0 or per_token <= 0:
        return None
    n_ctx = int(room // per_token) // CONTEXT_STEP * CONTEXT_STEP
    if upper is not None:
        n_ctx = min(n_ctx, upper)
    return n_ctx if n_ctx >= CONTEXT_STEP else None


@dataclass(frozen=True)
class Alternative:
    """A model that could be used instead; ``extra_bytes`` is 0 for one that is already loaded."""

    label: str
    extra_bytes: int
    loaded: bool = False


def refusal(model_label: str, needed: MemoryEstimate, free_bytes: int, *, shorter_context: int | None = None,
            alternatives: Sequence[Alternative] = ()) -> InsufficientMemoryError:
    """The error for a model that does not fit: how much it needs, how much is free, and what would fit."""
    options = []
    if shorter_context:
        options.append(f"a shorter context fits: --context-length {shorter_context}")
    fitting = sorted((a for a in alternatives if a.extra_bytes <= free_bytes),
                     key=lambda a: (not a.loaded, -a.extra_bytes))
    if fitting:
        names = ", ".join(f"{a.label} (already loaded)" if a.loaded
                          else f"{a.label} (needs {format_bytes(a.extra_bytes)})" for a in fitting[:5])
        options.append(f"smaller models that fit now: {names}")
    options.append("or free memory by unloading models (`mindgate models ps`, `mindgate models unload ID`)")
    return InsufficientMemoryError(
        f"{model_label} does not fit in memory: it needs about {needed.describe()}, but only "
        f"{format_bytes(free_bytes)} is free",
        needed_bytes=needed.total_bytes, free_bytes=free_bytes, shorter_context=shorter_context,
        hint="; ".join(options))
