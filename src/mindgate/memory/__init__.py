"""Long-term memory: the Memory API, fact extraction, hybrid retrieval and the stores."""

from mindgate.memory._memory import AsyncMemory, Memory

__all__ = ["AsyncMemory", "Memory"]
