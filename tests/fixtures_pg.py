"""PostgreSQL + pgvector fixtures (pgserver)."""
