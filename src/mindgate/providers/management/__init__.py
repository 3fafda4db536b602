"""What every provider's model-management driver shares: the records of managed models (records.py), the
driver contract (driver.py), JSON over HTTP with the one error mapping (http.py), this machine's memory
(resources.py), GGUF metadata (gguf_info.py), memory estimates (fit.py) and which model to use when the
config names none (detect.py).

A provider that manages its models names its driver class in its spec (``ProviderSpec.driver``) and keeps it
in its own package (``providers/lmstudio/_management.py``, ``providers/ollama/_management.py``,
``providers/local/_management.py``, ``providers/_openai_management.py``). :mod:`mindgate.models` (the
catalog, the manager, ``mindgate models``) drives them through that spec and never names a vendor.
"""
