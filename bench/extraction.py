"""Extraction quality of ``add(infer=True)`` on a labelled set (bench/data/extraction_cases.json).

The set: 63 short conversations from LongMemEval's oracle sessions (the user turn that holds the answer
to a single-session-user question, plus the start of the assistant's reply), each with the fact it
states; 12 knowledge-update cases (the old fact is stored first, the conversation states the new value;
expected event UPDATE of that memory with the new fact); 6 written contradiction cases (expected DELETE).

Each case runs in its own scope through the public Memory API: existing facts are stored with
``infer=False``, then the conversation is added with ``infer=True``. Printed per target:

* fact recall: share of expected facts matched by an ADD/UPDATE text (extract cases);
* precision: share of ADD texts that match an expected fact (extract cases; strict, since a turn
  may state other true facts that are not labelled) and ``grounded``: share that match a sentence the
  user said (not hallucinated, not taken from the assistant);
* update / delete rate: share of cases with the expected event on the stored memory (for UPDATE, with a
  text that matches the new fact);
* failures (errors raised) and latency of the ``add`` call.

A text matches a fact when the cosine similarity of their MiniLM embeddings is >= ``--threshold``
(default 0.6; "Has a cat named Luna" vs "The user's cat is called Luna" is ~0.8, vs "Has a dog" ~0.4).

Targets: ``local`` (the embedded default: the in-process llama.cpp engine on the shipped GGUF) and
``server`` (the real llama.cpp server, ``python -m llama_cpp.server`` on the same GGUF with one thread).
``--model PATH`` measures another GGUF with both.

``--three N`` measures the latency bound instead: N ``add(infer=True)`` calls of one 3-message
conversation on the embedded defaults (``AsyncMemory.from_config()``, what ``Memory()`` builds: the
``auto`` chain falling back to the in-process engine with its default threads, MiniLM, SQLite under a
temporary MINDGATE_HOME), after one warm-up call that loads the models; target <= 10 s each.

Usage: python bench/extraction.py [--target local server] [--cases N] [--model PATH] [--threads N]
       python bench/extraction.py --three N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parent / "data" / "extraction_cases.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "bench",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "1",
           "--n_threads_batch", "1"]
    process = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama.cpp server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"llama.cpp server did not start; see {log}")


def llm_config(target: str, model: Path | None, threads: int, port: int | None) -> dict[str, Any]:
    if target == "local":
        return {"provider": "local", "config": {"model_path": str(model) if model else None, "n_threads": threads}}
    return {"provider": "openai_compatible", "config": {"openai_base_url": f"http://127.0.0.1:{port}/v1",
                                                       "model": "bench", "api_key": "unused"}}


async def run_target(target: str, cases: list[dict[str, Any]], args: argparse.Namespace,
                     port: int | None) -> list[dict[str, Any]]:
    from mindgate import AsyncMemory
    from mindgate.errors import MindgateError

    db = Path(tempfile.mkdtemp(prefix="mindgate-extraction-")) / "x.db"
    model = Path(args.model) if args.model else None
    memory = AsyncMemory.from_config({"llm": llm_config(target, model, args.threads, port),
                                      "vector_store": {"provider": "sqlite", "config": {"path": str(db)}}})
    outcomes = []
    for n, case in enumerate(cases, 1):
        scope = f"{target}-{case['id']}"
        stored = [(await memory.add(text, user_id=scope, infer=False))["results"][0] for text in case["existing"]]
        start = time.perf_counter()
        try:
            results = (await memory.add(case["conversation"], user_id=scope))["results"]
            error = None
        except MindgateError as exc:
            results, error = [], f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - start
        outcomes.append({"case": case, "stored_ids": [s["id"] for s in stored], "results": results,
                         "error": error, "seconds": elapsed})
        print(f"\r{target}: {n}/{len(cases)} cases", end="", file=sys.stderr)
    print(file=sys.stderr)
    await memory.close()
    return outcomes


THREE = [{"role": "user", "content": "Hi! I'm Dana, I work as a nurse in Lyon."},
         {"role": "assistant", "content": "Nice to meet you, Dana. How long have you lived in Lyon?"},
         {"role": "user", "content": "Six years. I have a cat named Luna and I'm learning Italian."}]


async def three_message_latency(runs: int) -> dict[str, Any]:
    """Seconds per ``add(infer=True)`` of :data:`THREE` on the embedded defaults (after one warm-up)."""
    os.environ["MINDGATE_HOME"] = tempfile.mkdtemp(prefix="mindgate-three-")
    from mindgate import AsyncMemory

    memory = AsyncMemory.from_config()  # what Memory() builds
    await memory.add(THREE, user_id="warm-up")
    seconds = []
    for n in range(runs):
        start = time.perf_counter()
        await memory.add(THREE, user_id=f"run-{n}")
        seconds.append(time.perf_counter() - start)
    await memory.close()
    return {"bench": "extraction-three-messages", "runs": runs, "p50_s": round(statistics.median(seconds), 2),
            "max_s": round(max(seconds), 2), "seconds": [round(s, 2) for s in seconds],
            "load_1min": round(os.getloadavg()[0], 1)}


def score(outcomes: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    from mindgate.providers.local import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()

    def sim(a: list[str], b: list[str]) -> Any:
        if not a or not b:
            return None
        va, vb = embedder.encode(a), embedder.encode(b)
        va /= (va ** 2).sum(axis=1, keepdims=True) ** 0.5
        vb /= (vb ** 2).sum(axis=1, keepdims=True) ** 0.5
        return va @ vb.T

    recall_hits, added, precise, grounded = [], 0, 0, 0
    events: dict[str, list[bool]] = {"update": [], "delete": []}
    for out in outcomes:
        case, results = out["case"], out["results"]
        texts = [r["memory"] for r in results if r["event"] in ("ADD", "UPDATE")]
        if case["kind"] == "extract":
            facts = [e["fact"] for e in case["expect"]]
            matrix = sim(facts, texts)
            recall_hits.extend(bool(matrix is not None and matrix[i].max() >= threshold) for i in range(len(facts)))
            adds = [r["memory"] for r in results if r["event"] == "ADD"]
            added += len(adds)
            if adds:
                precise += int((sim(adds, facts).max(axis=1) >= threshold).sum())
                said = [s for m in case["conversation"] if m["role"] == "user"
                        for s in re.split(r"(?<=[.!?])\s+", m["content"]) if s.strip()]
                grounded += int((sim(adds, said).max(axis=1) >= threshold).sum())
        else:
            want = case["expect"][0]
            target_id = out["stored_ids"][want["target"]]
            hit = [r for r in results if r["id"] == target_id and r["event"] == want["event"]]
            if hit and want["event"] == "UPDATE":
                matrix = sim([want["fact"]], [hit[0]["memory"]])
                hit = hit if matrix is not None and matrix[0, 0] >= threshold else []
            events[case["kind"]].append(bool(hit))
    seconds = [o["seconds"] for o in outcomes]
    return {"cases": len(outcomes),
            "fact_recall": round(statistics.fmean(recall_hits), 3) if recall_hits else None,
            "precision": round(precise / added, 3) if added else None,
            "grounded": round(grounded / added, 3) if added else None,
            "facts_added": added,
            "update_rate": round(statistics.fmean(events["update"]), 3) if events["update"] else None,
            "delete_rate": round(statistics.fmean(events["delete"]), 3) if events["delete"] else None,
            "failures": sum(1 for o in outcomes if o["error"]),
            "latency_s": {"p50": round(statistics.median(seconds), 2),
                          "p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 2),
                          "max": round(max(seconds), 2)},
            "errors": sorted({o["error"].split(":")[0] for o in outcomes if o["error"]})}


def select(cases: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """All cases, or ``limit`` of them with every kind in proportion (in file order)."""
    if not limit or limit >= len(cases):
        return cases
    kinds = sorted({c["kind"] for c in cases})
    share = {k: max(1, round(limit * sum(c["kind"] == k for c in cases) / len(cases))) for k in kinds}
    return [c for k in kinds for c in [c for c in cases if c["kind"] == k][:share[k]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", nargs="+", choices=("local", "server"), default=["local", "server"])
    parser.add_argument("--cases", type=int, default=None, help="a proportional sample of N cases")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the shipped SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the in-process engine")
    parser.add_argument("--threshold", type=float, default=0.6, help="cosine similarity for a match")
    parser.add_argument("--three", type=int, default=0, metavar="N",
                        help="time N adds of a 3-message conversation on the embedded defaults instead")
    args = parser.parse_args()
    if args.three:
        result = asyncio.run(three_message_latency(args.three))
        print(f"3-message add(infer=True), embedded defaults, {result['runs']} runs: p50 {result['p50_s']} s, "
              f"max {result['max_s']} s (target <= 10 s), load {result['load_1min']}")
        print(json.dumps(result))
        return

    import torch

    from mindgate._assets import default_gguf_path

    torch.set_num_threads(args.threads)
    cases = select(json.loads(DATA.read_text())["cases"], args.cases)
    report: dict[str, Any] = {"bench": "extraction", "model": Path(args.model or default_gguf_path()).name,
                              "threshold": args.threshold, "targets": {}}
    for target in args.target:
        server = None
        port = None
        if target == "server":
            port = free_port()
            server = start_server(Path(args.model or default_gguf_path()), port,
                                  Path(tempfile.gettempdir()) / f"bench-llama-{port}.log")
        try:
            outcomes = asyncio.run(run_target(target, cases, args, port))
        finally:
            if server:
                server.terminate()
                server.wait(10)
        report["targets"][target] = score(outcomes, args.threshold)

    cols = ("fact_recall", "precision", "grounded", "update_rate", "delete_rate", "failures")
    print(f"extraction bench: {report['model']}, {len(cases)} cases, match threshold {args.threshold}")
    print(f"{'target':<8}" + "".join(f"{c:>13}" for c in cols) + f"{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    for target, row in report["targets"].items():
        lat = row["latency_s"]
        print(f"{target:<8}" + "".join(f"{row[c]!s:>13}" for c in cols)
              + f"{lat['p50']:>8}{lat['p95']:>8}{lat['max']:>8}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
