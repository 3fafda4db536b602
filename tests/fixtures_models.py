"""The real in-process models, loaded once per test session."""

from __future__ import annotations

import pytest

from mindgate.providers.local import LlamaCppChatModel, SentenceTransformerEmbedder


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """The shipped all-MiniLM-L6-v2 (384 dims), on one torch thread."""
    import torch

    torch.set_num_threads(1)
    embedder = SentenceTransformerEmbedder()
    embedder.embed_batch(["warm-up"])
    return embedder


@pytest.fixture(scope="session")
def smollm() -> LlamaCppChatModel:
    """The shipped SmolLM2-135M-Instruct GGUF in this process, one thread."""
    return LlamaCppChatModel(n_ctx=4096, n_threads=1)
