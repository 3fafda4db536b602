"""Fit estimate vs measured memory of the local llama.cpp engine.

For each context length, a fresh Python process imports llama_cpp, notes its resident memory (RSS), loads
the GGUF with ``llama_cpp.Llama`` (one thread), generates a few tokens (so compute buffers are touched)
and notes the RSS again; the difference is what the model costs. mindgate's estimate
(:func:`mindgate.providers.management._fit.estimate`: weights + KV cache + overhead) is printed next to it, with the
error ratio estimate/measured (target: within 25%, i.e. 0.75-1.25).

    python bench/fit.py [--gguf PATH] [--contexts 512 2048 8192]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mindgate._assets import default_gguf_path
from mindgate.providers.management import _fit as fit
from mindgate.providers.management._gguf_info import read_gguf_info
from mindgate.providers.management._resources import format_bytes

MEASURE = r"""
import json, sys, psutil, llama_cpp
process = psutil.Process()
before = process.memory_info().rss
llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=1, n_threads_batch=1,
                        verbose=False)
llama.create_completion("The capital of France is", max_tokens=8)
print(json.dumps({"rss_delta_bytes": process.memory_info().rss - before}))
"""


def measure(gguf: Path, n_ctx: int) -> int:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(gguf), str(n_ctx)], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["rss_delta_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the shipped SmolLM2)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 8192])
    args = parser.parse_args()
    gguf = args.gguf or default_gguf_path()
    shape = fit.ModelShape.from_gguf(read_gguf_info(gguf))
    rows = []
    for n_ctx in args.contexts:
        est = fit.estimate(shape, n_ctx)
        measured = measure(gguf, n_ctx)
        rows.append({"n_ctx": n_ctx, "estimate_bytes": est.total_bytes, "weights_bytes": est.weights_bytes,
                     "kv_cache_bytes": est.kv_cache_bytes, "overhead_bytes": est.overhead_bytes,
                     "measured_rss_bytes": measured, "ratio": round(est.total_bytes / measured, 3)})
    print(f"model: {gguf.name} ({format_bytes(shape.size_bytes)})")
    print(f"{'n_ctx':>7} {'estimate':>10} {'(weights + kv + overhead)':>32} {'measured':>10} {'ratio':>6}")
    for r in rows:
        parts = (f"{format_bytes(r['weights_bytes'])} + {format_bytes(r['kv_cache_bytes'])} + "
                 f"{format_bytes(r['overhead_bytes'])}")
        print(f"{r['n_ctx']:>7} {format_bytes(r['estimate_bytes']):>10} {parts:>32} "
              f"{format_bytes(r['measured_rss_bytes']):>10} {r['ratio']:>6.3f}")
    within = all(0.75 <= r["ratio"] <= 1.25 for r in rows)
    print(f"all within 25%: {within}")
    print(json.dumps({"model": gguf.name, "rows": rows, "within_25_percent": within}))


if __name__ == "__main__":
    main()
