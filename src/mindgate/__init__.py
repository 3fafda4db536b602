"""mindgate: a local-first model gateway with long-term memory for AI agents.

Public API::

    from mindgate import Memory, AsyncMemory, MindgateConfig
    from mindgate.providers import create_chat_model, create_embedder
"""

from mindgate.config import MindgateConfig
from mindgate.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextOverflowError,
    EmbedderMismatchError,
    FilterError,
    InvalidRequestError,
    MindgateError,
    ModelNotFoundError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    ResourceError,
    RoutingError,
    ScopeError,
    StoreError,
    StructuredOutputError,
)
from mindgate.memory.memory import AsyncMemory, Memory

__version__ = "0.1.0"

__all__ = [
    "AsyncMemory", "AuthenticationError", "ConfigurationError", "ContextOverflowError", "EmbedderMismatchError",
    "FilterError", "InvalidRequestError", "Memory", "MindgateConfig", "MindgateError", "ModelNotFoundError",
    "NetworkError", "NotFoundError", "PermissionDeniedError", "ProviderError", "RateLimitError", "ResourceError",
    "RoutingError", "ScopeError", "StoreError", "StructuredOutputError", "__version__",
]
