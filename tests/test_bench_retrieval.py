"""bench/retrieval.py end to end on a tiny LongMemEval-shaped file (real MiniLM, real SQLite): per-message
ingest, the key-context store, calibration, and the fitted settings written as a config mindgate loads."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mindgate import Memory
from mindgate.config import MemorySettings, MindgateConfig

ROOT = Path(__file__).resolve().parents[1]


def _question(qid: str, qtype: str, question: str, date: str, sessions: list[list[tuple[str, str, bool]]]) -> dict:
    return {"question_id": qid, "question_type": qtype, "question": question, "question_date": date,
            "answer": "-", "answer_session_ids": [f"{qid}-s{len(sessions) - 1}"],
            "haystack_session_ids": [f"{qid}-s{i}" for i in range(len(sessions))],
            "haystack_dates": [f"2023/05/{10 + i:02d} (Wed) 10:00" for i in range(len(sessions))],
            "haystack_sessions": [[{"role": r, "content": c, "has_answer": a} for r, c, a in s] for s in sessions]}


def test_calibration_prints_rrf_beside_the_fitted_configuration_and_writes_it_as_config(tmp_path: Path) -> None:
    noise = [("user", "Can you suggest a pasta recipe?", False), ("assistant", "Try carbonara with eggs.", False)]
    data = [
        _question("q1", "single-session-user", "Which city did I move to?", "2023/05/20 (Sat) 10:00",
                  [noise, [("user", "I moved to Lisbon last spring.", True), ("assistant", "So sunny.", False)]]),
        _question("q2", "temporal-reasoning", "What did I buy yesterday?", "2023/05/12 (Fri) 10:00",
                  [noise, [("user", "I bought a red bicycle today.", True), ("assistant", "Enjoy the rides.", False)]]),
        _question("q3", "single-session-user", "What is my dog's name?", "2023/05/20 (Sat) 10:00",
                  [noise, [("user", "My dog is called Rex.", True), ("assistant", "Rex is a classic name.", False)]]),
        _question("q4", "temporal-reasoning", "Where did I eat last week?", "2023/05/18 (Thu) 10:00",
                  [noise, [("user", "We ate sushi at Kaito.", True), ("assistant", "Kaito sounds great.", False)]]),
    ]
    path = tmp_path / "lme.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)
    config_file = tmp_path / "fitted.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "bench/retrieval.py"), "--data", str(path), "--per-message",
                          "--db", str(tmp_path / "a.db"), "--calibrate", "--key-context", str(tmp_path / "b.db"),
                          "--key-facts", str(tmp_path / "c.db"),
                          "--threads", "1", "--write-config", str(config_file)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["questions"] == 4 and report["memories"] == 16
    cal = report["calibration"]
    assert cal["train_questions"] == 2 and cal["test_questions"] == 2
    assert set(cal["new_all"]) == {"single-session-user", "temporal-reasoning", "overall"}
    assert set(cal["ratio_all"]) == {"session@5", "session@10", "turn@5", "turn@10"}
    assert "today's RRF" in run.stdout and "ratio new/rrf" in run.stdout
    # the defaults through search() beside RRF, on the store built the way the defaults key memories
    assert set(report["defaults"]["all"]) == {"single-session-user", "temporal-reasoning", "overall"}
    assert report["defaults"]["settings"]["speaker_weight"] == MemorySettings().speaker_weight
    assert "ratio default/rrf" in run.stdout and "defaults < RRF" in run.stdout
    assert set(cal["best_per_keys"]) == {"plain", "context", "facts"}
    assert {"rrf+key_facts", "rrf+key_context"} <= set(cal["ablation"])
    assert all(0.0 <= v <= 1.0 for v in cal["new_all"]["overall"].values())

    written = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    assert written == cal["config"]
    assert written["memory"]["key_context"] == (cal["best"]["keys"] == "context")
    assert written["memory"]["key_facts"] == (cal["best"]["keys"] == "facts")
    store = tmp_path / {"plain": "a.db", "context": "b.db", "facts": "c.db"}[cal["best"]["keys"]]
    settings = MindgateConfig.from_dict({**written,
                                         "vector_store": {"provider": "sqlite", "config": {"path": str(store)}}})
    assert settings.memory.fusion == written["memory"]["fusion"]
    assert settings.memory.time_weight == written["memory"]["time_weight"]
    assert settings.memory.speaker_weight == written["memory"]["speaker_weight"]
    # the fitted config opens the store it was fitted on as it is (same key construction, no reindex needed)
    with Memory.from_config(settings) as memory:
        found = memory.search("Which city did I move to?", user_id="q1")["results"]
        assert found[0]["memory"] == "I moved to Lisbon last spring."


def test_ingest_cost_times_per_message_adds_with_fact_keys_off_and_on(tmp_path: Path) -> None:
    turns = [("user", "I moved to Lisbon last spring. Can you suggest a café?", True),
             ("assistant", "Try Café A Brasileira.", False)]
    path = tmp_path / "lme.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump([_question("q1", "single-session-user", "Where did I move?", "2023/05/20 (Sat) 10:00",
                             [turns])], fh)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "bench/retrieval.py"), "--data", str(path), "--ingest-cost", "2",
                          "--threads", "1"], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    cost = json.loads(run.stdout.strip().splitlines()[-1])
    assert cost["turns"] == 2 and cost["rounds"] == 3
    assert cost["adds_per_s"]["off"] > 0 and cost["adds_per_s"]["on"] > 0
    assert cost["ratio_on_off"] == round(cost["adds_per_s"]["on"] / cost["adds_per_s"]["off"], 3)
    assert "key_facts off" in run.stdout
