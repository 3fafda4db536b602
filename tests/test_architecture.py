"""Architecture rules checked by the test suite: the import contract (import-linter, configured under
[tool.importlinter] in pyproject.toml) keeps the layers one-way, and every public error is one class of
mindgate.errors, exported from the package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import mindgate
from mindgate import errors

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mindgate"


def test_layers_are_one_way() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_every_public_error_is_exported_from_the_package() -> None:
    defined = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, errors.MindgateError)}
    assert defined <= set(mindgate.__all__), defined - set(mindgate.__all__)
    assert all(getattr(mindgate, name) is getattr(errors, name) for name in defined)


def test_errors_are_defined_in_mindgate_errors_only() -> None:
    """A MindgateError subclass declared elsewhere would be a public error the package does not export."""
    error_names = {name for name, value in vars(errors).items() if isinstance(value, type)
                   and issubclass(value, Exception)}
    stray = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in error_names
                                                      for b in node.bases):
                stray.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert not stray, stray
