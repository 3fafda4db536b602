"""Embedding throughput of the default embedder through mindgate's Embedder vs raw sentence-transformers.

Same model object, same batch, same process, alternating runs so drift hits both sides alike.
Target: mindgate's path >= 95% of raw. Usage: python bench/embed.py [--sentences 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sentences(n: int) -> list[str]:
    subjects = ["I", "My sister", "The agent", "Our team", "Alice", "Bob"]
    verbs = ["moved to", "prefers", "is allergic to", "works at", "visited", "wrote about"]
    objects = ["Berlin", "green tea", "peanuts", "a small startup", "the Louvre", "vector databases"]
    return [f"{subjects[i % 6]} {verbs[(i // 6) % 6]} {objects[(i // 36) % 6]} (note {i})." for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 matches the tests)")
    args = parser.parse_args()

    import torch

    from mindgate.providers.local import SentenceTransformerEmbedder

    torch.set_num_threads(args.threads)
    embedder = SentenceTransformerEmbedder()
    texts = sentences(args.sentences)
    model = embedder._model()  # the same SentenceTransformer instance for both sides
    embedder.embed_batch(texts[:64])  # warm-up

    def raw() -> None:
        model.encode(texts, batch_size=embedder.batch_size, convert_to_numpy=True, show_progress_bar=False)

    def via_sync() -> None:
        embedder.embed_batch(texts)

    def via_async() -> None:
        asyncio.run(embedder.aembed_batch(texts))

    timings: dict[str, list[float]] = {"raw sentence-transformers": [], "mindgate embed_batch": [],
                                       "mindgate aembed_batch": []}
    for _ in range(args.rounds):
        for name, fn in zip(timings, (raw, via_sync, via_async), strict=True):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)

    rows = []
    base = args.sentences / statistics.median(timings["raw sentence-transformers"])
    for name, values in timings.items():
        rate = args.sentences / statistics.median(values)
        rows.append({"path": name, "sentences_per_s": round(rate, 1), "ratio_vs_raw": round(rate / base, 3)})
    print(f"{'path':<28}{'sentences/s':>14}{'vs raw':>10}")
    for row in rows:
        print(f"{row['path']:<28}{row['sentences_per_s']:>14}{row['ratio_vs_raw']:>10}")
    print(json.dumps({"bench": "embed", "sentences": args.sentences, "rounds": args.rounds,
                      "threads": args.threads, "results": rows}))


if __name__ == "__main__":
    main()
