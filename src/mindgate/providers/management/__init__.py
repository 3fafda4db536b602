"""What every provider's model-management driver shares: the records of managed models (_records.py), the
driver contract (_driver.py), JSON over HTTP with the one error mapping (_http.py), this machine's memory
(_resources.py), GGUF metadata (_gguf_info.py), memory estimates (fit.py) and which model to use when the
config names none (_detect.py).

A provider that manages its models names its driver class in its spec (``ProviderSpec.driver``) and keeps it
in its own package (``providers/lmstudio/_management.py``, ``providers/ollama/_management.py``,
``providers/local/_management.py``, ``providers/_openai_management.py``). :mod:`mindgate.models` (the
catalog, the manager, ``mindgate models``) drives them through that spec and never names a vendor.
"""
