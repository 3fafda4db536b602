"""Semantic (task-based) routes: pick a target by what a request is about, with embeddings and no LLM call.

A route has a name, example utterances, a target (a chain name, or ``endpoint[:model]``) and a threshold.
The utterances are embedded once with the configured :class:`~mindgate.providers._base.Embedder` and
cached in memory, and on disk under ``MINDGATE_HOME/cache/routes/`` keyed by the embedder's identity and a
hash of the routes' utterances (a change to either makes a new entry). A request's last user message is
embedded; a route's score is its best cosine similarity to that message; the highest-scoring route whose
score reaches its own threshold wins, else the default target.

```yaml
routing:
  default: main
  routes:
    - {name: code, target: "lmstudio:qwen2.5-coder-7b-instruct", threshold: 0.45,
       utterances: ["write a python function", "fix this stack trace", ...]}
    - {name: chat, target: fast, utterances: ["hi there", "how are you", ...]}
```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mindgate._sync import run_sync
from mindgate.config import mindgate_home
from mindgate.errors import ConfigurationError
from mindgate.providers._base import Embedder, Message, Vector, message_text

if TYPE_CHECKING:
    from mindgate.config import MindgateConfig

log = logging.getLogger("mindgate.routing")
QUERY_CHARS = 2000


@dataclass(frozen=True)
class SemanticRoute:
    name: str
    utterances: tuple[str, ...]
    target: str
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.utterances or not all(isinstance(u, str) and u.strip() for u in self.utterances):
            raise ConfigurationError(f"semantic route {self.name!r} needs non-empty example utterances",
                                     hint="give a few typical requests for this route")


@dataclass(frozen=True)
class RouteMatch:
    """Where a request goes: ``route`` is the matched route's name, None for the default; ``score`` is the best
    route's cosine similarity and ``scores`` every route's (rounded to 4 places)."""

    route: str | None
    target: str
    score: float
    scores: dict[str, float]


def query_text(query: str | Sequence[Message]) -> str:
    """The text routed on: the string itself, or the last user message of a conversation."""
    if isinstance(query, str):
        text = query
    else:
        text = next((message_text(m) for m in reversed(query) if m.get("role") == "user"), "")
    return text[:QUERY_CHARS]


def _normalized(vectors: Vector) -> Vector:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class SemanticRouter:
    """Routes requests over ``routes`` with ``embedder``; ``default`` is the target when none matches.

    ``cache_dir``: where utterance embeddings are kept between runs (default ``MINDGATE_HOME/cache/routes``;
    ``False`` keeps them in memory only).
    """

    def __init__(self, routes: Sequence[SemanticRoute], embedder: Embedder, *, default: str,
                 cache_dir: Path | Literal[False] | None = None) -> None:
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ConfigurationError("semantic route names must be unique", hint=f"got {', '.join(names)}")
        self.routes = list(routes)
        self.embedder = embedder
        self.default = default
        self.cache_dir = (mindgate_home() / "cache" / "routes") if cache_dir is None else cache_dir
        self._matrix: Vector | None = None
        self._offsets = np.cumsum([0] + [len(r.utterances) for r in self.routes[:-1]]).astype(np.intp)
        self._thresholds = np.array([r.threshold for r in self.routes], dtype=np.float32)
        self._lock: asyncio.Lock | None = None

    @classmethod
    def from_config(cls, config: MindgateConfig, embedder: Embedder | None = None) -> SemanticRouter:
        """Routes from ``routing.routes``, default ``routing.default``, and the configured embedder."""
        if embedder is None:
            from mindgate.providers import create_embedder

            embedder = create_embedder(config.embedder.provider, config.embedder.config)
        routes = [SemanticRoute(r.name, tuple(r.utterances), r.target, r.threshold) for r in config.routing.routes]
        return cls(routes, embedder, default=config.routing.default)

    @property
    def cache_key(self) -> str:
        """Identifies the embedder and the utterances the cached matrix was built from."""
        spec = {"provider": self.embedder.provider, "model": self.embedder.model,
                "routes": [[r.name, *r.utterances] for r in self.routes]}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def _cache_path(self) -> Path | None:
        return None if self.cache_dir is False else Path(self.cache_dir) / f"{self.cache_key}.npy"

    async def aprepare(self) -> None:
        """Embed (or load from the disk cache) every route's utterances; later calls do nothing."""
        if self._matrix is not None or not self.routes:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._matrix is None:
                loaded = self._load()
                self._matrix = loaded if loaded is not None else await self._embed_all()

    def prepare(self) -> None:
        run_sync(self.aprepare())

    def _load(self) -> Vector | None:
        path = self._cache_path()
        if path is None or not path.is_file():
            return None
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable route cache %s: %s", path, exc)
            return None
        expected = sum(len(r.utterances) for r in self.routes)
        return matrix.astype(np.float32) if matrix.ndim == 2 and matrix.shape[0] == expected else None

    async def _embed_all(self) -> Vector:
        texts = [u for route in self.routes for u in route.utterances]
        matrix = _normalized(await self.embedder.aembed_batch(texts))
        path = self._cache_path()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, matrix, allow_pickle=False)
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("could not write the route cache %s: %s", path, exc)
        return matrix

    async def aroute(self, query: str | Sequence[Message]) -> RouteMatch:
        """The route for ``query`` (a string or a conversation)."""
        text = query_text(query)
        if not self.routes or not text.strip():
            return RouteMatch(None, self.default, 0.0, {})
        await self.aprepare()
        assert self._matrix is not None
        vector = _normalized(await self.embedder.aembed(text))
        if vector.shape[0] != self._matrix.shape[1]:  # a cache from an embedder with other dims
            self._matrix = await self._embed_all()
        scores = np.maximum.reduceat(self._matrix @ vector, self._offsets)
        by_name = {r.name: round(float(s), 4) for r, s in zip(self.routes, scores, strict=True)}
        passing = np.where(scores >= self._thresholds, scores, -np.inf)
        best = int(np.argmax(passing))
        if not np.isfinite(passing[best]):
            return RouteMatch(None, self.default, max(by_name.values()), by_name)
        route = self.routes[best]
        return RouteMatch(route.name, route.target, by_name[route.name], by_name)

    def route(self, query: str | Sequence[Message]) -> RouteMatch:
        return run_sync(self.aroute(query))

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": r.name, "target": r.target, "threshold": r.threshold, "utterances": len(r.utterances)}
                for r in self.routes]
