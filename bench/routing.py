"""Semantic routing: accuracy on the labelled set and the latency routing adds per request.

Routes: tests/data/routing_routes.json (4 routes, 8 example utterances each); labelled prompts:
tests/data/routing_labelled.jsonl (prompts written apart from the utterances; ``route: null`` means "should
go to the default"). Embedder: the real local MiniLM (all-MiniLM-L6-v2), one thread.

Usage: python bench/routing.py [--threads 1] [--threshold T] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def load(threshold: float | None) -> tuple[list, str, list[tuple[str, str | None]]]:
    from mindgate.routing._semantic import SemanticRoute

    spec = json.loads((DATA / "routing_routes.json").read_text())
    routes = [SemanticRoute(r["name"], tuple(r["utterances"]), r["target"],
                            r["threshold"] if threshold is None else threshold) for r in spec["routes"]]
    labelled = [(row["text"], row["route"]) for row in map(json.loads, (DATA / "routing_labelled.jsonl").open())]
    return routes, spec["default"], labelled


async def run(args: argparse.Namespace) -> dict:
    import torch

    from mindgate.providers.local import SentenceTransformerEmbedder
    from mindgate.routing._semantic import SemanticRouter

    torch.set_num_threads(args.threads)
    routes, default, labelled = load(args.threshold)
    embedder = SentenceTransformerEmbedder()
    await embedder.aembed("warm-up")
    router = SemanticRouter(routes, embedder, default=default, cache_dir=False)
    start = time.perf_counter()
    await router.aprepare()
    prepare_s = time.perf_counter() - start

    route_ms, embed_ms = [], []
    predictions: list[str | None] = []
    for round_ in range(args.rounds):
        for text, _ in labelled:
            start = time.perf_counter()
            match = await router.aroute(text)
            route_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            await embedder.aembed(text)  # the embedding alone, to show what routing adds on top of it
            embed_ms.append((time.perf_counter() - start) * 1000)
            if round_ == 0:
                predictions.append(match.route)

    correct = sum(p == label for p, (_, label) in zip(predictions, labelled, strict=True))
    per_route = {}
    for name in [r.name for r in routes] + [None]:
        truth = [label == name for _, label in labelled]
        pred = [p == name for p in predictions]
        tp = sum(t and p for t, p in zip(truth, pred, strict=True))
        per_route[str(name or "default")] = {
            "support": sum(truth),
            "precision": tp / max(1, sum(pred)), "recall": tp / max(1, sum(truth))}
    confusion = Counter(f"{label or 'default'}->{p or 'default'}"
                        for p, (_, label) in zip(predictions, labelled, strict=True) if p != label)

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))]

    return {
        "bench": "routing", "prompts": len(labelled), "routes": len(routes),
        "accuracy": correct / len(labelled), "per_route": per_route, "errors": dict(confusion),
        "prepare_ms": prepare_s * 1000,
        "route_ms": {"p50": pct(route_ms, 0.5), "p99": pct(route_ms, 0.99), "mean": statistics.fmean(route_ms)},
        "embed_only_ms": {"p50": pct(embed_ms, 0.5), "p99": pct(embed_ms, 0.99)},
        "added_over_embedding_ms_p50": pct(route_ms, 0.5) - pct(embed_ms, 0.5),
        "llm_calls": 0, "threads": args.threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=None, help="override every route's threshold")
    parser.add_argument("--rounds", type=int, default=3)
    result = asyncio.run(run(parser.parse_args()))
    print(f"semantic routing: {result['prompts']} labelled prompts, {result['routes']} routes, MiniLM, "
          f"{result['threads']} thread(s)\n")
    print(f"{'route':10} {'support':>8} {'precision':>10} {'recall':>8}")
    for name, row in result["per_route"].items():
        print(f"{name:10} {row['support']:>8} {row['precision']:>10.2f} {row['recall']:>8.2f}")
    print(f"\naccuracy            {result['accuracy']:.1%}")
    print(f"route latency       p50 {result['route_ms']['p50']:.2f} ms   p99 {result['route_ms']['p99']:.2f} ms "
          "(embedding the query included; no LLM call)")
    print(f"embedding alone     p50 {result['embed_only_ms']['p50']:.2f} ms   -> routing adds "
          f"{result['added_over_embedding_ms_p50']:.3f} ms on top")
    print(f"utterance embedding {result['prepare_ms']:.0f} ms once (then cached)")
    if result["errors"]:
        print("misrouted:", ", ".join(f"{k} x{v}" for k, v in sorted(result["errors"].items())))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
