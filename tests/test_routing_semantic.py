"""Semantic routes with the real local MiniLM embedder: accuracy on the labelled set, thresholds and the
default, and the utterance-embedding cache (memory and disk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.providers._base import Vector
from mindgate.providers.local import SentenceTransformerEmbedder
from mindgate.routing._semantic import SemanticRoute, SemanticRouter

DATA = Path(__file__).parent / "data"


class CountingEmbedder(SentenceTransformerEmbedder):
    """The real MiniLM, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def encode(self, texts: list[str]) -> Vector:
        self.embedded.extend(texts)
        return super().encode(texts)


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    import torch

    torch.set_num_threads(1)
    return CountingEmbedder()


def load_routes(threshold: float | None = None) -> tuple[list[SemanticRoute], str]:
    spec = json.loads((DATA / "routing_routes.json").read_text())
    routes = [SemanticRoute(r["name"], tuple(r["utterances"]), r["target"],
                            r["threshold"] if threshold is None else threshold) for r in spec["routes"]]
    return routes, spec["default"]


def labelled() -> list[tuple[str, str | None]]:
    with (DATA / "routing_labelled.jsonl").open() as file:
        return [(row["text"], row["route"]) for row in map(json.loads, file)]


def test_labelled_set_is_routed_accurately(embedder: CountingEmbedder) -> None:
    routes, default = load_routes()
    router = SemanticRouter(routes, embedder, default=default, cache_dir=False)
    rows = labelled()
    assert len(rows) >= 60 and {label for _, label in rows} == {"code", "math", "writing", "chat", None}
    results = [(router.route(text), label) for text, label in rows]
    accuracy = sum(match.route == label for match, label in results) / len(rows)
    assert accuracy >= 0.80, f"routing accuracy {accuracy:.1%}"
    for match, label in results:
        if match.route == label and label is not None:
            assert match.target == next(r.target for r in routes if r.name == label)
            assert match.score >= 0.2
        if match.route is None:
            assert match.target == default


def test_below_every_threshold_goes_to_the_default(embedder: CountingEmbedder) -> None:
    text = "My C program crashes with a segmentation fault when it frees memory"
    strict_routes, default = load_routes(threshold=0.99)
    match = SemanticRouter(strict_routes, embedder, default=default, cache_dir=False).route(text)
    assert match.route is None and match.target == default
    assert match.score == max(match.scores.values()) < 0.99
    lenient_routes, _ = load_routes(threshold=-1.0)
    lenient = SemanticRouter(lenient_routes, embedder, default=default, cache_dir=False).route(text)
    assert lenient.route == "code" == max(lenient.scores, key=lambda k: lenient.scores[k])
    assert lenient.scores == match.scores


def test_routes_on_the_last_user_message_of_a_conversation(embedder: CountingEmbedder) -> None:
    routes, default = load_routes()
    router = SemanticRouter(routes, embedder, default=default, cache_dir=False)
    conversation = [{"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": "Write a poem about the sea"},
                    {"role": "assistant", "content": "The sea is wide..."},
                    {"role": "user", "content": "Now compute the integral of x squared from 0 to 3"}]
    assert router.route(conversation).route == "math"
    assert router.route([{"role": "assistant", "content": "hello"}]).target == default  # no user text


def test_utterances_are_embedded_once_and_cached_on_disk(embedder: CountingEmbedder, tmp_path: Path) -> None:
    routes, default = load_routes()
    utterances = sum(len(r.utterances) for r in routes)
    embedder.embedded.clear()
    first = SemanticRouter(routes, embedder, default=default, cache_dir=tmp_path)
    first.route("hello there")
    first.route("solve 2x = 4")
    assert len(embedder.embedded) == utterances + 2  # utterances once, then one text per request
    assert list(tmp_path.glob("*.npy")) == [tmp_path / f"{first.cache_key}.npy"]

    embedder.embedded.clear()
    second = SemanticRouter(routes, embedder, default=default, cache_dir=tmp_path)
    assert second.route("solve 2x = 4").route == first.route("solve 2x = 4").route
    assert embedder.embedded == ["solve 2x = 4", "solve 2x = 4"]  # the disk cache served the utterances

    changed = [SemanticRoute(routes[0].name, (*routes[0].utterances, "compile my code"), routes[0].target),
               *routes[1:]]
    third = SemanticRouter(changed, embedder, default=default, cache_dir=tmp_path)
    assert third.cache_key != first.cache_key
    embedder.embedded.clear()
    third.prepare()
    assert len(embedder.embedded) == utterances + 1


def test_corrupt_cache_file_is_rebuilt(embedder: CountingEmbedder, tmp_path: Path) -> None:
    routes, default = load_routes()
    router = SemanticRouter(routes, embedder, default=default, cache_dir=tmp_path)
    (tmp_path / f"{router.cache_key}.npy").write_bytes(b"not a numpy file")
    assert router.route("good morning!").route == "chat"
    matrix = np.load(tmp_path / f"{router.cache_key}.npy")
    assert matrix.shape == (sum(len(r.utterances) for r in routes), 384)


def test_from_config_and_validation(embedder: CountingEmbedder) -> None:
    config = MindgateConfig.from_dict({"routing": {"default": "main", "routes": [
        {"name": "code", "target": "coder", "utterances": ["write a python function"], "threshold": 0.3}]}},
        env=False)
    router = SemanticRouter.from_config(config, embedder)
    assert router.default == "main" and router.describe() == [
        {"name": "code", "target": "coder", "threshold": 0.3, "utterances": 1}]
    assert router.route("Implement quicksort in Python").target == "coder"
    empty = SemanticRouter([], embedder, default="main")
    assert empty.route("anything").target == "main"
    with pytest.raises(ConfigurationError, match="unique"):
        SemanticRouter([SemanticRoute("a", ("x",), "t"), SemanticRoute("a", ("y",), "t")], embedder, default="d")
    with pytest.raises(ConfigurationError, match="non-empty example utterances"):
        SemanticRoute("a", ("  ",), "t")
