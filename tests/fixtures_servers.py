"""Real servers started on 127.0.0.1 for the tests: the llama.cpp server on the shipped SmolLM2 GGUF.

``LlamaServer`` can be started, SIGKILLed and restarted on the same port (fault tests need that).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mindgate._assets import default_gguf_path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on one loopback port, one thread (default threads stall on 2 cores)."""

    def __init__(self, port: int | None = None, *, n_ctx: int = 4096, log_dir: Path | None = None,
                 model_alias: str = "smollm2") -> None:
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.model_alias = model_alias
        self.log_path = (log_dir or Path("/tmp")) / f"llama-server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> LlamaServer:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf_path()),
               "--model_alias", self.model_alias, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--n_threads", "1", "--n_threads_batch", "1"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"llama.cpp server did not answer within {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real llama.cpp server shared by the whole session (do not kill it; start your own for that)."""
    server = LlamaServer(log_dir=tmp_path_factory.mktemp("llama")).start()
    yield server
    server.stop()


@pytest.fixture
def llama_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[LlamaServer]]:
    """Start extra servers (e.g. to SIGKILL them); all are stopped after the test."""
    started: list[LlamaServer] = []
    log_dir = tmp_path_factory.mktemp("llama-extra")

    class _Tracked(LlamaServer):
        def __init__(self, port: int | None = None, **kwargs: object) -> None:
            super().__init__(port, log_dir=log_dir, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield _Tracked
    for server in started:
        server.stop()
