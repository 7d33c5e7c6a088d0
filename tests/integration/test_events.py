"""GET /api/events on a real server: a pull from a fake registry, the eviction it takes to
load the pulled model (one model at a time), and the load arrive in order as server-sent
events, read by a plain HTTP client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.registry import FakeRegistry
from tests.integration.conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_at_a_time(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("events") / "server.log"
    server = start_server(models_dir, log, SLM_MAX_LOADED_MODELS="1", SLM_PULL_PRIVATE="1")
    yield server
    stop_server(server)


class Listener:
    """Reads /api/events in a thread; ``until`` waits (with a deadline) for an event."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=None))
        self.open = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self.thread.start()
        assert self.open.wait(30), "the event stream did not open"

    def _read(self, url: str) -> None:
        try:
            with self.client.stream("GET", f"{url}/api/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                self.open.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test

    def until(self, check: Any, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(check(e) for e in self.events):
            assert time.monotonic() < deadline, self.events
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()


def test_pull_eviction_and_load_arrive_in_order(one_at_a_time: Server) -> None:
    server = one_at_a_time
    registry = FakeRegistry()
    registry.add_model("library/evented:1", server.store.get(MODEL).model_path.read_bytes())
    registry.start()
    name = f"{registry.host}/library/evented:1"
    listener = Listener(server.url)
    try:
        httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "prompt": ""}, timeout=120)  # loaded
        pulled = httpx.post(f"{server.url}/api/pull", json={"model": name, "insecure": True, "stream": False},
                            timeout=300)  # fmt: skip
        assert pulled.status_code == 200, pulled.text
        loaded = httpx.post(f"{server.url}/api/generate", json={"model": name, "prompt": ""}, timeout=300)
        assert loaded.status_code == 200, loaded.text
        listener.until(lambda e: e["type"] == "loaded" and e["model"] == name)
    finally:
        listener.close()
        registry.stop()
    mine = [e for e in listener.events if e.get("model") in (name, MODEL)]
    kinds = [(e["type"], e.get("why")) for e in mine if e["type"] != "pull"]
    assert kinds[-3:] == [("unloaded", "evicted"), ("loading", None), ("loaded", None)]
    assert mine[-3]["model"] == MODEL and mine[-3]["to_load"] == name
    pulls = [e for e in mine if e["type"] == "pull"]
    assert pulls[0]["status"] == "pulling manifest" and pulls[-1]["status"] == "success"
    assert any(e.get("total") and e.get("completed") == e["total"] for e in pulls)  # progress
    assert mine.index(pulls[-1]) < mine.index(mine[-3])  # the pull finished before the eviction
    assert mine[-1]["memory"] > 0 and mine[-2]["bytes"] > 0
    httpx.request("DELETE", f"{server.url}/api/delete", json={"model": name})
