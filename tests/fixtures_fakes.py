"""Fixtures that start the contract fakes (tests/fakes/): one fresh server per test, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes import LMStudioFake, OllamaFake


@pytest.fixture
def lmstudio_fake() -> Iterator[LMStudioFake]:
    """An LM Studio fake (native v1 + v0 + OpenAI surface, JIT on) on a free loopback port."""
    fake = LMStudioFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def ollama_fake() -> Iterator[OllamaFake]:
    """An Ollama fake (native API + OpenAI surface) on a free loopback port."""
    fake = OllamaFake().start()
    yield fake
    fake.stop()
