"""Connections, transactions, errors and schema migrations for the SQLite store.

Contracts:

* One apsw connection per thread (SQLite connections must not interleave transactions), all opened with
  the same settings: sqlite-vec loaded, WAL, ``synchronous=FULL`` (an acknowledged write survives power
  loss, not just a crashed process), a busy timeout.
* :meth:`Connections.write` runs ``BEGIN IMMEDIATE``: writers take the write lock up front and wait for
  it (busy timeout) instead of failing later with a lock upgrade error. :meth:`Connections.read` is a
  deferred transaction, so a search sees one snapshot.
* Every ``apsw.Error`` leaves as a :class:`~mindgate.errors.StoreError` naming the file and what to do.
* Migrations are ``migrations/NNN_name.sql``; ``PRAGMA user_version`` records the last one applied. They
  run under the write lock, re-checking the version, so processes opening a new file at once apply each
  migration exactly once.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import apsw
import sqlite_vec

from mindgate.errors import StoreError
from mindgate.memory.stores import _sqlite_text

# FULL: a commit is on disk when apply() returns. A larger autocheckpoint interval folds the many
# scattered page writes of consecutive batches into fewer checkpoint copies (~12% less CPU per add).
# mmap_size is an upper bound (only the file's size is mapped): 16 GiB lets searches of a large store
# read pages without a system call each (a 2.4 GB store of 1M memories: ~20% less CPU per search).
PRAGMAS = ("PRAGMA synchronous=FULL", "PRAGMA temp_store=MEMORY", "PRAGMA cache_size=-32768",
           "PRAGMA mmap_size=17179869184", "PRAGMA wal_autocheckpoint=10000")
MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def validate_path(path: Path | str) -> Path:
    """The store file's absolute path; creates a missing parent directory.

    Raises StoreError when the path is a directory, its parent is not a directory, or it is not writable.
    """
    if str(path) in ("", ":memory:") or str(path).startswith("file:") or "\x00" in str(path):
        raise StoreError(f"the SQLite store needs a file path, got {str(path)!r}",
                         hint="pass a file path, e.g. a file in a temporary directory")
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        raise StoreError(f"the memory store path {p} is a directory",
                         hint="pass a file path inside it, e.g. " + str(p / "memory.db"))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory for the memory store {p}: {exc.strerror or exc}",
                         hint="choose a path in a writable directory") from exc
    if not os.access(p.parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.R_OK | os.W_OK)):
        raise StoreError(f"the memory store {p} is not writable",
                         hint="fix its permissions (the file and its directory, which holds the WAL) "
                              "or choose another path")
    return p


def translate(exc: apsw.Error, path: Path, busy_timeout_ms: int, operation: str = "write") -> StoreError:
    """An apsw error as a StoreError that says what happened to which file and what to do. ``operation``
    ("read", "write" or "open") is what failed; it is kept on the error as ``operation``."""
    error = _translate(exc, path, busy_timeout_ms, operation)
    error.operation = operation
    return error


def _translate(exc: apsw.Error, path: Path, busy_timeout_ms: int, operation: str) -> StoreError:
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return StoreError(f"the memory store {path} stayed locked for {busy_timeout_ms} ms: another "
                          "process holds the write lock",
                          hint="retry, stop the process that keeps writing, or raise busy_timeout_ms")
    if isinstance(exc, apsw.CorruptError | apsw.NotADBError):
        return StoreError(f"the memory store {path} is damaged or not a SQLite database ({exc})",
                          hint="restore it from a backup, or move it away to start a new store")
    if isinstance(exc, apsw.FullError):
        return StoreError(f"the disk holding the memory store {path} is full",
                          hint="free disk space and retry; nothing of the failed write was stored")
    if isinstance(exc, apsw.ReadOnlyError | apsw.CantOpenError | apsw.PermissionsError | apsw.IOError):
        return StoreError(f"cannot read or write the memory store {path} ({exc})",
                          hint="check that the file and its directory exist and are writable")
    if operation == "read":
        return StoreError(f"a read of the memory store {path} failed: {exc}",
                          hint="nothing was changed; report this if it repeats")
    return StoreError(f"the memory store {path} failed during a {operation}: {exc}",
                      hint="nothing of the failed write was stored; report this if it repeats")


class Connections:
    """Per-thread apsw connections to one file, with transaction helpers."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._migrated = False

    def get(self) -> apsw.Connection:
        if self._closed:
            raise StoreError(f"the memory store {self.path} is closed", hint="open a new store object")
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        conn = self._connect()
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        if not self._migrated:
            migrate(conn, self.path, self.busy_timeout_ms)
            self._migrated = True
        return conn

    def _connect(self) -> apsw.Connection:
        try:
            conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
        except apsw.Error as exc:
            raise translate(exc, self.path, self.busy_timeout_ms, "open") from exc
        try:
            conn.setbusytimeout(self.busy_timeout_ms)
            conn.enable_load_extension(True)
            conn.load_extension(sqlite_vec.loadable_path())
            conn.enable_load_extension(False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            if str(mode).lower() != "wal":
                raise StoreError(f"the memory store {self.path} cannot use WAL mode (got {mode!r})",
                                 hint="put the store on a local file system")
            for pragma in PRAGMAS:
                conn.execute(pragma).fetchall()
            conn.create_scalar_function("mg_lower", _lower, 1, deterministic=True)  # type: ignore[arg-type]
            _sqlite_text.register(conn)
        except apsw.Error as exc:
            conn.close()
            raise translate(exc, self.path, self.busy_timeout_ms, "open") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back on any error."""
        with self._transaction("BEGIN IMMEDIATE", "write") as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """One read transaction (a consistent snapshot)."""
        with self._transaction("BEGIN", "read") as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self, begin: str, operation: str) -> Iterator[apsw.Connection]:
        conn = self.get()
        if conn.in_transaction:
            raise StoreError("a memory store transaction is already open on this thread",
                             hint="do not call the store from inside an iterator or callback of the store")
        try:
            conn.execute(begin)
        except apsw.Error as exc:
            raise translate(exc, self.path, self.busy_timeout_ms, operation) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, apsw.Error):
                raise translate(exc, self.path, self.busy_timeout_ms, operation) from exc
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(apsw.Error):
                conn.close()


def _lower(value: apsw.SQLiteValue) -> apsw.SQLiteValue:
    # SQLite's lower() folds ASCII only; filters must agree with Python's str.lower().
    return value.lower() if isinstance(value, str) else value


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every packaged migration file, in version order."""
    out = []
    for entry in (resources.files("mindgate.memory.stores") / "migrations").iterdir():
        m = MIGRATION_NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    for i, (version, name, _) in enumerate(out, start=1):
        if version != i:
            raise StoreError(f"schema migrations are not numbered 001, 002, ...: {name}",
                             hint="this is a packaging bug; reinstall mindgate")
    return out


def migrate(conn: apsw.Connection, path: Path, busy_timeout_ms: int,
            available: list[tuple[int, str, str]] | None = None) -> int:
    """Apply pending migrations; returns the schema version. A newer file than this code is an error."""
    steps = migrations() if available is None else available
    latest = steps[-1][0] if steps else 0
    try:
        current = _user_version(conn)
        if current == latest:
            return current
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _user_version(conn)
            if current > latest:
                raise StoreError(f"the memory store {path} has schema version {current}, newer than this "
                                 f"mindgate knows ({latest})", hint="upgrade mindgate to open it")
            for version, _name, sql in steps[current:]:
                conn.execute(sql)
                conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except apsw.Error as exc:
        raise translate(exc, path, busy_timeout_ms, "open") from exc
    return latest


def _user_version(conn: apsw.Connection) -> int:
    version: Any = conn.execute("PRAGMA user_version").fetchall()[0][0]
    return int(version)
