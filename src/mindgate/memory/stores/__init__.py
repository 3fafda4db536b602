"""Memory stores: the embedded SQLite store (default) and the PostgreSQL + pgvector scale-out store."""

from __future__ import annotations

from mindgate.config import PgVectorStoreSection, SQLiteStoreSection
from mindgate.memory.stores._base import MemoryStore


def create_store(section: SQLiteStoreSection | PgVectorStoreSection) -> MemoryStore:
    """The store a ``vector_store`` config section names (imported on first use)."""
    if section.provider == "pgvector":
        from mindgate.memory.stores._pgvector import PgVectorStore

        return PgVectorStore(section.config)
    from mindgate.memory.stores._sqlite import SQLiteStore

    return SQLiteStore(section.config.resolved_path(), busy_timeout_ms=section.config.busy_timeout_ms,
                       vector_cache_mb=section.config.vector_cache_mb)
