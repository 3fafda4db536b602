"""Reranking search results (mem0's ``reranker`` config): a cross-encoder and an LLM reranker.

No cross-encoder weights ship in any package installable here, so the cross-encoder path is tested with a
tiny, randomly initialised BERT cross-encoder built and saved in the test (transformers config plus the
shipped MiniLM's tokenizer, nothing downloaded): its scores mean nothing, which is the point: the order
must be the one its scores give. The LLM reranker runs on the real in-process SmolLM2 (format-level
assertions: valid scores, order by them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures_gateway import GatewayServer
from fixtures_servers import free_port
from mindgate import AsyncMemory, ConfigurationError, Memory
from mindgate._reranker_config import CrossEncoderRerankerConfig, LLMRerankerConfig
from mindgate.config import MindgateConfig
from mindgate.errors import ProviderError
from mindgate.gateway._app import create_app
from mindgate.memory._rerank import CrossEncoderReranker, LLMReranker
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers.local import LlamaCppChatModel, SentenceTransformerEmbedder
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient

FACTS = ["Alice moved to Berlin in March.", "Alice is allergic to peanuts.", "Alice plays chess on Sundays.",
         "Alice works as a nurse at the city hospital.", "Alice's sister lives in Lyon.",
         "Alice prefers green tea to coffee."]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer BERT cross-encoder with random weights (seeded), saved as a model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from mindgate._assets import default_embedder_path

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(default_embedder_path()))
    torch.manual_seed(7)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def memory_with(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> Iterator[Any]:
    stores: list[SQLiteStore] = []

    def make(reranker: Any, llm: Any = None) -> Memory:
        store = SQLiteStore(tmp_path / f"rerank-{len(stores)}.db")
        stores.append(store)
        memory = Memory(AsyncMemory(embedder=minilm, store=store, llm=llm, reranker=reranker))
        memory.add([{"role": "user", "content": f} for f in FACTS], user_id="alice", infer=False)
        return memory

    yield make
    for store in stores:
        store.close()


def _direct_scores(folder: Path, query: str, texts: list[str]) -> dict[str, float]:
    import torch
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(str(folder), device="cpu", local_files_only=True)
    scores = encoder.predict([(query, t) for t in texts], activation_fn=torch.nn.Sigmoid())
    return {t: float(s) for t, s in zip(texts, scores, strict=True)}


def test_cross_encoder_orders_by_its_own_scores_and_rerank_false_keeps_the_fused_order(
        memory_with: Any, cross_encoder_dir: Path) -> None:
    reranker = CrossEncoderReranker(CrossEncoderRerankerConfig(model=str(cross_encoder_dir), top_k=4))
    memory = memory_with(reranker)
    query = "Where does Alice live?"
    fused = memory.search(query, user_id="alice", limit=6, rerank=False)["results"]
    assert all("rerank_score" not in r for r in fused)
    found = memory.search(query, user_id="alice", limit=6, explain=True)["results"]
    assert len(found) == 4  # top_k cuts below limit
    expected = _direct_scores(cross_encoder_dir, query, [r["memory"] for r in fused])
    ranked = sorted(fused, key=lambda r: -expected[r["memory"]])  # stable: ties keep the fused order
    assert [r["id"] for r in found] == [r["id"] for r in ranked[:4]]
    fused_rank = {r["id"]: n for n, r in enumerate(fused, start=1)}
    for result in found:
        assert result["rerank_score"] == pytest.approx(expected[result["memory"]], abs=1e-5)
        assert 0.0 <= result["rerank_score"] <= 1.0
        rerank = result["explain"]["rerank"]
        assert rerank["fused_rank"] == fused_rank[result["id"]]
        assert rerank["score"] == result["rerank_score"] and "sentence_transformer" in rerank["reranker"]
        assert result["score"] == next(r["score"] for r in fused if r["id"] == result["id"])  # fused score kept


def test_cross_encoder_from_mem0_config_through_the_rest_api(tmp_path: Path, cross_encoder_dir: Path,
                                                            minilm: SentenceTransformerEmbedder,
                                                            serve_gateway: Any, smollm: LlamaCppChatModel) -> None:
    config = MindgateConfig.from_dict({
        "vector_store": {"provider": "sqlite", "config": {"path": str(tmp_path / "rest.db")}},
        "reranker": {"provider": "sentence_transformer",
                     "config": {"model": str(cross_encoder_dir), "batch_size": 4, "show_progress_bar": False}}},
        env=False)
    memory = AsyncMemory(embedder=minilm, store=SQLiteStore(tmp_path / "rest.db"))
    memory.configure_reranker(config)
    assert isinstance(memory.reranker, CrossEncoderReranker)
    server: GatewayServer = serve_gateway(create_app(config, chat=smollm, memory=memory, warm_up=False))
    with server.http() as http:
        added = http.post("/v1/memories", json={"messages": [{"role": "user", "content": f} for f in FACTS],
                                                "user_id": "alice", "infer": False})
        assert added.status_code == 200, added.text
        reranked = http.post("/v1/memories/search", json={"query": "tea", "user_id": "alice", "limit": 3,
                                                          "explain": True}).json()["results"]
        plain = http.post("/v1/memories/search", json={"query": "tea", "user_id": "alice", "limit": 3,
                                                       "rerank": False}).json()["results"]
        bad = http.post("/v1/memories/search", json={"query": "tea", "user_id": "alice", "rerank": "maybe"})
    scores = [r["rerank_score"] for r in reranked]
    assert len(reranked) == 3 and scores == sorted(scores, reverse=True)
    assert all("rerank" in r["explain"] for r in reranked)
    assert plain and all("rerank_score" not in r for r in plain)
    assert bad.status_code == 400 and "rerank" in bad.text


def test_a_cross_encoder_that_is_not_there_is_a_clear_error_naming_the_key(
        tmp_path: Path, memory_with: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"reranker\.config\.model.*no cross-encoder folder"):
        Memory.from_config({"vector_store": {"config": {"path": str(tmp_path / "x.db")}},
                            "reranker": {"provider": "huggingface", "config": {"model": str(tmp_path / "absent")}}})
    memory = memory_with(CrossEncoderReranker(CrossEncoderRerankerConfig(model="nobody/not-in-the-cache")))
    with pytest.raises(ConfigurationError, match=r"reranker\.config\.model.*never downloads"):
        memory.search("tea", user_id="alice")
    assert memory.search("tea", user_id="alice", rerank=False)["results"]  # the way out works


def test_llm_reranker_on_the_real_smollm2_orders_by_the_scores_it_gave(
        memory_with: Any, smollm: LlamaCppChatModel) -> None:
    reranker = LLMReranker(LLMRerankerConfig(candidates=6, max_tokens=12), lambda: smollm)
    memory = memory_with(reranker, llm=smollm)
    query = "What does Alice drink?"
    fused = memory.search(query, user_id="alice", limit=6, rerank=False)["results"]
    found = memory.search(query, user_id="alice", limit=6, explain=True)["results"]
    assert {r["id"] for r in found} == {r["id"] for r in fused}  # the same candidates, reordered
    scores = {r["id"]: r["rerank_score"] for r in found}
    assert all(round(s * 10) == pytest.approx(s * 10) and 0 <= s <= 1 for s in scores.values())
    # greedy decoding of a pinned model: SmolLM2-135M scores these six 0.1 or 0.2 (it judges relevance poorly;
    # without the worked examples it gives every candidate the same score)
    assert len(set(scores.values())) > 1
    assert [r["id"] for r in found] == [r["id"] for r in sorted(fused, key=lambda r: -scores[r["id"]])]
    assert all(r["explain"]["rerank"]["reranker"] == f"llm_reranker reranker ({smollm.model})" for r in found)


def test_an_llm_reranker_that_cannot_answer_is_a_clear_error(memory_with: Any) -> None:
    dead = OpenAICompatChatModel(OpenAICompatClient(f"http://127.0.0.1:{free_port()}/v1", timeout=5), "ranker")
    memory = memory_with(LLMReranker(LLMRerankerConfig(candidates=2), lambda: dead))
    with pytest.raises(ProviderError) as info:
        memory.search("tea", user_id="alice", limit=2)
    assert "llm_reranker reranker (ranker) failed" in str(info.value) and "rerank=False" in str(info.value)
    assert len(memory.search("tea", user_id="alice", limit=2, rerank=False)["results"]) == 2


@pytest.mark.parametrize(("reranker", "message"), [
    ({"provider": "llm_reranker", "config": {"scoring_prompt": "Rate {query}"}}, "must contain {document}"),
    ({"provider": "sentence_transformer", "config": {"modle": "x"}}, "did you mean `model`"),
    ({"provider": "llm_reranker", "config": {"llm": {"provider": "nope"}}}, "reranker.config.llm"),
    ({"provider": "cohere", "config": {"model": "rerank-english-v3.0"}}, "llm_reranker"),
    ({"provider": "rankzilla"}, "sentence_transformer, huggingface, llm_reranker"),
])
def test_a_bad_reranker_section_is_a_clear_error(tmp_path: Path, reranker: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Memory.from_config({"vector_store": {"config": {"path": str(tmp_path / "x.db")}}, "reranker": reranker})
    assert message in str(info.value)


def test_an_llm_reranker_naming_no_model_scores_with_the_memory_llm(tmp_path: Path) -> None:
    memory = Memory.from_config({"vector_store": {"config": {"path": str(tmp_path / "x.db")}},
                                 "llm": {"provider": "openai_compatible",
                                         "config": {"model": "scorer", "openai_base_url": "http://127.0.0.1:9/v1"}},
                                 "reranker": {"provider": "llm_reranker", "config": {"top_k": 3}}})
    try:
        reranker = memory.aio.reranker
        assert isinstance(reranker, LLMReranker) and reranker.top_k == 3
        assert reranker.llm is memory.llm  # one model: the one infer=True uses
    finally:
        memory.close()



def test_a_custom_scoring_prompt_is_sent_as_one_user_message() -> None:
    reranker = LLMReranker(LLMRerankerConfig(scoring_prompt="Q={query} D={document} -> score 0-10"), lambda: None)
    assert reranker._messages("tea?", "x" * 3000) == [
        {"role": "user", "content": "Q=tea? D=" + "x" * 2000 + " ... -> score 0-10"}]
