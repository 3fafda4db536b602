"""``mindgate memory ...`` and ``mindgate reindex`` on the embedded defaults (real MiniLM, SQLite under an
isolated MINDGATE_HOME), run through ``mindgate.cli.main`` as the console script runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mindgate.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    # in this process an earlier test may have imported transformers with its loading bar on (the console
    # script turns it off before importing; test_the_console_script_prints_one_line_errors checks that)
    # (its carriage returns split into lines of their own, which are dropped with it)
    err = "".join(line for line in err.splitlines(keepends=True) if "Loading weights" not in line and line.strip())
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_memory_commands_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    added = run_json(capsys, "memory", "add", "I grow tomatoes on my balcony.", "--user", "ana", "--no-infer",
                     "--metadata", '{"topic": "garden"}')
    [item] = added["results"]
    memory_id = item["id"]
    run_json(capsys, "memory", "add", "My brother is called Rui.", "-u", "ana", "--no-infer")

    listed = run_json(capsys, "memory", "list", "-u", "ana")
    assert {m["memory"] for m in listed["results"]} == {"I grow tomatoes on my balcony.", "My brother is called Rui."}
    garden = run_json(capsys, "memory", "list", "-u", "ana", "--filters", '{"topic": "garden"}')
    assert [m["id"] for m in garden["results"]] == [memory_id]
    found = run_json(capsys, "memory", "search", "what vegetables do I grow?", "-u", "ana", "-n", "1")
    assert found["results"][0]["id"] == memory_id

    assert run_json(capsys, "memory", "update", memory_id, "I grow peppers on my balcony.", "-u", "ana")["event"] \
        == "UPDATE"
    assert run_json(capsys, "memory", "get", memory_id, "-u", "ana")["memory"] == "I grow peppers on my balcony."
    history = run_json(capsys, "memory", "history", memory_id)
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    run_json(capsys, "memory", "delete", memory_id, "-u", "ana")
    assert [m["memory"] for m in run_json(capsys, "memory", "list", "-u", "ana")["results"]] == \
        ["My brother is called Rui."]
    assert run_json(capsys, "memory", "delete", "--all", "-u", "ana", "--yes")["deleted"] == 1

    # tables for people
    run_json(capsys, "memory", "add", "I like chess.", "-u", "ana", "--no-infer")
    code, out, _ = run(capsys, "memory", "list", "-u", "ana")
    assert code == 0 and "I like chess." in out and "user=ana" in out


@pytest.mark.parametrize(("args", "words"), [
    (["memory", "list"], "no scope given"),
    (["memory", "get", "nope", "-u", "ana"], "not found"),
    (["memory", "list", "-u", "ana", "--filters", "{bad"], "--filters is not valid JSON"),
    (["memory", "add", "x", "-u", "ana", "--no-infer", "--metadata", "[1]"], "must be a JSON object"),
    (["memory", "delete", "-u", "ana"], "either a memory id or --all"),
])
def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert err.count("\n") <= 2  # one logical line (rich may wrap at the terminal width)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "memory", "search")
    assert code == 2 and "Missing argument" in err


def test_reindex_after_the_store_was_written(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("one fact", "another fact", "a third fact"):
        run_json(capsys, "memory", "add", text, "-u", "re", "--no-infer")
    result = run_json(capsys, "reindex")
    assert result == {"reindexed": 0}  # every vector is already from the configured embedder
    code, out, _ = run(capsys, "reindex")
    assert code == 0 and "already embedded" in out


def test_the_console_script_prints_one_line_errors(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mindgate")
    env = {**os.environ, "MINDGATE_HOME": str(tmp_path)}
    done = subprocess.run([str(script), "memory", "list", "--config", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: cannot read config file") and "Traceback" not in done.stderr
    missing = subprocess.run([str(script), "memory", "get", "nope", "-u", "ana"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert missing.returncode == 1 and missing.stderr.startswith("error: memory 'nope' not found")
    assert missing.stderr.count("\n") <= 2
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("mindgate ")
