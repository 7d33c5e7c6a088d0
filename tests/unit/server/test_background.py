"""Background responses (`background: true`) with fake workers: created queued, polled to
the end, followed from any sequence number (again after a dropped connection), cancelled;
per-key ownership and bounds; the run store's own rules (server/responses/background.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.errors import LimitExceeded
from slmkit.server.responses.background import BackgroundRuns, Run
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.server.fakes import FakeWorkers


@pytest.fixture(autouse=True)
def tall(workers: FakeWorkers) -> None:
    workers.n_ctx = 4096
    workers.script = b"The quick brown fox jumps over the lazy dog."


def poll(client: TestClient, rid: str, until: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, Any] = client.get(f"/v1/responses/{rid}").json()
        if got["status"] in until:
            return got
        assert time.monotonic() < deadline, got["status"]
        time.sleep(0.02)  # polling, as a client does, within the deadline


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_a_background_response_is_queued_then_polled_to_its_end(client: TestClient) -> None:
    made = client.post("/v1/responses", json={"model": "tiny:1", "input": "hi", "background": True})
    assert made.status_code == 200
    queued = made.json()
    assert queued["status"] == "queued" and queued["background"] is True and queued["output"] == []
    done = poll(client, queued["id"], {"completed"})
    assert done["output"][0]["content"][0]["text"] == "The quick brown fox jumps over the lazy dog."
    assert done["usage"]["output_tokens"] > 0
    again = client.post(
        "/v1/responses", json={"model": "tiny:1", "input": "more", "previous_response_id": queued["id"]}
    )
    assert again.status_code == 200  # a finished background response continues like any other


def test_its_stream_replays_from_any_point_and_after_a_dropped_connection(client: TestClient) -> None:
    body = {"model": "tiny:1", "input": "hi", "background": True, "stream": True}
    with client.stream("POST", "/v1/responses", json=body) as r:
        lines = r.iter_lines()
        first = [json.loads(next(line for line in lines if line.startswith("data: "))[6:])]
    # the connection is gone; the answer goes on; re-attach after the first event
    rid = first[0]["response"]["id"]
    poll(client, rid, {"completed"})
    rest = events(client.get(f"/v1/responses/{rid}?stream=true&starting_after=0").text)
    whole = events(client.get(f"/v1/responses/{rid}?stream=true").text)
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    assert first + rest == whole  # nothing lost, nothing twice
    text = "".join(e["delta"] for e in whole if e["type"] == "response.output_text.delta")
    assert text == "The quick brown fox jumps over the lazy dog."
    assert whole[-1]["type"] == "response.completed"
    late = events(client.get(f"/v1/responses/{rid}?stream=true&starting_after={len(whole) - 2}").text)
    assert late == whole[-1:]


def test_a_running_background_response_is_cancelled(
    client: TestClient, store: ModelStore, tmp_path: Path
) -> None:
    store.import_gguf("slow:1", write_tiny_gguf(tmp_path / "s.gguf", template="slow model"))
    queued = client.post("/v1/responses", json={"model": "slow:1", "input": "hi", "background": True}).json()
    poll(client, queued["id"], {"in_progress"})
    cancelled = client.post(f"/v1/responses/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.get(f"/v1/responses/{queued['id']}").json()["status"] == "cancelled"
    assert client.post(f"/v1/responses/{queued['id']}/cancel").json()["status"] == "cancelled"  # idempotent


def test_what_background_refuses(client: TestClient) -> None:
    unstored = client.post(
        "/v1/responses", json={"model": "tiny:1", "input": "hi", "background": True, "store": False}
    )
    assert unstored.status_code == 400 and unstored.json()["error"]["param"] == "background"
    plain = client.post("/v1/responses", json={"model": "tiny:1", "input": "hi"}).json()
    assert client.post(f"/v1/responses/{plain['id']}/cancel").status_code == 400  # not a background one
    stream = client.get(f"/v1/responses/{plain['id']}?stream=true")
    assert stream.status_code == 400 and "background" in stream.json()["error"]["message"]
    assert client.post("/v1/responses/resp_nope/cancel").status_code == 404
    assert client.get("/v1/responses/resp_nope?stream=true").status_code == 404
    assert client.get(f"/v1/responses/{plain['id']}?stream=true&starting_after=-5").status_code == 400


def test_runs_are_bounded_per_key_and_forgotten_after_their_time() -> None:
    now = [0.0]
    runs = BackgroundRuns(per_owner=2, keep=10, max_bytes=1 << 20, clock=lambda: now[0])

    async def scenario() -> None:
        gate = asyncio.Event()

        async def hold(run: Run) -> None:
            run.add({"type": "x", "sequence_number": 0})
            await gate.wait()
            run.end({"status": "completed"}, now[0])

        runs.start("a", "resp_1", {}, hold)
        runs.start("a", "resp_2", {}, hold)
        with pytest.raises(LimitExceeded, match="background"):
            runs.start("a", "resp_3", {}, hold)
        runs.start("b", "resp_1", {}, hold)  # another key's count is its own
        assert runs.get("b", "resp_2") is None  # and its ids are not the other's
        gate.set()
        await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(runs) == 0 and runs.get("a", "resp_1") is not None  # ended, kept to be read
        now[0] = 11.0
        assert runs.get("a", "resp_1") is None  # past KEEP_SECONDS

    asyncio.run(scenario())


def test_a_dropped_stored_stream_goes_on_and_is_re_attached(client: TestClient) -> None:
    with client.stream("POST", "/v1/responses", json={"model": "tiny:1", "input": "hi", "stream": True}) as r:
        lines = r.iter_lines()
        first = [json.loads(next(line for line in lines if line.startswith("data: "))[6:])]
    rid = first[0]["response"]["id"]  # the connection is gone; the answer goes on and is stored
    done = poll(client, rid, {"completed"})
    assert done["output"][0]["content"][0]["text"] == "The quick brown fox jumps over the lazy dog."
    whole = events(client.get(f"/v1/responses/{rid}?stream=true").text)
    assert first + events(client.get(f"/v1/responses/{rid}?stream=true&starting_after=0").text) == whole
    unstored = {"model": "tiny:1", "input": "hi", "stream": True, "store": False}
    with client.stream("POST", "/v1/responses", json=unstored) as r:
        gone = json.loads(next(line for line in r.iter_lines() if line.startswith("data: "))[6:])
    assert client.get(f"/v1/responses/{gone['response']['id']}?stream=true").status_code == 404
