"""Contract fakes for servers that cannot run in the tests (LM Studio, Ollama).

Each fake is a small real HTTP server on 127.0.0.1 built from the vendor's documented shapes and quirks;
see each module's docstring for what is reproduced. Use the pytest fixtures ``lmstudio_fake`` /
``ollama_fake`` (tests/fixtures_fakes.py) or start one yourself::

    fake = LMStudioFake().start()      # fake.base_url == "http://127.0.0.1:PORT" (no /v1)
    ...
    fake.stop()
"""

from .lmstudio import LMStudioFake, LMStudioInstance, LMStudioModel
from .ollama import OllamaFake, OllamaModel, OllamaRunner

__all__ = ["LMStudioFake", "LMStudioInstance", "LMStudioModel", "OllamaFake", "OllamaModel", "OllamaRunner"]
