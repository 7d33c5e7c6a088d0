"""Serving many clients and models on a real server: batching, backpressure, shutdown."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.conftest import MODEL, Server, start_server, stop_server, wait_until

WORDS = ["apple", "river", "mountain", "guitar", "candle", "forest", "silver", "window"]


def ask(word: str) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Repeat this word exactly: {word}"}],
        "options": {"temperature": 0, "num_predict": 12},
    }


def stream_chat(url: str, body: dict[str, object]) -> list[dict[str, object]]:
    with httpx.stream("POST", f"{url}/api/chat", json=body, timeout=120) as r:
        return [json.loads(line) for line in r.iter_lines() if line.strip()]


def workers_of(server: Server) -> list[psutil.Process]:
    return [c for c in psutil.Process(server.process.pid).children() if "spawn_main" in " ".join(c.cmdline())]


def test_eight_concurrent_streams_no_cross_talk(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda w: stream_chat(server.url, ask(w)), WORDS))
    for word, parts in zip(WORDS, results, strict=True):
        text = "".join(p["message"]["content"] for p in parts if "message" in p)  # type: ignore[index]
        assert parts[-1]["done"] is True
        assert word in text.lower(), (word, text)
        for other in WORDS:
            if other != word:
                assert other not in text.lower(), (word, text)


def test_second_turn_reuses_the_prompt_cache(server: Server) -> None:
    history = [{"role": "user", "content": "Tell me about the moon. " * 20}]
    first = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": history, "max_tokens": 8, "temperature": 0},
        timeout=60,
    ).json()
    history += [
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "And the sun?"},
    ]
    second = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": history, "max_tokens": 8, "temperature": 0},
        timeout=60,
    ).json()
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1
    ollama = httpx.post(
        f"{server.url}/api/chat",
        json={"model": MODEL, "messages": history, "stream": False, "options": {"num_predict": 8}},
        timeout=60,
    ).json()
    assert ollama["prompt_eval_count"] < second["usage"]["prompt_tokens"]  # only evaluated tokens


@pytest.fixture
def small_queue_server(models_dir: Path, tmp_path: Path) -> Server:
    s = start_server(models_dir, tmp_path / "server.log", SLM_NUM_PARALLEL="2", SLM_MAX_QUEUE="3")
    yield s  # type: ignore[misc]
    stop_server(s)


def test_queue_overflow_gives_exactly_the_overflow_503s(small_queue_server: Server) -> None:
    url = small_queue_server.url
    body = {"model": MODEL, "prompt": "Write a long story.", "max_tokens": 150, "ignore_eos": True}

    def post(_: int) -> tuple[int, str | None]:
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=600)  # 3 wait for 2 x 150 tokens
        return r.status_code, r.headers.get("retry-after")

    with ThreadPoolExecutor(max_workers=9) as pool:
        results = list(pool.map(post, range(9)))  # 2 running + 3 waiting + 4 over
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 5 + [503] * 4, results
    assert all(retry == "1" for code, retry in results if code == 503)


def assert_slot_was_freed(s: Server) -> None:
    """With one slot, a new request after the abandoned ~3000-token one must not wait for it:
    its queue wait in the worker is compared with its own time per token (a ratio, not a
    clock limit: on a loaded machine both grow together)."""
    from prometheus_client.parser import text_string_to_metric_families

    quick = httpx.post(
        f"{s.url}/api/generate",
        json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 8}},
        timeout=300,
    ).json()
    assert quick["eval_count"] == 8
    per_token = quick["eval_duration"] / 1e9 / (quick["eval_count"] - 1)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(httpx.get(f"{s.url}/metrics").text)
        for sample in family.samples
        if sample.labels.get("model") == MODEL
    }
    queued = samples["slm_queue_wait_seconds_sum"]  # the abandoned request waited ~0, the quick one the rest
    assert queued < 100 * per_token, (queued, per_token)  # the rest of the story would be ~2900 tokens


def test_disconnect_frees_the_slot_for_a_queued_request(models_dir: Path, tmp_path: Path) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_NUM_PARALLEL="1")
    try:
        long = {"model": MODEL, "prompt": "Write an endless story.", "options": {"num_predict": 3000}}
        with httpx.stream("POST", f"{s.url}/api/generate", json=long, timeout=60) as r:
            next(r.iter_lines())
        assert_slot_was_freed(s)
    finally:
        stop_server(s)


def test_two_models_with_one_loaded_at_a_time(models_dir: Path, tmp_path: Path) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_MAX_LOADED_MODELS="1")
    try:
        s.cli("cp", MODEL, "other:1")
        for name in (MODEL, "other:1", MODEL, "other:1"):
            r = httpx.post(
                f"{s.url}/api/generate",
                json={"model": name, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert [m["name"] for m in httpx.get(f"{s.url}/api/ps").json()["models"]] == [name]
        s.cli("rm", "other:1")
    finally:
        stop_server(s)


def test_memory_budget_too_small_is_a_clear_error(models_dir: Path, tmp_path: Path) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_MAX_MEMORY="64MiB", ready=False)
    try:
        r = httpx.post(f"{s.url}/api/generate", json={"model": MODEL, "prompt": "Hi"}, timeout=60)
        assert r.status_code == 507
        assert "SLM_MAX_MEMORY" in r.json()["error"]
        assert workers_of(s) == []
        assert httpx.get(f"{s.url}/ready").status_code == 503
    finally:
        stop_server(s)


def test_sigterm_drains_in_flight_requests(models_dir: Path, tmp_path: Path) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_SHUTDOWN_TIMEOUT="60s")
    body = {
        "model": MODEL,
        "prompt": "Once upon a time",
        "max_tokens": 80,
        "ignore_eos": True,
        "stream": True,
    }
    try:
        with httpx.stream("POST", f"{s.url}/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: {"))
            s.process.send_signal(signal.SIGTERM)
            wait_until(
                lambda: httpx.get(f"{s.url}/ready", timeout=10).status_code == 503,
                30,
                "the server never drained",
            )
            refused = httpx.post(f"{s.url}/api/generate", json={"model": MODEL, "prompt": "x"}, timeout=10)
            rest = [line[6:] for line in lines if line.startswith("data: ")]
        assert refused.status_code == 503
        assert rest[-1] == "[DONE]"
        assert json.loads(rest[-2])["choices"][0]["finish_reason"] == "length"  # ran to its end
        s.process.wait(timeout=30)
    finally:
        stop_server(s)


def test_sigterm_with_a_drain_delay_keeps_serving_while_ready_says_leaving(
    models_dir: Path, tmp_path: Path
) -> None:
    """SLM_DRAIN_DELAY: /ready turns 503 at once (a router polling it stops sending), new
    requests are still answered until the delay ends, then refused, then the process exits."""
    s = start_server(models_dir, tmp_path / "server.log", SLM_DRAIN_DELAY="60s", SLM_SHUTDOWN_TIMEOUT="5s")
    body = {"model": MODEL, "prompt": "x", "stream": False, "options": {"num_predict": 2}}
    try:
        s.process.send_signal(signal.SIGTERM)
        wait_until(
            lambda: httpx.get(f"{s.url}/ready", timeout=10).status_code == 503, 30, "/ready never said so"
        )
        assert httpx.get(f"{s.url}/ready", timeout=10).json()["status"] == "draining"
        assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200  # alive: not a liveness failure
        answered = httpx.post(f"{s.url}/api/generate", json=body, timeout=60)
        assert answered.status_code == 200 and answered.json()["done"]  # still taking work
        assert s.process.poll() is None
        s.process.send_signal(signal.SIGTERM)  # a second signal ends the delay
        assert s.process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        stop_server(s)


def test_sigterm_after_the_drain_timeout_ends_streams_with_an_error(models_dir: Path, tmp_path: Path) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_SHUTDOWN_TIMEOUT="1s")
    # ignore_eos: the stream cannot end by itself within the 1 s drain
    body = {
        "model": MODEL,
        "prompt": "Once upon a time",
        "max_tokens": 3000,
        "ignore_eos": True,
        "stream": True,
    }
    try:
        with httpx.stream("POST", f"{s.url}/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: {"))
            pid_children = workers_of(s)
            s.process.send_signal(signal.SIGTERM)
            rest = [line[6:] for line in lines if line.startswith("data: ")]
        assert rest[-1] == "[DONE]"
        assert "shutting down" in json.loads(rest[-2])["error"]["message"]
        assert s.process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        assert pid_children
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in pid_children)
    finally:
        stop_server(s)


def test_keep_alive_zero_unloads_after_the_request(server: Server) -> None:
    server.cli("cp", MODEL, "brief:1")
    r = httpx.post(
        f"{server.url}/api/generate",
        json={
            "model": "brief:1",
            "prompt": "Hi",
            "stream": False,
            "keep_alive": 0,
            "options": {"num_predict": 2},
        },
        timeout=60,
    )
    assert r.status_code == 200
    assert "brief:1" not in [m["name"] for m in httpx.get(f"{server.url}/api/ps").json()["models"]]
    server.cli("rm", "brief:1")


def test_slm_stop_force_cuts_the_requests_in_flight(server: Server) -> None:
    """`slm stop` waits for requests in flight (tests/integration/test_isolation.py); an
    admin's `slm stop --force` ends them at once, each with an error line."""
    import threading

    server.cli("cp", MODEL, "cut:1")
    lines: list[dict[str, object]] = []
    streaming = threading.Event()

    def stream() -> None:
        body = {"model": "cut:1", "prompt": "Tell a long story.", "options": {"num_predict": 2000}}
        with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=300) as r:
            for line in r.iter_lines():
                lines.append(json.loads(line))
                streaming.set()

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        assert streaming.wait(timeout=120)
        server.cli("stop", "cut:1", "--force")
    finally:
        thread.join(timeout=300)
    assert "stopped by an administrator" in str(lines[-1].get("error"))
    assert not any(line.get("done") for line in lines) and len(lines) < 2000
    assert "cut:1" not in [m["name"] for m in httpx.get(f"{server.url}/api/ps").json()["models"]]
    server.cli("rm", "cut:1")


