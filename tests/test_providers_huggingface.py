"""The `huggingface` provider: the shipped MiniLM for real, TEI and TGI through their contract fakes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from fakes.cloud import TEIFake, TGIFake
from fixtures_servers import free_port
from mindgate.errors import ConfigurationError, NetworkError
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers.huggingface import TEIEmbedder
from mindgate.providers.local import SentenceTransformerEmbedder


@pytest.fixture
def tei() -> Iterator[TEIFake]:
    server = TEIFake().start()
    yield server
    server.stop()


def test_local_model_is_the_shipped_minilm(minilm: SentenceTransformerEmbedder) -> None:
    emb = create_embedder("huggingface", dict(model="sentence-transformers/all-MiniLM-L6-v2"))
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert emb.source == minilm.source
    vectors = emb.embed_batch(["The cat sat on the mat.", "A cat was sitting on a mat.", "Stocks fell sharply."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]  # paraphrases are closer than unrelated text
    assert emb.identity().describe() == "huggingface:all-MiniLM-L6-v2 (384 dims)"


def test_model_kwargs_reach_sentence_transformers() -> None:
    """mem0's HF embedder passes model_kwargs to SentenceTransformer(...); so does mindgate (truncate_dim: a
    Matryoshka-style shorter vector from the shipped MiniLM)."""
    emb = create_embedder("huggingface", dict(model_kwargs={"truncate_dim": 128, "device": "cpu"}))
    assert emb.embed("The cat sat on the mat.").shape == (128,)
    assert emb.dims() == 128


def test_local_model_rejects_unknown_model_kwargs_and_absent_weights() -> None:
    with pytest.raises(ConfigurationError, match=r"token.*never downloads weights"):
        create_embedder("huggingface", dict(model_kwargs={"token": "hf_x"}))
    emb = create_embedder("huggingface", dict(model="multi-qa-MiniLM-L6-cos-v1"))
    with pytest.raises(ConfigurationError, match="never downloads weights"):
        emb.embed("x")


def test_tei_embeddings_learn_model_and_batch_limit_from_info(tei: TEIFake) -> None:
    emb = create_embedder("huggingface", dict(huggingface_base_url=tei.base_url, batch_size=64))
    assert isinstance(emb, TEIEmbedder)
    texts = [f"sentence {i}" for i in range(20)]
    vectors = emb.embed_batch(texts)
    assert vectors.shape == (20, 384)
    assert [len(r.json["input"]) for r in tei.requests_to("/v1/embeddings")] == [8, 8, 4]
    assert len(tei.requests_to("/info")) == 1
    assert emb.identity().describe() == "huggingface:BAAI/bge-small-en-v1.5 (384 dims)"
    assert np.allclose(vectors[5], emb.embed("sentence 5"))


def test_tei_base_url_may_end_in_v1(tei: TEIFake) -> None:
    emb = create_embedder("huggingface", dict(huggingface_base_url=f"{tei.base_url}/v1/",
                                                        model="bge-small-en-v1.5"))
    assert emb.dims() == 384 and emb.model == "BAAI/bge-small-en-v1.5"


def test_tei_serving_another_model_is_a_configuration_error(tei: TEIFake) -> None:
    emb = create_embedder("huggingface", dict(huggingface_base_url=tei.base_url, model="BAAI/bge-m3"))
    with pytest.raises(ConfigurationError, match=r"serves 'BAAI/bge-small-en-v1\.5', but model is set to 'BAAI/bge-m3"):
        emb.embed("x")


def test_tei_dims_mismatch(tei: TEIFake, caplog: pytest.LogCaptureFixture) -> None:
    emb = create_embedder("huggingface", dict(huggingface_base_url=tei.base_url, embedding_dims=1024))
    assert emb.dims() == 384
    assert "returns 384-dimensional vectors but embedding_dims is set to 1024" in caplog.text


def test_tei_unreachable_is_a_network_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    emb = create_embedder("huggingface", dict(huggingface_base_url=url, connect_timeout=1.0))
    with pytest.raises(NetworkError, match="text-embeddings-router"):
        emb.embed("x")


def test_tgi_chat_over_huggingface_base_url() -> None:
    server = TGIFake().start()
    try:
        model = create_chat_model("huggingface", dict(huggingface_base_url=server.base_url, max_tokens=16))
        response = model.complete([{"role": "user", "content": "hi tgi"}])
        assert response.content == "echo: hi tgi" and response.model == server.model_id
        assert server.requests_to("/v1/chat/completions")[-1].json["model"] == "tgi"
        assert "".join(c.content or "" for c in model.stream([{"role": "user", "content": "x y"}])) == "echo: x y"
    finally:
        server.stop()


def test_router_chat_needs_a_token_and_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="HF_TOKEN"):
        create_chat_model("huggingface", dict(model="meta-llama/Llama-3.1-8B-Instruct"))
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    with pytest.raises(ConfigurationError, match="needs a model"):
        create_chat_model("huggingface", dict())
    model = create_chat_model("huggingface", dict(model="meta-llama/Llama-3.1-8B-Instruct"))
    assert model.client.base_url == "https://router.huggingface.co/v1"  # type: ignore[attr-defined]
