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
    InsufficientMemoryError,
    InvalidRequestError,
    MindgateError,
    ModelNotFoundError,
    ModelNotServedError,
    NativeResponsesUnavailable,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    ResourceError,
    RoutingError,
    ScopeError,
    StoreError,
    StreamInterruptedError,
    StructuredOutputError,
    TargetTimeoutError,
    ToolServerError,
    TooManyRequestsError,
    UnauthorizedError,
)
from mindgate.memory._memory import AsyncMemory, Memory

__version__ = "0.1.0"

__all__ = [
    "AsyncMemory", "AuthenticationError", "ConfigurationError", "ContextOverflowError", "EmbedderMismatchError",
    "FilterError", "InsufficientMemoryError", "InvalidRequestError", "Memory", "MindgateConfig", "MindgateError",
    "ModelNotFoundError", "ModelNotServedError", "NativeResponsesUnavailable", "NetworkError", "NotFoundError",
    "PermissionDeniedError", "ProviderError", "RateLimitError", "ResourceError", "RoutingError", "ScopeError",
    "StoreError", "StreamInterruptedError", "StructuredOutputError", "TargetTimeoutError", "TooManyRequestsError",
    "ToolServerError", "UnauthorizedError", "__version__",
]
