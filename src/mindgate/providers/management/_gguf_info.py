"""What a GGUF file says about its model: architecture, context length, and the shape numbers the KV-cache
estimate needs (layers, KV heads, head dimensions), read with the ``gguf`` package without loading weights.

Contract: :func:`read_gguf_info` memory-maps the file, reads only the header, and caches the result by
(path, size, mtime). A file that is missing or not GGUF raises :class:`~mindgate.errors.ConfigurationError`.
Split models (``name-00001-of-00003.gguf``) report the size of all their parts.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindgate.errors import ConfigurationError

EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder",
                                     "modern-bert", "neo-bert"})
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$")


@dataclass(frozen=True)
class GGUFInfo:
    """The header facts of one GGUF model; shape fields are None when the file does not say."""

    path: Path
    architecture: str
    name: str | None
    size_bytes: int
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    quantization: str | None
    is_embedding: bool

    @property
    def kv_bytes_per_token(self) -> int | None:
        """K and V for one token across all layers, in elements (multiply by bytes per element)."""
        if not (self.block_count and self.head_count):
            return None
        kv_heads = self.head_count_kv or self.head_count
        head_dim_default = (self.embedding_length // self.head_count) if self.embedding_length else None
        k_dim = self.key_length or head_dim_default
        v_dim = self.value_length or head_dim_default
        if not (k_dim and v_dim):
            return None
        return self.block_count * kv_heads * (k_dim + v_dim)


_cache: dict[tuple[str, int, int], GGUFInfo] = {}
_cache_lock = threading.Lock()


def _scalar(fields: dict[str, Any], key: str) -> Any:
    field = fields.get(key)
    if field is None:
        return None
    try:
        value = field.contents()
    except (ValueError, IndexError, TypeError):
        return None
    if isinstance(value, list):  # per-layer arrays (e.g. head_count_kv of hybrid models): the largest
        numbers = [v for v in value if isinstance(v, int | float)]
        return max(numbers) if numbers else None
    return value


def _int(fields: dict[str, Any], key: str) -> int | None:
    value = _scalar(fields, key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _quantization(file_type: int | None) -> str | None:
    if file_type is None:
        return None
    try:
        from gguf import LlamaFileType

        name = LlamaFileType(file_type).name
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _total_size(path: Path) -> int:
    match = _SPLIT.match(path.name)
    if not match:
        return path.stat().st_size
    total = int(match["total"])
    parts = [path.with_name(f"{match['stem']}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]
    return sum(p.stat().st_size for p in parts if p.exists())


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """The header facts of the GGUF file at ``path`` (cached by path, size and modification time)."""
    file = Path(path).expanduser()
    try:
        stat = file.stat()
    except OSError:
        raise ConfigurationError(f"GGUF model file not found: {file}",
                                 hint="give the path of an existing .gguf file") from None
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        from gguf import GGUFReader

        fields = GGUFReader(str(file)).fields
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigurationError(f"{file} is not a readable GGUF file ({exc})",
                                 hint="point to a model file in GGUF format") from None
    arch = str(_scalar(fields, "general.architecture") or "unknown")
    name = _scalar(fields, "general.name")
    info = GGUFInfo(
        path=file,
        architecture=arch,
        name=str(name) if name else None,
        size_bytes=_total_size(file),
        context_length=_int(fields, f"{arch}.context_length"),
        block_count=_int(fields, f"{arch}.block_count"),
        embedding_length=_int(fields, f"{arch}.embedding_length"),
        head_count=_int(fields, f"{arch}.attention.head_count"),
        head_count_kv=_int(fields, f"{arch}.attention.head_count_kv"),
        key_length=_int(fields, f"{arch}.attention.key_length"),
        value_length=_int(fields, f"{arch}.attention.value_length"),
        quantization=_quantization(_int(fields, "general.file_type")),
        is_embedding=arch in EMBEDDING_ARCHITECTURES or f"{arch}.pooling_type" in fields,
    )
    with _cache_lock:
        _cache[key] = info
    return info
