"""Stored responses shared in Redis (SLM_RESPONSES_STORE): the in-memory store's rules kept
by the Lua scripts against a real redis-server, and two apps (two replicas) sharing one
store through the routes: created on one, read, continued and deleted on the other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.server.app import create_app
from slmkit.server.responses.shared import RedisResponses
from slmkit.store import ModelStore
from tests.redis_server import redis_server
from tests.unit.server.fakes import FakeWorkers, make_config


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"test:{request.node.name}:"  # each test its own keys in the one server


def response(rid: str, text: str = "x") -> dict[str, Any]:
    return {"id": rid, "object": "response", "output": [{"type": "message", "content": text}]}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def store(url: str, prefix: str, **bounds: Any) -> RedisResponses:
    settings = {"per_owner": 100, "ttl": 60.0, "max_bytes": 1 << 20, **bounds}
    return RedisResponses(url, prefix=prefix, **settings)


def test_each_key_keeps_its_newest_responses_up_to_the_count(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        s = store(redis_url, prefix, per_owner=2)
        for i in range(3):
            assert await s.put("a", response(f"r{i}"), ())
        assert await s.get("a", "r0") is None and await s.get("a", "r1") and await s.get("a", "r2")
        assert await s.put("b", response("r0"), ())  # another key's count is its own
        assert len(s) == 3
        await s.close()

    run(go())


def test_no_key_can_read_or_delete_another_keys_response(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        s = store(redis_url, prefix)
        await s.put("a", response("r1"), ({"type": "message", "role": "user", "content": "secret"},))
        assert await s.get("b", "r1") is None and await s.get("", "r1") is None
        assert not await s.delete("b", "r1")
        stored = await s.get("a", "r1")
        assert stored is not None and stored.context[0]["content"] == "secret"
        assert await s.delete("a", "r1") and await s.get("a", "r1") is None
        assert s.total_bytes == 0 and len(s) == 0
        assert await s.get("a", "r" * 10_000) is None  # never looked up
        assert await s.get("a", "r1:x") is None and await s.get("a", "*") is None
        assert not await s.delete("a", "r*")
        await s.close()

    run(go())


def test_responses_expire_and_leave_the_counts(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        s = store(redis_url, prefix, ttl=0.2)
        await s.put("a", response("old"), ())
        deadline = asyncio.get_running_loop().time() + 30
        while await s.get("a", "old") is not None:  # Redis expires the entry itself
            assert asyncio.get_running_loop().time() < deadline, "never expired"
            await asyncio.sleep(0.05)
        keep = store(redis_url, prefix, ttl=60)
        await keep.put("b", response("new"), ())  # a write sweeps what has expired, for every key
        assert len(keep) == 1 and keep.total_bytes == (await keep.get("b", "new")).size  # type: ignore[union-attr]
        await s.close()
        await keep.close()

    run(go())


def test_over_the_byte_bound_the_heaviest_key_loses_its_oldest(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        first = store(redis_url, prefix)
        await first.put("probe", response("p", "y" * 1000), ())
        one = first.total_bytes
        await first.delete("probe", "p")
        s = store(redis_url, prefix, max_bytes=5 * one)
        await s.put("victim", response("v0", "y" * 1000), ())
        for i in range(10):  # a key that floods the store evicts its own responses first
            await s.put("flood", response(f"f{i}", "y" * 1000), ())
        assert await s.get("victim", "v0") is not None
        assert await s.get("flood", "f9") is not None and await s.get("flood", "f0") is None
        assert s.total_bytes <= 5 * one
        assert not await s.put("flood", response("huge", "z" * 10 * one), ())  # larger than the bound
        assert await s.get("victim", "v0") is not None and s.total_bytes <= 5 * one
        await first.close()
        await s.close()

    run(go())


def test_replicas_writing_at_once_keep_the_bounds_and_the_counts(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        replicas = [store(redis_url, prefix, per_owner=7) for _ in range(4)]
        await asyncio.gather(
            *(r.put(owner, response(f"{i}-{n}"), ()) for i, r in enumerate(replicas)
              for n in range(20) for owner in ("a", "b"))
        )  # fmt: skip
        probe = replicas[0]
        await probe.put("a", response("last"), ())
        kept = [key async for key in probe._redis.scan_iter(f"{prefix}entry:*")]
        assert len(kept) == len(probe) == 14  # 7 per owner, and the count agrees with the entries
        sizes = [(await probe.get(k.decode().split(":")[-2], k.decode().split(":")[-1])) for k in kept]
        assert probe.total_bytes == sum(s.size for s in sizes if s is not None)
        for r in replicas:
            await r.close()

    run(go())


def test_an_unreachable_redis_is_a_503_that_names_no_address(tmp_path: Path) -> None:
    async def go() -> None:
        s = RedisResponses("redis://:hunter2@127.0.0.1:1/0", 10, 60, 1 << 20)
        from slmkit.errors import SharedStateUnavailable

        with pytest.raises(SharedStateUnavailable) as caught:
            await s.get("a", "r1")
        assert "hunter2" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
        await s.close()

    run(go())


# --- two apps (two replicas) sharing one store, through the routes ---


def replica(
    tmp_path: Path, store_: ModelStore, url: str, prefix: str, script: bytes = b"Hello world"
) -> TestClient:
    config = make_config(tmp_path, default_model="tiny:1", responses_store=url)
    app = create_app(
        config, store=store_, worker_factory=FakeWorkers(n_ctx=4096, script=script), preload=False
    )
    app.state.slm.responses.prefix = prefix
    return TestClient(app, base_url="http://localhost", raise_server_exceptions=False)


def test_a_response_made_on_one_replica_is_read_continued_and_deleted_on_another(
    tmp_path: Path, store: ModelStore, redis_url: str, prefix: str
) -> None:
    with replica(tmp_path, store, redis_url, prefix) as a, replica(tmp_path, store, redis_url, prefix) as b:
        first = a.post("/v1/responses", json={"model": "tiny:1", "input": "My name is Ada."}).json()
        assert b.get(f"/v1/responses/{first['id']}").json() == first
        (item,) = b.get(f"/v1/responses/{first['id']}/input_items").json()["data"]
        assert item["content"][0]["text"] == "My name is Ada."
        body = {"model": "tiny:1", "input": "What is my name?", "previous_response_id": first["id"]}
        second = b.post("/v1/responses", json=body)
        assert second.status_code == 200, second.text
        (loaded,) = b.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
        prompt = loaded.worker.backend.prompt_of(second.json()["id"].removeprefix("resp_"))
        assert "My name is Ada." in prompt and "What is my name?" in prompt
        assert b.delete(f"/v1/responses/{first['id']}").json()["deleted"] is True
        assert a.get(f"/v1/responses/{first['id']}").status_code == 404
        assert "slm_responses_stored 1.0" in b.get("/metrics").text


def test_with_redis_down_answers_are_still_given_and_reads_are_503(
    tmp_path: Path, store: ModelStore, prefix: str
) -> None:
    with replica(tmp_path, store, "redis://:hunter2@127.0.0.1:1/0", prefix) as c:
        made = c.post("/v1/responses", json={"model": "tiny:1", "input": "hi"})
        assert made.status_code == 200 and made.json()["output"]  # made, not kept
        read = c.get(f"/v1/responses/{made.json()['id']}")
        assert read.status_code == 503 and "SLM_RESPONSES_STORE" in read.json()["error"]["message"]
        assert "hunter2" not in read.text and "127.0.0.1" not in read.text
        body = {"model": "tiny:1", "input": "again", "previous_response_id": made.json()["id"]}
        assert c.post("/v1/responses", json=body).status_code == 503


def test_a_background_response_is_followed_and_cancelled_from_another_replica(
    tmp_path: Path, store: ModelStore, redis_url: str, prefix: str
) -> None:
    import json
    import time

    from tests.ggufs import write_tiny_gguf

    store.import_gguf("slow:1", write_tiny_gguf(tmp_path / "s.gguf", template="slow model"))
    long = b"word " * 100  # 500 steps of 0.1 s on the slow model: far longer than a cancel
    with (
        replica(tmp_path, store, redis_url, prefix, long) as a,
        replica(tmp_path, store, redis_url, prefix, long) as b,
    ):
        body = {"model": "tiny:1", "input": "hi", "background": True, "max_output_tokens": 8}
        made = a.post("/v1/responses", json=body).json()
        followed = b.get(f"/v1/responses/{made['id']}?stream=true&starting_after=0")  # to its end
        events = [json.loads(x[6:]) for x in followed.text.splitlines() if x.startswith("data: ")]
        assert events[0]["sequence_number"] == 1 and events[-1]["type"] == "response.incomplete"
        assert b.get(f"/v1/responses/{made['id']}").json()["status"] == "incomplete"  # 8 tokens of 500

        slow = a.post("/v1/responses", json={"model": "slow:1", "input": "hi", "background": True}).json()
        deadline = time.monotonic() + 30
        while b.get(f"/v1/responses/{slow['id']}").json()["status"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling, within the deadline
        cancelled = b.post(f"/v1/responses/{slow['id']}/cancel")  # runs on a: asked through Redis
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert a.get(f"/v1/responses/{slow['id']}").json()["status"] == "cancelled"
