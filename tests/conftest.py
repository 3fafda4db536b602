"""Session-wide test set-up: offline model loading, one CPU thread, an isolated MINDGATE_HOME.

Fixtures that start real servers live in ``fixtures_*.py`` beside this file and are registered here.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
for _name in [n for n in os.environ if n.startswith("MINDGATE_")]:
    del os.environ[_name]

import pytest  # noqa: E402

pytest_plugins = ["fixtures_servers", "fixtures_pg", "fixtures_fakes", "fixtures_models", "fixtures_gateway"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDGATE_HOME", str(tmp_path_factory.mktemp("mindgate_home")))


@pytest.fixture(autouse=True)
def _fresh_sdk_probes() -> None:
    """The LM Studio SDK probe is cached per URL for 30 s; a port the OS hands again to another test's fake
    server (one without the SDK) must not inherit the answer cached for the earlier one."""
    from mindgate.providers.lmstudio import _sdk

    _sdk._usable.clear()
