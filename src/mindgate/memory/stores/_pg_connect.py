"""Connecting to PostgreSQL for the pgvector store: conninfo from config, the pool, and clear errors.

Every psycopg failure leaves this module as a :mod:`mindgate.errors` exception that says which of these
it was and what to do: a malformed DSN (:class:`~mindgate.errors.ConfigurationError`), a server that is
not reachable, a rejected login, a missing database, or a missing pgvector extension
(:class:`~mindgate.errors.StoreError`). Passwords never appear in messages.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from mindgate.config import PgVectorStoreConfig
from mindgate.errors import ConfigurationError, StoreError

_DSN_HINT = "use postgresql://user:password@host:5432/dbname or 'host=... port=... dbname=... user=...'"
MIN_HNSW_VERSION = (0, 5, 0)


def build_conninfo(cfg: PgVectorStoreConfig) -> str:
    """One libpq conninfo string from ``dsn`` / ``connection_string`` and the separate keys (which win);
    connections show up in ``pg_stat_activity`` as ``mindgate:<collection_name>``."""
    if cfg.minconn > cfg.maxconn:
        raise ConfigurationError(f"vector_store.config.minconn ({cfg.minconn}) is larger than maxconn "
                                 f"({cfg.maxconn})", hint="make minconn <= maxconn")
    if cfg.dsn and cfg.connection_string and cfg.dsn != cfg.connection_string:
        raise ConfigurationError("vector_store.config has both `dsn` and `connection_string`",
                                 hint="give one of them (connection_string is mem0's name for dsn)")
    dsn = cfg.dsn or cfg.connection_string or ""
    keys = {k: v for k, v in (("host", cfg.host), ("port", cfg.port), ("dbname", cfg.dbname),
                              ("user", cfg.user), ("password", cfg.password), ("sslmode", cfg.sslmode))
            if v is not None}
    if not dsn and not keys:
        raise ConfigurationError("the pgvector store needs a database to connect to",
                                 hint="set vector_store.config.dsn (" + _DSN_HINT + ") or host/port/dbname/user")
    try:
        return pg_conninfo.make_conninfo(dsn, **keys, connect_timeout=max(1, math.ceil(cfg.connect_timeout)),
                                         application_name=f"mindgate:{cfg.collection_name}")
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"invalid PostgreSQL DSN ({_redact(str(exc), dsn)})", hint=_DSN_HINT) from None


def describe_target(conninfo: str) -> str:
    """``host:port`` (or the socket directory) that ``conninfo`` points at, for error messages."""
    params = pg_conninfo.conninfo_to_dict(conninfo)
    host = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost")
    port = str(params.get("port") or os.environ.get("PGPORT") or 5432)
    return f"{host}:{port}"


def connect_error(exc: psycopg.Error, conninfo: str) -> StoreError | ConfigurationError:
    """The mindgate error for a failed connection attempt."""
    target = describe_target(conninfo)
    params = pg_conninfo.conninfo_to_dict(conninfo)
    text = _redact(str(exc).strip(), str(params.get("password") or ""))
    low = text.lower()
    state = getattr(exc, "sqlstate", None)
    if "invalid connection option" in low or "invalid integer value" in low or "invalid sslmode" in low \
            or "invalid value for parameter" in low or isinstance(exc, psycopg.ProgrammingError):
        return ConfigurationError(f"invalid PostgreSQL DSN ({text})", hint=_DSN_HINT)
    if state in ("28P01", "28000") or "authentication failed" in low or "no password supplied" in low \
            or "pg_hba.conf" in low or re.search(r'role ".*" does not exist', low):
        return StoreError(f"PostgreSQL at {target} rejected the login ({text})",
                          hint="check the user and password in the DSN, and that pg_hba.conf allows this "
                               "user to connect to this database")
    if state == "3D000" or re.search(r'database ".*" does not exist', low):
        return StoreError(f"PostgreSQL at {target} has no such database ({text})",
                          hint="create it (e.g. `createdb <name>`) or fix dbname in the DSN")
    return StoreError(f"PostgreSQL is not reachable at {target}: start it or fix the DSN",
                      hint=f"libpq said: {text}" if text else None)


def connect_once(conninfo: str) -> psycopg.Connection[Any]:
    """One direct connection (used to diagnose failures precisely before the pool exists)."""
    try:
        return psycopg.connect(conninfo)
    except psycopg.Error as exc:
        raise connect_error(exc, conninfo) from None


def ensure_vector_extension(conn: psycopg.Connection[Any], *, hnsw: bool) -> tuple[int, ...]:
    """Create pgvector if it is missing (needs a superuser on most servers); returns its version."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (pg_errors.InsufficientPrivilege, pg_errors.FeatureNotSupported,
                pg_errors.UndefinedFile, pg_errors.UndefinedObject) as exc:
            db = conn.info.dbname
            if isinstance(exc, pg_errors.InsufficientPrivilege):
                raise StoreError(f"the pgvector extension is not enabled in database {db!r} and user "
                                 f"{conn.info.user!r} may not create it",
                                 hint=f"run CREATE EXTENSION vector as a superuser in database {db!r}") from None
            raise StoreError("the pgvector extension is not installed on this PostgreSQL server "
                             f"({str(exc).strip()})",
                             hint="install pgvector on the server (e.g. the postgresql-16-pgvector package), "
                                  f"then run CREATE EXTENSION vector as a superuser in database {db!r}") from None
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert row is not None
    version = tuple(int(p) for p in re.findall(r"\d+", str(row[0]))[:3])
    if hnsw and version < MIN_HNSW_VERSION:
        raise StoreError(f"pgvector {row[0]} has no HNSW index (needs 0.5.0 or newer)",
                         hint="run ALTER EXTENSION vector UPDATE after upgrading pgvector, "
                              "or set vector_store.config.hnsw: false")
    return version


