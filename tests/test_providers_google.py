"""The `gemini` and `vertexai` providers against their contract fakes (Google's error format, OAuth tokens)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.cloud import GeminiFake, VertexFake
from mindgate._sync import run_sync
from mindgate.config import BaseURLConfig
from mindgate.errors import AuthenticationError, ConfigurationError, ModelNotFoundError, RateLimitError
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers._structured import complete_json, learned_mode
from mindgate.providers.openai_compat import OpenAICompatChatModel
from mindgate.providers.vertex import VertexConfig

GOOGLE_VARS = ["GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS",
               "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"]
MESSAGES = [{"role": "user", "content": "hello google"}]


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in GOOGLE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no application-default credentials


# -- Gemini ----------------------------------------------------------------------------------------


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiFake]:
    server = GeminiFake().start()
    monkeypatch.setenv("GOOGLE_API_KEY", server.api_key)
    yield server
    server.stop()


def gemini_config(fake: GeminiFake, **extra: object) -> BaseURLConfig:
    return BaseURLConfig(base_url=f"{fake.base_url}{fake.PREFIX}", **extra)


def test_gemini_chat_stream_and_bearer_key(gemini: GeminiFake) -> None:
    model = create_chat_model("gemini", gemini_config(gemini))
    assert model.complete(MESSAGES).content == "echo: hello google"
    assert model.model == "gemini-2.5-flash"
    assert gemini.headers_seen[-1]["authorization"] == f"Bearer {gemini.api_key}"
    assert "".join(c.content or "" for c in model.stream(MESSAGES)) == "echo: hello google"


def test_gemini_structured_output_uses_json_schema(gemini: GeminiFake) -> None:
    model = create_chat_model("gemini", gemini_config(gemini))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    assert run_sync(complete_json(model, MESSAGES, schema)) == {"ok": False}
    assert learned_mode(model.endpoint_key) == "json_schema"


def test_gemini_key_falls_back_to_gemini_api_key(gemini: GeminiFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", gemini.api_key)
    assert create_chat_model("gemini", gemini_config(gemini)).complete(MESSAGES).content


def test_gemini_without_key_names_both_variables(gemini: GeminiFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(ConfigurationError, match=r"GOOGLE_API_KEY.*GEMINI_API_KEY"):
        create_embedder("gemini", gemini_config(gemini))


def test_gemini_invalid_key_is_an_auth_error_despite_http_400(gemini: GeminiFake) -> None:
    with pytest.raises(AuthenticationError) as info:
        create_chat_model("gemini", gemini_config(gemini, api_key="AIza-wrong")).complete(MESSAGES)
    assert info.value.status_code == 400
    assert "API key not valid" in str(info.value) and "GOOGLE_API_KEY" in str(info.value)


def test_gemini_rate_limit_reads_retry_info(gemini: GeminiFake) -> None:
    gemini.rate_limit_next = 1
    with pytest.raises(RateLimitError) as info:
        create_embedder("gemini", gemini_config(gemini)).embed("x")
    assert info.value.retry_after == 3.0


def test_gemini_unknown_model_lists_models_without_prefix(gemini: GeminiFake) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        create_chat_model("gemini", gemini_config(gemini, model="gemini-9-ultra")).complete(MESSAGES)
    assert info.value.available == ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001",
                                    "text-embedding-004"]
    assert "is not found for API version v1beta" in str(info.value)


def test_gemini_embeddings_default_model_and_dimensions(gemini: GeminiFake) -> None:
    emb = create_embedder("gemini", gemini_config(gemini))
    assert emb.model == "gemini-embedding-001" and emb.dims() == 3072
    short = create_embedder("gemini", gemini_config(gemini, embedding_dims=768))
    assert short.embed_batch(["a", "b"]).shape == (2, 768)
    assert gemini.requests_to(f"{gemini.PREFIX}/embeddings")[-1].json["dimensions"] == 768


def test_gemini_ignoring_dimensions_is_caught_by_the_probe(gemini: GeminiFake,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    gemini.honor_dimensions = False
    assert create_embedder("gemini", gemini_config(gemini, embedding_dims=768)).dims() == 3072
    assert "returns 3072-dimensional vectors but embedding_dims is set to 768" in caplog.text


def test_gemini_batches_at_most_100_texts(gemini: GeminiFake) -> None:
    emb = create_embedder("gemini", gemini_config(gemini, batch_size=500, model="text-embedding-004"))
    assert emb.embed_batch([f"text {i}" for i in range(150)]).shape == (150, 768)
    assert [len(r.json["input"]) for r in gemini.requests_to(f"{gemini.PREFIX}/embeddings")] == [100, 50]


# -- Vertex AI -------------------------------------------------------------------------------------


@pytest.fixture
def vertex() -> Iterator[VertexFake]:
    server = VertexFake().start()
    yield server
    server.stop()


def vertex_config(fake: VertexFake, **extra: object) -> VertexConfig:
    values = {"base_url": fake.base_url, "project": fake.project, "api_key": next(iter(fake.tokens)), **extra}
    return VertexConfig(**values)


def service_account(fake: VertexFake) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": fake.project, "private_key_id": "k1", "private_key": pem,
            "client_email": f"mindgate@{fake.project}.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{fake.base_url}/token"}


def test_vertex_chat_prefixes_google_and_uses_the_project_path(vertex: VertexFake) -> None:
    model = create_chat_model("vertexai", vertex_config(vertex, model="gemini-2.5-flash", location="europe-west4"))
    assert model.model == "google/gemini-2.5-flash"
    assert model.complete(MESSAGES).content == "echo: hello google"
    path = f"/v1/projects/{vertex.project}/locations/europe-west4/endpoints/openapi/chat/completions"
    assert vertex.requests_to(path)
    assert "".join(c.content or "" for c in model.stream(MESSAGES)) == "echo: hello google"


def test_vertex_default_hosts() -> None:
    def base(location: str) -> str:
        model = create_chat_model("vertexai", dict(api_key="t", project="p", location=location))
        assert isinstance(model, OpenAICompatChatModel)
        return model.client.base_url

    assert base("global") == "https://aiplatform.googleapis.com/v1/projects/p/locations/global/endpoints/openapi"
    assert base("us-east5").startswith("https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/")


def test_vertex_environment_token_project_and_location(vertex: VertexFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_ACCESS_TOKEN", next(iter(vertex.tokens)))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", vertex.project)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "asia-northeast1")
    emb = create_embedder("vertexai", dict(base_url=vertex.base_url))
    assert emb.dims() == 768
    assert vertex.requests_to(f"/v1/projects/{vertex.project}/locations/asia-northeast1/publishers/google/models/"
                              "text-embedding-005:predict")


def test_vertex_predict_embeddings_with_task_type_and_dimensions(vertex: VertexFake) -> None:
    emb = create_embedder("vertexai", vertex_config(vertex, embedding_dims=256,
                                                    model_kwargs={"task_type": "RETRIEVAL_DOCUMENT"}))
    vectors = emb.embed_batch(["first", "second", "third"])
    assert vectors.shape == (3, 256)
    body = vertex.requests[-1].json
    assert body["instances"][0] == {"task_type": "RETRIEVAL_DOCUMENT", "content": "first"}
    assert body["parameters"] == {"outputDimensionality": 256}
    assert emb.identity().describe() == "vertexai:text-embedding-005 (256 dims)"


def test_vertex_gemini_embedding_sends_one_instance_per_request(vertex: VertexFake) -> None:
    emb = create_embedder("vertexai", vertex_config(vertex, model="gemini-embedding-001"))
    assert emb.embed_batch(["a", "b", "c"]).shape == (3, 3072)
    assert [len(r.json["instances"]) for r in vertex.requests] == [1, 1, 1]


def test_vertex_bad_token_names_the_token_variable(vertex: VertexFake) -> None:
    with pytest.raises(AuthenticationError, match="UNAUTHENTICATED") as info:
        create_chat_model("vertexai", vertex_config(vertex, api_key="expired")).complete(MESSAGES)
    assert "GOOGLE_ACCESS_TOKEN" in str(info.value) and "gcloud auth print-access-token" in str(info.value)


def test_vertex_other_project_is_permission_denied(vertex: VertexFake) -> None:
    with pytest.raises(AuthenticationError, match="PERMISSION_DENIED"):
        create_embedder("vertexai", vertex_config(vertex, project="someone-else")).embed("x")


def test_vertex_unknown_model_is_model_not_found(vertex: VertexFake) -> None:
    with pytest.raises(ModelNotFoundError, match="text-embedding-005 or gemini-embedding-001") as info:
        create_embedder("vertexai", vertex_config(vertex, model="textembedding-gecko@001")).embed("x")
    assert "Publisher Model" in str(info.value) and info.value.available == []


def test_vertex_service_account_file_mints_and_reuses_a_token(vertex: VertexFake, tmp_path: Path) -> None:
    pytest.importorskip("google.auth")
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account(vertex)))
    emb = create_embedder("vertexai", dict(base_url=vertex.base_url, vertex_credentials_json=str(path)))
    assert vertex.token_grants == []  # nothing is fetched before the first request
    emb.embed_batch(["a", "b"])
    emb.embed("c")
    assert len(vertex.token_grants) == 1
    grant = vertex.token_grants[0]
    assert grant["aud"] == "https://oauth2.googleapis.com/token" and "cloud-platform" in grant["scope"]
    assert grant["iss"] == f"mindgate@{vertex.project}.iam.gserviceaccount.com"
    assert vertex.headers_seen[-1]["authorization"].startswith("Bearer ya29.minted-")


def test_vertex_credentials_from_environment_json(vertex: VertexFake, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.auth")
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(service_account(vertex)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    model = create_chat_model("vertexai", dict(base_url=vertex.base_url))
    assert model.complete(MESSAGES).content == "echo: hello google"
    inline = create_chat_model("vertexai", dict(base_url=vertex.base_url,
                                                          vertex_credentials_json=path.read_text()))
    assert inline.complete(MESSAGES).content == "echo: hello google"
    assert len(vertex.token_grants) == 2


def test_vertex_credentials_without_google_auth_say_what_to_install(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.oauth2", None)
    with pytest.raises(ConfigurationError, match="pip install google-auth"):
        create_embedder("vertexai", dict(project="p", vertex_credentials_json=str(tmp_path / "sa.json")))


def test_vertex_without_credentials_or_project() -> None:
    with pytest.raises(ConfigurationError, match=r"GOOGLE_ACCESS_TOKEN.*GOOGLE_APPLICATION_CREDENTIALS"):
        create_chat_model("vertexai", dict(project="p"))
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        create_chat_model("vertexai", dict(api_key="token"))


def test_vertex_unreadable_credentials_file(tmp_path: Path) -> None:
    pytest.importorskip("google.auth")
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "nonsense"}')
    with pytest.raises(ConfigurationError, match="cannot load Vertex AI credentials"):
        create_embedder("vertexai", dict(project="p", vertex_credentials_json=str(bad)))
