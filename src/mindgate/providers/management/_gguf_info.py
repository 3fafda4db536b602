"""What a GGUF file says about its model: architecture, context length, and the shape numbers the KV-cache
estimate needs (layers, KV heads, head dimensions), read from its metadata without loading weights.

Contract: :func:`read_gguf_info` memory-maps the file, reads only the metadata key-value section, and caches
the result by (path, size, mtime). A file that is missing or not GGUF raises
:class:`~mindgate.errors.ConfigurationError`. Split models (``name-00001-of-00003.gguf``) report the size of
all their parts.

The metadata is walked here (GGUF versions 1-3, either byte order, as the format's specification lays it
out) rather than with ``gguf.GGUFReader``: that reader makes a numpy view for every part of every field,
the tokenizer's tens of thousands of strings included, which took 1.7 s and left ~500,000 objects for the
135M model shipped as the default (the gateway's first seconds then stalled in garbage collections of up to
0.35 s). Here numbers and strings are decoded, small numeric arrays (per-layer values) are read as lists,
and other arrays are stepped over.
"""

from __future__ import annotations

import mmap
import re
import struct
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


_NUMBERS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
MAX_LIST = 4096  # numeric arrays up to this length are read (per-layer values); longer ones are stepped over
SKIPPED = object()  # the value of an array that was stepped over


class _Metadata:
    """A cursor over a GGUF file's metadata section."""

    def __init__(self, data: Any) -> None:
        self.data, self.at = data, 0
        if bytes(data[:4]) != b"GGUF":
            raise ValueError("no GGUF magic number")
        version = struct.unpack_from("<I", data, 4)[0]
        self.order = "<" if version & 0xFFFF else ">"  # a big-endian file's version reads as 0x0N000000 here
        self.version = struct.unpack_from(self.order + "I", data, 4)[0]
        if self.version not in (1, 2, 3):
            raise ValueError(f"GGUF version {self.version} is not one this reads (1-3)")
        self.size = "I" if self.version == 1 else "Q"  # counts and string lengths: 32-bit in version 1 only
        self.at = 8

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from(self.order + fmt, self.data, self.at)[0]
        self.at += struct.calcsize(self.order + fmt)
        return value

    def string(self) -> str:
        length = self.take(self.size)
        start, self.at = self.at, self.at + length
        if self.at > len(self.data):
            raise ValueError("a string runs past the end of the file")
        return bytes(self.data[start:self.at]).decode("utf-8", errors="replace")

    def fields(self) -> dict[str, Any]:
        self.take(self.size)  # tensor count
        count = self.take(self.size)
        return {self.string(): self.value(self.take("I")) for _ in range(count)}

    def value(self, kind: int) -> Any:
        if kind in _NUMBERS:
            return self.take(_NUMBERS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown GGUF value type {kind}")
        kind, count = self.take("I"), self.take(self.size)
        if kind in _NUMBERS:
            width = struct.calcsize(self.order + _NUMBERS[kind])
            if self.at + count * width > len(self.data):
                raise ValueError("an array runs past the end of the file")
            if count <= MAX_LIST:
                values = list(struct.unpack_from(f"{self.order}{count}{_NUMBERS[kind]}", self.data, self.at))
                self.at += count * width
                return values
            self.at += count * width
            return SKIPPED
        for _ in range(count):  # strings or nested arrays: each says its own length
            if kind == _STRING:
                length = self.take(self.size)  # (not `self.at += self.take(...)`: that adds to the old offset)
                self.at += length
            else:
                self.value(kind)
        if self.at > len(self.data):
            raise ValueError("an array runs past the end of the file")
        return SKIPPED


def _metadata(file: Path) -> dict[str, Any]:
    """The metadata key-values of a GGUF file (arrays other than short numeric ones as :data:`SKIPPED`)."""
    with file.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _Metadata(data).fields()


def _scalar(fields: dict[str, Any], key: str) -> Any:
    value = fields.get(key)
    if value is None or value is SKIPPED:
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
        fields = _metadata(file)
    except (ValueError, OSError, struct.error) as exc:
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
