"""Model management: what models exist where (:class:`ModelCatalog`), loading and unloading them with a TTL
(:class:`ModelManager`), the machine's free memory (:mod:`~mindgate.providers.management._resources`), and
whether a model fits (:mod:`~mindgate.providers.management._fit`). The local engine's loaded models live in
:class:`LocalModelPool`. Each provider's driver lives with the provider (:mod:`mindgate.providers.management`).
"""

from mindgate.errors import InsufficientMemoryError
from mindgate.models._catalog import CatalogListing, ModelCatalog, endpoints_from_config
from mindgate.models._manager import FitReport, LoadResult, ModelManager
from mindgate.providers.local._pool import LocalInstance, LocalModelPool, default_pool
from mindgate.providers.management._fit import MemoryEstimate
from mindgate.providers.management._records import (
    Capabilities,
    Endpoint,
    EndpointStatus,
    LoadedInstance,
    LoadProgress,
    ModelInfo,
    ModelState,
    ModelType,
)
from mindgate.providers.management._resources import Resources, snapshot

__all__ = [
    "Capabilities", "CatalogListing", "Endpoint", "EndpointStatus", "FitReport", "InsufficientMemoryError",
    "LoadProgress", "LoadResult", "LoadedInstance", "LocalInstance", "LocalModelPool", "MemoryEstimate",
    "ModelCatalog", "ModelInfo", "ModelManager", "ModelState", "ModelType", "Resources", "default_pool",
    "endpoints_from_config", "snapshot",
]
