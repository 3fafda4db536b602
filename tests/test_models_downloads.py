"""Downloads: LM Studio's download jobs (POST /api/v1/models/download + GET .../download/status/{job_id}) and
Ollama's streamed /api/pull, through ModelManager and `mindgate models get`, with progress, resumable status
and failures. LM Studio and Ollama are their contract fakes (tests/fakes/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from fakes import LMStudioFake, OllamaFake
from mindgate.errors import ModelNotFoundError, ProviderError
from mindgate.models import Endpoint, ModelCatalog, ModelManager
from mindgate.models._commands import app
from mindgate.providers.lmstudio import _management as _lmstudio_api
from mindgate.providers.management._records import DownloadProgress

GRANITE = "ibm/granite-4-micro"


@pytest.fixture(autouse=True)
def _fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lmstudio_api, "DOWNLOAD_POLL_S", 0.01)


def manager(*endpoints: Endpoint) -> ModelManager:
    return ModelManager(ModelCatalog(endpoints))


def test_lmstudio_download_reports_progress_until_completed(lmstudio_fake: LMStudioFake) -> None:
    seen: list[DownloadProgress] = []
    mgr = manager(Endpoint("lm", "lmstudio", lmstudio_fake.base_url))
    final = mgr.download(GRANITE, progress=seen.append)
    assert final.status == "completed" and final.fraction == 1.0 and final.total_bytes == 2_279_145_003
    assert seen[0].status == "downloading" and seen[0].fraction is None  # the start reports no bytes yet
    fractions = [s.fraction or 0.0 for s in seen[1:]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) == 4  # start + 3 status reads
    assert seen[1].bytes_per_second and seen[0].job_id and all(s.job_id == seen[0].job_id for s in seen)
    assert lmstudio_fake.requests_to("/api/v1/models/download")[0].json == {"model": GRANITE}
    assert len(lmstudio_fake.requests_to(f"/api/v1/models/download/status/{seen[0].job_id}")) == 3
    assert GRANITE in [m.id for m in mgr.catalog.list().models]  # the listing sees it (cache invalidated)
    assert mgr.download(GRANITE).status == "already_downloaded"
    assert [d.status for d in mgr.downloads()] == ["already_downloaded"]


def test_lmstudio_download_job_can_be_followed_again(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.download_steps = 4
    mgr = manager(Endpoint("lm", "lmstudio", lmstudio_fake.base_url))
    started = _lmstudio_api_start(lmstudio_fake)
    final = mgr.download(GRANITE, job_id=started)  # e.g. after the first `models get` was interrupted
    assert final.status == "completed"
    assert len(lmstudio_fake.requests_to("/api/v1/models/download")) == 1  # only the interrupted start


def _lmstudio_api_start(fake: LMStudioFake) -> str:
    import httpx

    return str(httpx.post(f"{fake.base_url}/api/v1/models/download", json={"model": GRANITE}).json()["job_id"])


def test_lmstudio_download_failure_and_unknown_model(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.failing_downloads.add(GRANITE)
    mgr = manager(Endpoint("lm", "lmstudio", lmstudio_fake.base_url))
    with pytest.raises(ProviderError, match="downloading ibm/granite-4-micro on lm failed") as caught:
        mgr.download(GRANITE)
    assert caught.value.hint and "--job job_" in caught.value.hint
    with pytest.raises(ModelNotFoundError, match="model 'nobody/nothing' is not available on LM Studio"):
        mgr.download("nobody/nothing")


def test_lmstudio_before_04_has_no_download_endpoint() -> None:
    with LMStudioFake(api_versions=("v0",)) as fake:
        with pytest.raises(ProviderError, match="has no download endpoint") as caught:
            manager(Endpoint("lm", "lmstudio", fake.base_url)).download(GRANITE)
        assert caught.value.hint and "lms get" in caught.value.hint


def test_ollama_pull_streams_progress_over_all_layers(ollama_fake: OllamaFake) -> None:
    seen: list[DownloadProgress] = []
    mgr = manager(Endpoint("ol", "ollama", ollama_fake.base_url))
    final = mgr.download("qwen3:0.6b", progress=seen.append)
    assert final.status == "completed" and final.total_bytes == 522_653_767
    sizes = [s.downloaded_bytes for s in seen if s.downloaded_bytes is not None]
    assert sizes == sorted(sizes) and sizes[-1] == 522_653_767
    assert {s.message for s in seen} >= {"pulling manifest", "verifying sha256 digest", "success"}
    assert ollama_fake.requests_to("/api/pull")[0].json == {"model": "qwen3:0.6b", "stream": True}
    assert "qwen3:0.6b" in [m.id for m in mgr.catalog.list().models]


def test_ollama_pull_error_line_is_a_clear_error(ollama_fake: OllamaFake) -> None:
    with pytest.raises(ProviderError, match="pull model manifest: file does not exist"):
        manager(Endpoint("ol", "ollama", ollama_fake.base_url)).download("no-such-model")


def test_cli_get_shows_the_job_and_the_result(tmp_path: Path, lmstudio_fake: LMStudioFake) -> None:
    config = tmp_path / "mindgate.yaml"
    lm = {"lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}
    config.write_text(yaml.safe_dump({"llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct", **lm}},
                                      "embedder": {"provider": "lmstudio", "config": lm}}))
    root = typer.Typer()
    root.add_typer(app, name="models")
    root.command("noop")(lambda: None)
    result = CliRunner().invoke(root, ["models", "get", GRANITE, "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "download job job_" in result.output and "--job job_" in result.output
    assert f"lmstudio:{GRANITE} downloaded (" in result.output
    again = CliRunner().invoke(root, ["models", "get", GRANITE, "-c", str(config)])
    assert "was already downloaded" in again.output
    hf = CliRunner().invoke(root, ["models", "get", "lmstudio-community/x@q4_k_m", "-c", str(config)])
    assert hf.exit_code == 1 and "only supported for Hugging Face links" in " ".join(hf.output.split())
