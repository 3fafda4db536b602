"""The Memory API end to end: real MiniLM embeddings, the real SQLite store, mem0 v1 shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from mindgate import (
    AsyncMemory,
    EmbedderMismatchError,
    FilterError,
    InvalidRequestError,
    Memory,
    NotFoundError,
    ScopeError,
)
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder, Vector
from mindgate.providers.local import SentenceTransformerEmbedder


class ProjectedMiniLM(Embedder):
    """A genuinely different embedder: MiniLM followed by a fixed random projection to 128 dims."""

    provider = "test"

    def __init__(self, base: SentenceTransformerEmbedder) -> None:
        super().__init__("minilm-projected-128")
        self.base = base
        self.projection = np.random.default_rng(7).standard_normal((384, 128)).astype(np.float32)

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        return (await self.base.aembed_batch(texts)) @ self.projection


@pytest.fixture
def memory(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> Iterator[Memory]:
    m = Memory(AsyncMemory(embedder=minilm, store=SQLiteStore(tmp_path / "memory.db")))
    yield m
    m.store.close()


def test_add_without_inference_stores_each_message(memory: Memory) -> None:
    result = memory.add([{"role": "system", "content": "be nice"},
                         {"role": "user", "content": "I live in Paris.", "id": "m1"},
                         {"role": "assistant", "content": "Paris is lovely."}],
                        user_id="alice", metadata={"topic": "home"}, infer=False)
    events = result["results"]
    assert [e["event"] for e in events] == ["ADD", "ADD"]
    assert {e["memory"] for e in events} == {"I live in Paris.", "Paris is lovely."}
    stored = memory.get(events[0]["id"])
    assert stored is not None
    assert stored["user_id"] == "alice"
    assert stored["metadata"] == {"topic": "home", "role": "user", "source_message_ids": ["m1"]}
    assert stored["created_at"] and stored["hash"]


def test_string_and_dict_inputs_and_duplicates(memory: Memory) -> None:
    first = memory.add("I love jazz.", user_id="alice", infer=False)["results"][0]
    again = memory.add({"role": "user", "content": "i love   JAZZ."}, user_id="alice", infer=False)["results"][0]
    assert again["event"] == "NONE" and again["id"] == first["id"]
    assert len(memory.get_all(user_id="alice")["results"]) == 1
    other = memory.add("I love jazz.", user_id="bob", infer=False)["results"][0]
    assert other["event"] == "ADD" and other["id"] != first["id"]


def test_search_is_hybrid_and_scoped(memory: Memory) -> None:
    for text in ("I live in Paris.", "My dog is called Rex.", "I work as a nurse at the city hospital."):
        memory.add(text, user_id="alice", infer=False)
    memory.add("I live in Tokyo.", user_id="bob", infer=False)
    results = memory.search("What is the name of my dog?", user_id="alice", limit=3)["results"]
    assert results[0]["memory"] == "My dog is called Rex."
    assert all(r["user_id"] == "alice" for r in results)
    assert all(0 < r["score"] <= 1 for r in results)
    assert results == sorted(results, key=lambda r: -r["score"])
    assert "Tokyo" not in " ".join(r["memory"] for r in memory.search("where do I live", user_id="alice")["results"])
    assert memory.search("where do I live", user_id="bob")["results"][0]["memory"] == "I live in Tokyo."
    assert memory.search("dog", user_id="carol")["results"] == []
    vector_only = memory.search("pet", user_id="alice", mode="vector")["results"]
    assert vector_only[0]["memory"] == "My dog is called Rex." and vector_only[0]["text_score"] is None
    text_only = memory.search("hospital", user_id="alice", mode="text")["results"]
    assert [r["memory"] for r in text_only] == ["I work as a nurse at the city hospital."]
    assert memory.search("Rex", user_id="alice", threshold=0.99)["results"][0]["memory"] == "My dog is called Rex."


def test_explain_breaks_the_score_down_and_convex_fusion_is_configurable(tmp_path: Path,
                                                                        minilm: SentenceTransformerEmbedder) -> None:
    from mindgate.config import MemorySettings

    for fusion in ("rrf", "convex"):
        memory = Memory(AsyncMemory(embedder=minilm, store=SQLiteStore(tmp_path / f"{fusion}.db"),
                                    settings=MemorySettings(fusion=fusion, fusion_alpha=0.7)))
        for text in ("My dog is called Rex.", "I live in Paris.", "Rex likes the park."):
            memory.add(text, user_id="alice", infer=False)
        results = memory.search("What is my dog called?", user_id="alice", explain=True)["results"]
        assert results[0]["memory"] == "My dog is called Rex."
        for result in results:
            explained = result["explain"]
            assert explained["method"] == fusion and explained["score"] == pytest.approx(result["score"], abs=1e-5)
            signals = explained["signals"]
            assert set(signals) <= {"vector", "text", "speaker"} and "vector" in signals
            assert signals["vector"]["raw"] == pytest.approx(result["vector_score"], abs=1e-5)
            assert sum(s["contribution"] for s in signals.values()) == pytest.approx(result["score"], abs=1e-5)
            if fusion == "convex":
                assert signals["vector"]["weight"] == 0.7
        assert "explain" not in memory.search("dog", user_id="alice")["results"][0]
        # the query's embedding is cached, and a repeated search gives the same ranking
        assert memory.aio._query_vectors.get("What is my dog called?") is not None
        again = memory.search("What is my dog called?", user_id="alice", explain=True)["results"]
        assert [r["id"] for r in again] == [r["id"] for r in results]
        memory.store.close()


def test_scopes_lists_where_memories_are(memory: Memory) -> None:
    memory.add("a", user_id="alice", infer=False)
    memory.add("b", user_id="alice", agent_id="helper", infer=False)
    assert memory.scopes()["results"] == [{"kind": "user_id", "id": "alice", "count": 2},
                                          {"kind": "agent_id", "id": "helper", "count": 1}]
    with pytest.raises(InvalidRequestError):
        memory.scopes(limit=0)


def test_scope_semantics_follow_the_partition(memory: Memory) -> None:
    memory.add("Alice prefers tea.", user_id="alice", agent_id="butler", infer=False)
    memory.add("Alice's run note.", user_id="alice", run_id="r1", infer=False)
    memory.add("Butler's own note.", agent_id="butler", infer=False)
    assert len(memory.get_all(user_id="alice")["results"]) == 2
    both = memory.get_all(user_id="alice", agent_id="butler")["results"]
    assert [r["memory"] for r in both] == ["Alice prefers tea."]
    assert [r["memory"] for r in memory.get_all(agent_id="butler")["results"]] == ["Butler's own note."]
    with pytest.raises(ScopeError, match="user_id, agent_id or run_id"):
        memory.get_all()
    with pytest.raises(ScopeError):
        memory.add("x", infer=False)
    with pytest.raises(ScopeError):
        memory.search("x")


def test_entity_ids_in_filters_join_the_scope_like_mem0(memory: Memory) -> None:
    """mem0 2.x copies ``filters`` and sets the keyword ids on top: the ids are AND-ed. Here too, and an id
    anywhere but the top level (or a top-level AND) is a metadata condition, which can only narrow."""
    memory.add("Alice drinks green tea.", user_id="alice", agent_id="butler", infer=False)
    memory.add("Alice drinks black tea at work.", user_id="alice", infer=False)
    memory.add("Bob drinks mint tea.", user_id="bob", agent_id="butler", infer=False)
    memory.add("The butler brews tea at five.", agent_id="butler", infer=False)
    via_filters = memory.search("tea", agent_id="butler", filters={"user_id": "alice"})["results"]
    assert [(r["memory"], r["user_id"], r["agent_id"]) for r in via_filters] == \
        [("Alice drinks green tea.", "alice", "butler")]
    assert [r["id"] for r in via_filters] == \
        [r["id"] for r in memory.search("tea", agent_id="butler", user_id="alice")["results"]]
    assert memory.search("tea", user_id="alice", filters={"OR": [{"user_id": "bob"}]})["results"] == []
    with pytest.raises(InvalidRequestError, match="given twice"):
        memory.search("tea", user_id="alice", filters={"AND": [{"user_id": "bob"}]})


def test_filters_and_paging(memory: Memory) -> None:
    for i in range(6):
        kind = "even" if i % 2 == 0 else "odd"
        memory.add(f"Note number {i} about films.", user_id="u", metadata={"n": i, "kind": kind}, infer=False)
    odd = memory.get_all(user_id="u", filters={"kind": "odd"})["results"]
    assert sorted(r["metadata"]["n"] for r in odd) == [1, 3, 5]
    complex_filter = {"OR": [{"n": {"gte": 4}}, {"AND": [{"kind": "even"}, {"NOT": {"n": {"in": [0]}}}]}]}
    matching = memory.get_all(user_id="u", filters=complex_filter)["results"]
    assert sorted(r["metadata"]["n"] for r in matching) == [2, 4, 5]
    found = memory.search("films", filters={"AND": [{"user_id": "u"}, {"n": {"lt": 2}}]})["results"]
    assert sorted(r["metadata"]["n"] for r in found) == [0, 1]
    page1 = memory.get_all(user_id="u", limit=4)["results"]
    page2 = memory.get_all(user_id="u", limit=4, offset=4)["results"]
    assert len(page1) == 4 and len(page2) == 2
    assert not {r["id"] for r in page1} & {r["id"] for r in page2}
    assert memory.aio and asyncio.run(memory.aio.count(user_id="u", filters={"kind": "even"})) == 3
    with pytest.raises(FilterError, match="unknown filter operator 'between'"):
        memory.search("films", user_id="u", filters={"n": {"between": [1, 2]}})
    with pytest.raises(InvalidRequestError, match="limit"):
        memory.get_all(user_id="u", limit=0)


def test_update_delete_and_history(memory: Memory) -> None:
    added = memory.add("I live in Paris.", user_id="alice", infer=False)["results"][0]
    updated = memory.update(added["id"], "I live in Berlin.")
    assert updated["event"] == "UPDATE" and updated["memory"] == "I live in Berlin."
    assert memory.get(added["id"])["memory"] == "I live in Berlin."  # type: ignore[index]
    assert memory.search("Berlin", user_id="alice", mode="text")["results"][0]["id"] == added["id"]
    assert memory.search("Paris", user_id="alice", mode="text")["results"] == []
    memory.delete(added["id"])
    assert memory.get(added["id"]) is None
    assert memory.get_all(user_id="alice")["results"] == []
    history = memory.history(added["id"])
    assert [(h["event"], h["old_memory"], h["new_memory"]) for h in history] == [
        ("ADD", None, "I live in Paris."), ("UPDATE", "I live in Paris.", "I live in Berlin."),
        ("DELETE", "I live in Berlin.", None)]
    assert memory.history(added["id"], user_id="alice")[-1]["is_deleted"] is True
    with pytest.raises(NotFoundError):
        memory.history(added["id"], user_id="mallory")
    with pytest.raises(NotFoundError, match="not found"):
        memory.update(added["id"], "resurrect")
    with pytest.raises(NotFoundError):
        memory.delete("no-such-id")


def test_scoped_reads_and_writes_cannot_cross_users(memory: Memory) -> None:
    secret = memory.add("Alice's secret code is 1234.", user_id="alice", infer=False)["results"][0]["id"]
    assert memory.get(secret, user_id="bob") is None
    with pytest.raises(NotFoundError):
        memory.update(secret, "hijacked", user_id="bob")
    with pytest.raises(NotFoundError):
        memory.delete(secret, user_id="bob")
    assert memory.get(secret, user_id="alice")["memory"] == "Alice's secret code is 1234."  # type: ignore[index]


def test_delete_all_and_reset(memory: Memory) -> None:
    for text in ("one fact", "two facts"):
        memory.add(text, user_id="alice", infer=False)
    keep = memory.add("bob's fact", user_id="bob", infer=False)["results"][0]["id"]
    assert memory.delete_all(user_id="alice")["deleted"] == 2
    assert memory.get_all(user_id="alice")["results"] == []
    assert memory.get(keep) is not None
    memory.reset()
    assert memory.get(keep) is None
    assert memory.add("after reset", user_id="bob", infer=False)["results"][0]["event"] == "ADD"


def test_async_memory_is_the_same_implementation(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    async def scenario() -> list[str]:
        m = AsyncMemory(embedder=minilm, store=SQLiteStore(tmp_path / "async.db"))
        await asyncio.gather(*(m.add(f"fact {i}", user_id="u", infer=False) for i in range(5)))
        found = await m.search("fact 3", user_id="u", limit=5)
        await m.close()
        return [r["memory"] for r in found["results"]]

    memories = asyncio.run(scenario())
    assert sorted(memories) == [f"fact {i}" for i in range(5)]
    assert memories[0] == "fact 3"


def test_a_different_embedder_needs_reindex(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    path = tmp_path / "switch.db"
    first = Memory(AsyncMemory(embedder=minilm, store=SQLiteStore(path)))
    ids = [first.add(t, user_id="u", infer=False)["results"][0]["id"]
           for t in ("The cat sleeps on the sofa.", "Rust is a systems language.", "Tea with lemon.")]
    first.store.close()

    projected = ProjectedMiniLM(minilm)
    second = Memory(AsyncMemory(embedder=projected, store=SQLiteStore(path)))
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        second.search("cat", user_id="u")
    seen: list[int] = []
    assert second.reindex(batch_size=2, progress=lambda done, _batch: seen.append(done)) == 3
    assert seen == [2, 3]
    assert second.reindex() == 0
    found = second.search("Where does the cat sleep?", user_id="u", mode="vector")["results"]
    assert found[0]["id"] == ids[0]
    assert {r["id"] for r in second.get_all(user_id="u")["results"]} == set(ids)
    second.store.close()