def make_pool(conninfo: str, cfg: PgVectorStoreConfig, name: str) -> ConnectionPool:
    from pgvector.psycopg import register_vector

    pool: ConnectionPool = ConnectionPool(
        conninfo, min_size=cfg.minconn, max_size=cfg.maxconn, open=False, name=name,
        configure=register_vector, check=ConnectionPool.check_connection,
        timeout=max(10.0, 2 * cfg.connect_timeout))
    try:
        pool.open(wait=cfg.minconn > 0, timeout=max(10.0, 2 * cfg.connect_timeout))
    except PoolTimeout:
        pool.close()
        raise StoreError(f"PostgreSQL is not reachable at {describe_target(conninfo)}: start it or fix the DSN",
                         hint="the connection pool could not open its first connections") from None
    return pool


@contextmanager
def db_errors(conninfo: str, pool_size: int) -> Iterator[None]:
    """Turn psycopg/pool failures inside the block into mindgate errors (others pass through)."""
    try:
        yield
    except PoolTimeout:
        raise StoreError(f"no PostgreSQL connection became free or could be opened to "
                         f"{describe_target(conninfo)} in time",
                         hint=f"the server may be down, or all {pool_size} pooled connections are busy: "
                              "check the server, or raise vector_store.config.maxconn") from None
    except psycopg.OperationalError as exc:
        if isinstance(exc, pg_errors.QueryCanceled | pg_errors.LockNotAvailable):
            raise StoreError(f"PostgreSQL cancelled the statement: {exc}") from None
        raise connect_error(exc, conninfo) from None
    except pg_errors.UniqueViolation as exc:
        raise StoreError(f"a write collided with an existing row ({_constraint(exc)})",
                         hint="nothing was written; ids must be unique and a scope holds a fact only once") \
            from None
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL error: {str(exc).strip()}") from None


def _constraint(exc: pg_errors.UniqueViolation) -> str:
    diag = exc.diag
    return f"{diag.constraint_name}: {diag.message_detail}" if diag.constraint_name else str(exc).strip()


def _redact(text: str, secret: str) -> str:
    """Remove ``secret`` (a password or a whole DSN) and any URI password from ``text``."""
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
