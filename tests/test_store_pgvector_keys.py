"""Fact- and context-augmented keys and comparison expansion on the PostgreSQL + pgvector store (a real server
from pgserver, the real MiniLM): the same keys, recorded identity, upgrade path, reindex and search as the
SQLite tests in test_memory_signals.py check, through the Memory API and `mindgate reindex`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

from mindgate import AsyncMemory, EmbedderMismatchError, Memory
from mindgate.cli import main
from mindgate.config import MemorySettings
from mindgate.memory._keys import context_text, mix
from mindgate.memory.stores._base import Scope
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.providers.local import SentenceTransformerEmbedder

Factory = Callable[..., PgVectorStore]
ALICE = Scope(user_id="alice")
MODEL = "all-MiniLM-L6-v2"
REQUEST = ("Can you recommend good paints for a kids' art project? By the way, I volunteered at the Children's "
           "Museum for their Art Afternoon event on February 17th. Thanks!")
FACT = "By the way, I volunteered at the Children's Museum for their Art Afternoon event on February 17th."
ECHO = f"You said: {REQUEST}"
WALK = "I also ran the Walk for Hunger in May."
QUESTION = "Which art events did I attend?"
# closer to QUESTION than REQUEST's plain key (MiniLM cosine 0.42-0.53 vs 0.39), further than its fact key (0.62)
NEAR = ["What events are on this weekend?", "What is an art afternoon?", "Is there an art museum near the station?",
        "Any tips for an art project with children?"]


def open_memory(store: PgVectorStore, minilm: SentenceTransformerEmbedder, **settings: object) -> Memory:
    return Memory(AsyncMemory(embedder=minilm, store=store, settings=MemorySettings(**settings)))


def stored_vectors(memory: Memory) -> dict[str, np.ndarray]:
    texts = {r.id: r.memory for r in memory.store.iter_records()}
    return {texts[i]: v for i, v in memory.store.iter_vectors()}


def recorded_model(store: PgVectorStore) -> str:
    identity = store.recorded_identity()
    assert identity is not None
    return identity.model


def test_a_user_statement_is_found_by_a_question_only_its_fact_key_matches(
        pg_store_factory: Factory, minilm: SentenceTransformerEmbedder) -> None:
    results: dict[bool, list[str]] = {}
    for key_facts in (True, False):
        memory = open_memory(pg_store_factory(), minilm) if key_facts else \
            open_memory(pg_store_factory(), minilm, key_facts=False)
        memory.add([{"role": "user", "content": REQUEST}, {"role": "assistant", "content": ECHO}],
                   user_id="alice", infer=False)
        memory.add([{"role": "user", "content": text} for text in NEAR], user_id="alice", infer=False)
        results[key_facts] = [r["memory"] for r in memory.search(QUESTION, user_id="alice")["results"]]
        if key_facts:  # the defaults: fact keys, recorded in the identity
            assert recorded_model(memory.store) == f"{MODEL}+key_facts1:1.5"
            text, fact, question, echoed = minilm.embed_batch([REQUEST, FACT, QUESTION, ECHO])
            vectors = stored_vectors(memory)
            assert np.allclose(vectors[REQUEST], mix(text, None, 0.0, [(fact, 1.5)]), atol=1e-5)
            assert np.allclose(vectors[ECHO], echoed, atol=1e-5)  # the assistant's words: a plain key
            assert float(vectors[REQUEST] @ question) > float(text @ question) + 0.05
        else:
            assert recorded_model(memory.store) == MODEL
        memory.store.close()
    assert results[True][0] == REQUEST
    assert results[False].index(REQUEST) > 1  # plain keys: questions that merely sound alike outrank it


def test_a_store_built_without_fact_keys_keeps_them_until_mindgate_reindex_converts_it(
        pg_store_factory: Factory, pg_dsn: str, minilm: SentenceTransformerEmbedder, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    first = pg_store_factory()
    old = open_memory(first, minilm, key_facts=False)
    old.add(REQUEST, user_id="alice", infer=False)
    old.store.close()

    upgraded = open_memory(pg_store_factory(reopen=first), minilm)  # the defaults: plain keys kept, no reindex
    assert upgraded.search(QUESTION, user_id="alice")["results"][0]["memory"] == REQUEST
    upgraded.add(WALK, user_id="alice", infer=False)
    text, fact, walk = minilm.embed_batch([REQUEST, FACT, WALK])
    assert np.allclose(stored_vectors(upgraded)[REQUEST], text, atol=1e-5)  # still plain
    assert recorded_model(upgraded.store) == MODEL
    upgraded.store.close()

    explicit = open_memory(pg_store_factory(reopen=first), minilm, key_facts=True)  # asked for: rebuild first
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        explicit.search("art events", user_id="alice")
    explicit.store.close()

    config = tmp_path / "pg.yaml"
    config.write_text(json.dumps({"vector_store": {"provider": "pgvector", "config": {
        "dsn": pg_dsn, "collection_name": first.collection}}, "memory": {"key_facts": True}}))
    assert main(["reindex", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"reindexed": 2}

    converted = open_memory(pg_store_factory(reopen=first), minilm)  # the defaults follow the converted store
    assert recorded_model(converted.store) == f"{MODEL}+key_facts1:1.5"
    vectors = stored_vectors(converted)
    assert np.allclose(vectors[REQUEST], mix(text, None, 0.0, [(fact, 1.5)]), atol=1e-5)
    assert np.allclose(vectors[WALK], walk, atol=1e-5)  # its fact sentence is the whole text
    assert converted.search(QUESTION, user_id="alice")["results"][0]["memory"] == REQUEST
    assert converted.store.count(ALICE) == 2
    converted.store.close()


def test_context_keys_are_stored_with_the_memory_and_rebuilt_by_reindex(
        pg_store_factory: Factory, minilm: SentenceTransformerEmbedder) -> None:
    first = pg_store_factory()
    keyed = open_memory(first, minilm, key_context=True)
    keyed.add([{"role": "user", "content": REQUEST}, {"role": "assistant", "content": ECHO}],
              user_id="alice", infer=False)
    keyed.add(WALK, user_id="alice", infer=False)  # its own call, moments later: the echo is its context
    assert {r.memory: r.key_context for r in keyed.store.list(ALICE)} == \
        {REQUEST: None, ECHO: context_text(REQUEST), WALK: context_text(ECHO)}
    assert recorded_model(keyed.store) == f"{MODEL}+key_context:0.5+key_facts1:1.5"
    text, fact, echo, walk = minilm.embed_batch([REQUEST, FACT, ECHO, WALK])
    built = stored_vectors(keyed)
    assert np.allclose(built[REQUEST], mix(text, None, 0.5, [(fact, 1.5)]), atol=1e-5)
    assert np.allclose(built[ECHO], mix(echo, text, 0.5), atol=1e-5)
    assert np.allclose(built[WALK], mix(walk, echo, 0.5, [(walk, 1.5)]), atol=1e-5)
    keyed.store.close()

    plain = open_memory(pg_store_factory(reopen=first), minilm, key_facts=True)  # context off: reindex asked
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        plain.search("art", user_id="alice")
    assert plain.reindex(batch_size=2) == 3
    assert np.allclose(stored_vectors(plain)[ECHO], echo, atol=1e-5)
    plain.store.close()

    again = open_memory(pg_store_factory(reopen=first), minilm, key_context=True)
    assert again.reindex() == 3
    rebuilt = stored_vectors(again)  # from the key context stored in PostgreSQL
    assert all(np.allclose(rebuilt[t], built[t], atol=1e-5) for t in built)
    assert recorded_model(again.store) == f"{MODEL}+key_context:0.5+key_facts1:1.5"
    again.store.close()


def test_a_comparison_question_searches_each_compared_event_in_postgresql(
        pg_store_factory: Factory, minilm: SentenceTransformerEmbedder) -> None:
    m = open_memory(pg_store_factory(), minilm)
    m.add([{"role": "user", "content": text} for text in (
        "I joined a recreational volleyball league with friends from work in March.",
        "I ran the charity 5K for the children's hospital on April 2nd.",
        "Our volleyball league plays on Tuesdays; we won the first game.",
        "The volleyball league jerseys are blue and the team is called Spikers.",
        "I bought new running shoes for the spring.")], user_id="alice", infer=False)
    query = "Which event did I participate in first, the volleyball league or the charity 5K run?"
    found = m.search(query, user_id="alice", limit=3, explain=True)["results"]
    assert any("charity 5K" in r["memory"] for r in found[:2])
    assert any("volleyball" in r["memory"] for r in found[:2])
    for r in found:
        signals = r["explain"]["signals"]
        assert signals["expansion"]["weight"] == 1.0 and 0.0 <= signals["expansion"]["raw"] <= 1.0
        assert sum(s["contribution"] for s in signals.values()) == pytest.approx(r["score"], abs=1e-5)
    assert any("text" in r["explain"]["signals"] for r in found)  # PostgreSQL's full-text retriever took part
    plain = m.search("When did I run the charity 5K?", user_id="alice", explain=True)["results"]
    assert all("expansion" not in r["explain"]["signals"] for r in plain)
    m.store.close()
