"""mindgate."""
