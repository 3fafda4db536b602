"""Model management: what models exist where (:class:`ModelCatalog`), loading and unloading them with a TTL
(:class:`ModelManager`), the machine's free memory (:mod:`~mindgate.models.resources`), and whether a
model fits (:mod:`~mindgate.models.fit`). The local engine's loaded models live in :class:`LocalModelPool`.
"""

from mindgate.errors import InsufficientMemoryError
from mindgate.models.catalog import CatalogListing, ModelCatalog, endpoints_from_config
from mindgate.models.fit import MemoryEstimate
from mindgate.models.local_pool import LocalInstance, LocalModelPool, default_pool
from mindgate.models.manager import FitReport, LoadResult, ModelManager
from mindgate.models.records import (
    Capabilities,
    Endpoint,
    EndpointStatus,
    LoadedInstance,
    LoadProgress,
    ModelInfo,
    ModelState,
    ModelType,
)
from mindgate.models.resources import Resources, snapshot

__all__ = [
    "Capabilities", "CatalogListing", "Endpoint", "EndpointStatus", "FitReport", "InsufficientMemoryError",
    "LoadProgress", "LoadResult", "LoadedInstance", "LocalInstance", "LocalModelPool", "MemoryEstimate",
    "ModelCatalog", "ModelInfo", "ModelManager", "ModelState", "ModelType", "Resources", "default_pool",
    "endpoints_from_config", "snapshot",
]
