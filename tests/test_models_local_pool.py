"""LocalModelPool on the real llama.cpp engine and the shipped SmolLM2 GGUF."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mindgate._assets import default_gguf_path
from mindgate.errors import ConfigurationError
from mindgate.models import InsufficientMemoryError
from mindgate.providers.local._pool import LocalModelPool


@pytest.fixture
def pool() -> Iterator[LocalModelPool]:
    pool = LocalModelPool(n_threads=1)
    yield pool
    pool.close()


def test_lease_loads_once_and_reuses_an_adequate_context(pool: LocalModelPool) -> None:
    with pool.lease(n_ctx=1024) as first:
        tokens = first.tokenize(b"hello")
    with pool.lease(n_ctx=512) as second:
        assert second is first and second.tokenize(b"hello") == tokens
    [instance] = pool.instances()
    assert instance.n_ctx == 1024 and instance.path == default_gguf_path().resolve() and not instance.in_use


def test_larger_context_replaces_an_idle_smaller_copy(pool: LocalModelPool) -> None:
    pool.load(n_ctx=256)
    pool.load(n_ctx=1024)
    assert [i.n_ctx for i in pool.instances()] == [1024]


def test_concurrent_leases_share_one_instance_and_take_turns(pool: LocalModelPool) -> None:
    seen: list[int] = []
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, most_inside
        with pool.lease(n_ctx=512) as llama:
            with guard:
                inside += 1
                most_inside = max(most_inside, inside)
            seen.append(id(llama))
            llama.tokenize(b"concurrent use")
            time.sleep(0.02)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(pool.instances()) == 1 and most_inside == 1


def test_idle_ttl_unloads_but_never_during_a_lease(pool: LocalModelPool) -> None:
    with pool.lease(n_ctx=256, ttl=0.2):
        time.sleep(0.5)
        assert len(pool.instances()) == 1  # in use: kept past its TTL
    deadline = time.monotonic() + 5
    while pool.instances() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.instances() == []


def test_unload_by_context_and_find(pool: LocalModelPool) -> None:
    pool.load(n_ctx=512)
    assert pool.find(n_ctx=256) is not None and pool.find(n_ctx=4096) is None
    assert pool.unload(n_ctx=1024) == []
    [gone] = pool.unload(n_ctx=512)
    assert gone.n_ctx == 512 and pool.instances() == []


def test_context_too_large_for_memory_is_refused(pool: LocalModelPool) -> None:
    with pytest.raises(InsufficientMemoryError) as info:
        pool.load(n_ctx=100_000_000)  # a KV cache of ~2 TB
    assert "local model SmolLM2-135M-Instruct.Q4_1.gguf with a 100000000-token context" in str(info.value)
    assert info.value.shorter_context is not None and info.value.shorter_context < 100_000_000
    assert pool.instances() == []


def test_bad_paths_are_configuration_errors(pool: LocalModelPool) -> None:
    with pytest.raises(ConfigurationError, match="GGUF model file not found"):
        pool.load("/nonexistent/model.gguf")
    with pytest.raises(ConfigurationError, match="n_ctx must be positive"):
        pool.load(n_ctx=0)