def test_model_parameter_sets_its_slots(server: Server) -> None:
    path = server.store.get(MODEL).model_path
    server.cli("import", "two-slots:1", str(path), "--parameter", "num_parallel", "2")
    httpx.post(f"{server.url}/api/generate", json={"model": "two-slots:1"}, timeout=60)
    ps = {m["name"]: m for m in httpx.get(f"{server.url}/api/ps").json()["models"]}
    assert ps["two-slots:1"]["num_parallel"] == 2
    assert "2" in server.cli("ps").stdout
    server.cli("stop", "two-slots:1")
    server.cli("rm", "two-slots:1")


def test_non_streaming_disconnect_frees_the_slot(models_dir: Path, tmp_path: Path) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_NUM_PARALLEL="1")
    try:
        long = {"model": MODEL, "prompt": "Write an endless story.", "max_tokens": 3000, "ignore_eos": True}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{s.url}/v1/completions", json=long, timeout=1.5)  # the client gives up
        assert_slot_was_freed(s)
    finally:
        stop_server(s)


def spin() -> None:
    while True:
        pass


def test_automatic_threads_give_a_core_to_a_busy_neighbour(models_dir: Path, tmp_path: Path) -> None:
    """SLM_NUM_THREADS=0: the worker starts with the CPU budget (`slm ps` shows it) and runs
    with a thread fewer while another process keeps a core busy (engine/threads.py)."""
    import multiprocessing

    from slmkit.hardware import cpu_budget

    budget = cpu_budget()
    if budget < 2:
        pytest.skip("one core: nothing to give back")
    s = start_server(models_dir, tmp_path / "server.log", SLM_NUM_THREADS="0")
    spinner = multiprocessing.get_context("spawn").Process(target=spin, daemon=True)
    try:
        body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
        httpx.post(f"{s.url}/api/generate", json=body, timeout=120)
        assert "threads" in httpx.get(f"{s.url}/api/ps", timeout=30).json()["models"][0]
        spinner.start()
        seen = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and budget - 1 not in seen:
            long = body | {"options": {"num_predict": 64}}
            httpx.post(f"{s.url}/api/generate", json=long, timeout=120)  # the governor samples while busy
            seen.add(httpx.get(f"{s.url}/api/ps", timeout=30).json()["models"][0]["threads"])
        assert budget - 1 in seen
        assert str(budget - 1) in s.cli("ps").stdout.split("\n")[1].split()
    finally:
        spinner.kill()
        spinner.join()
        stop_server(s)
