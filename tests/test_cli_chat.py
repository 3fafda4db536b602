"""``mindgate chat``: the interactive chat over the Python API on embedded defaults (the ``auto`` chain,
here the in-process SmolLM2 engine; MiniLM; SQLite), fed from a pipe as a user would type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MINDGATE = str(Path(sys.executable).with_name("mindgate"))


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "MINDGATE_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def test_chat_streams_answers_and_remembers_in_the_background(tmp_path: Path) -> None:
    seeded = subprocess.run([MINDGATE, "memory", "add", "Kai's dog is called Biscuit.", "-u", "kai", "--no-infer"],
                            capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    typed = "What is my dog called?\n/memories\nI also have a cat named Pepper.\n/exit\n"
    done = subprocess.run([MINDGATE, "chat", "--user", "kai", "--max-tokens", "24"], input=typed,
                          capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr
    answers = [line.split("assistant> ", 1)[1] for line in done.stdout.splitlines() if "assistant> " in line]
    assert len(answers) == 2 and all(answer.strip() for answer in answers)
    assert "- Kai's dog is called Biscuit." in done.stdout  # /memories lists what is remembered
    assert "Traceback" not in done.stderr
    # both turns went to memory (add with infer=True on the same local model) before the chat ended, and the
    # outcome is reported: remembered (what changed), or failed -- never silently dropped
    [summary] = ["memory: " + line.split("memory: ", 1)[1] for line in done.stdout.splitlines()
                 if "memory: " in line]
    remembered = int(summary.split()[1])
    failed = int(summary.split("; ")[1].split()[0]) if "could not be remembered" in summary else 0
    assert remembered + failed == 2, summary
    listed = subprocess.run([MINDGATE, "memory", "list", "-u", "kai", "--json"], capture_output=True, text=True,
                            env=_env(tmp_path), timeout=300)
    stored = json.loads(listed.stdout)["results"]
    added = int(summary.split(" added")[0].rsplit("(", 1)[1]) if " added" in summary else 0
    assert len(stored) == 1 + added  # the seeded fact plus what the model added


def test_chat_without_a_user_has_no_memory(tmp_path: Path) -> None:
    done = subprocess.run([MINDGATE, "chat", "--max-tokens", "8"], input="Hello!\n", capture_output=True,
                          text=True, env=_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "without long-term memory" in done.stdout and "assistant> " in done.stdout
