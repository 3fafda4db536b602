"""Store paths from configuration: traversal, directories, non-SQLite files, symlinks, NUL bytes, bad
collection names and a bad MINDGATE_HOME. Each is a clear ConfigurationError/StoreError naming the path,
and nothing is written outside: the target file keeps its bytes and no journal/WAL file appears beside it.

(The HTTP API takes no file paths at all: a store path comes only from the operator's configuration.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError, MindgateError, StoreError
from mindgate.memory._memory import AsyncMemory, Memory
from mindgate.memory.stores import create_store
from mindgate.providers._base import Embedder

PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def jail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/etc/passwd (a non-SQLite file), tmp/notes.txt, and the working directory tmp/app/run."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(PASSWD)
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "app" / "run").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "app" / "run")
    return tmp_path


def open_memory(path: str, embedder: Embedder) -> Memory:
    store = create_store(MindgateConfig.from_dict({"vector_store": {"config": {"path": path}}}).vector_store)
    return Memory(AsyncMemory(embedder=embedder, store=store))


@pytest.mark.parametrize(("path", "words"), [
    ("../../etc/passwd", "not a SQLite database"),
    ("{root}/etc/passwd", "not a SQLite database"),
    ("{root}/app/run/../../notes.txt", "not a SQLite database"),
    ("{root}/link-to-passwd", "not a SQLite database"),
    ("{root}/etc", "is a directory"),
    ("../..", "is a directory"),
    ("{root}/notes.txt/memory.db", "cannot create the directory"),
    ("{root}/etc/pass\x00wd", "needs a file path"),
])
def test_a_bad_store_path_is_a_clear_error_and_writes_nothing(jail: Path, minilm: Embedder, path: str,
                                                              words: str) -> None:
    (jail / "link-to-passwd").symlink_to(jail / "etc" / "passwd")
    before = tree(jail)
    with pytest.raises(StoreError) as caught:
        memory = open_memory(path.format(root=jail), minilm)
        memory.add("I like tea", user_id="alice", infer=False)  # reached only if opening did not fail
    message = str(caught.value)
    assert words in message, message
    assert tree(jail) == before, "a file was created or changed"
    assert not any(p.name.endswith(("-wal", "-shm", "-journal")) for p in jail.rglob("*"))


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", "..", "memory.db\x00", "x" * 65, ""])
def test_a_collection_name_cannot_be_a_path(jail: Path, name: str) -> None:
    with pytest.raises(ConfigurationError, match="collection_name"):
        MindgateConfig.from_dict({"vector_store": {"config": {"collection_name": name}}})


def test_mindgate_home_that_is_a_file_is_a_clear_error(jail: Path, monkeypatch: pytest.MonkeyPatch,
                                                       minilm: Embedder) -> None:
    monkeypatch.setenv("MINDGATE_HOME", str(jail / "notes.txt"))
    before = tree(jail)
    with pytest.raises(StoreError, match="cannot create the directory"):
        create_store(MindgateConfig.from_dict({}).vector_store)
    assert tree(jail) == before


def test_a_relative_path_stays_where_it_says(jail: Path, minilm: Embedder) -> None:
    memory = open_memory("../data/memory.db", minilm)  # relative to the working directory, tmp/app/run
    memory.add("I like tea", user_id="alice", infer=False)
    memory.close()
    assert (jail / "app" / "data" / "memory.db").is_file()
    created = {p.relative_to(jail).parts[:2] for p in jail.rglob("*") if p.is_file()} - {("etc", "passwd"),
                                                                                          ("notes.txt",)}
    assert created == {("app", "data")}


@pytest.mark.parametrize("make", [
    lambda root: root / "etc" / "passwd",
    lambda root: root / "notes.txt",
], ids=["passwd", "text"])
def test_an_existing_file_is_never_truncated(jail: Path, minilm: Embedder, make: Callable[[Path], Path]) -> None:
    target = make(jail)
    content = target.read_bytes()
    os.chmod(target, 0o644)
    for _ in range(2):  # twice: a second open must not "repair" it either
        with pytest.raises(MindgateError):
            open_memory(str(target), minilm).add("x", user_id="u", infer=False)
    assert target.read_bytes() == content
