"""Error of mindgate's token estimate against the real SmolLM2 tokenizer on real chat text (LongMemEval turns).

Sessions are de-duplicated and split by a hash of their content: one half may be used to fit the coefficients
(``--fit`` prints a least-squares fit), the other half is only ever used to measure. Reports, per turn and per
session, the relative error (estimate - real) / real of the raw model, of the default estimate (with its
safety margin), and of a plain 4-characters-per-token rule.

Usage: python bench/token_estimate.py [--turns 20000] [--fit]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mindgate._assets import default_gguf_path
from mindgate.context._tokens import _DIGIT, _SYMBOL, _WORD, DEFAULT_ESTIMATOR
from mindgate.providers._base import chatml_prompt

DATA = Path("/work/shared/data/longmemeval/longmemeval_s_100.json.gz")


def load_sessions(path: Path) -> list[list[dict[str, Any]]]:
    with gzip.open(path) as file:
        questions = json.loads(file.read())
    seen: set[str] = set()
    sessions = []
    for question in questions:
        for session in question["haystack_sessions"]:
            key = hashlib.sha1(json.dumps(session, sort_keys=True).encode()).hexdigest()
            if key not in seen:
                seen.add(key)
                sessions.append([{"role": t["role"], "content": t["content"]} for t in session])
    return sessions


def held_out(session: list[dict[str, Any]]) -> bool:
    return hashlib.sha1(json.dumps(session).encode()).digest()[0] % 2 == 1


def limit(sessions: list[list[dict[str, Any]]], turns: int) -> list[list[dict[str, Any]]]:
    """The first sessions holding about ``turns`` turns in all."""
    out, total = [], 0
    for session in sessions:
        if total >= turns:
            break
        out.append(session)
        total += len(session)
    return out


def features(text: str) -> list[float]:
    return [len(text), len(_WORD.findall(text)), len(_DIGIT.findall(text)), len(_SYMBOL.findall(text)),
            text.count("\n")]


def stats(estimates: np.ndarray, real: np.ndarray) -> dict[str, float]:
    err = (estimates - real) / np.maximum(real, 1)
    return {"mean": float(err.mean()), "mean_abs": float(np.abs(err).mean()),
            "p1": float(np.percentile(err, 1)), "p99": float(np.percentile(err, 99)),
            "undercount_share": float((estimates < real).mean()), "n": len(real)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--turns", type=int, default=20000, help="held-out turns measured")
    parser.add_argument("--fit", action="store_true", help="print a least-squares fit on the other half")
    args = parser.parse_args()

    from llama_cpp import Llama

    tokenizer = Llama(model_path=str(default_gguf_path()), vocab_only=True, verbose=False)

    def real_tokens(text: str) -> int:
        return len(tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    sessions = load_sessions(args.data)
    test_sessions = limit([s for s in sessions if held_out(s)], args.turns)
    test = [t["content"] for s in test_sessions for t in s]
    if args.fit:
        train = [t["content"] for s in limit([s for s in sessions if not held_out(s)], args.turns) for t in s]
        x = np.array([features(t) for t in train])
        y = np.array([real_tokens(t) for t in train], dtype=float)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        print("fit (per_char, per_word, per_digit, per_symbol, per_newline):", [round(float(c), 4) for c in coef])

    real = np.array([real_tokens(t) for t in test], dtype=float)
    raw = np.array([DEFAULT_ESTIMATOR.raw_text_tokens(t) for t in test])
    with_margin = np.array([DEFAULT_ESTIMATOR.text_tokens(t) for t in test], dtype=float)
    four = np.array([math.ceil(len(t) / 4) for t in test], dtype=float)

    session_real = np.array([real_tokens(chatml_prompt(s)) for s in test_sessions], dtype=float)
    session_est = np.array([DEFAULT_ESTIMATOR.prompt_tokens(s) for s in test_sessions], dtype=float)

    results = {
        "per turn, raw estimate": stats(raw, real),
        f"per turn, +{DEFAULT_ESTIMATOR.margin:.0%} margin (default)": stats(with_margin, real),
        "per turn, 4 chars/token": stats(four, real),
        "per session, default (ChatML framing)": stats(session_est, session_real),
    }
    print(f"SmolLM2 tokenizer, {len(test)} held-out LongMemEval turns, {len(test_sessions)} whole sessions\n")
    print(f"{'estimate':42} {'mean':>8} {'mean abs':>9} {'p1':>8} {'p99':>8} {'undercounts':>12}")
    for name, row in results.items():
        print(f"{name:42} {row['mean']:>+8.1%} {row['mean_abs']:>9.1%} {row['p1']:>+8.1%} {row['p99']:>+8.1%} "
              f"{row['undercount_share']:>12.1%}")
    print(json.dumps({"bench": "token_estimate", "results": results}))


if __name__ == "__main__":
    main()
