"""Stored responses: the store's bounds (count per key, age, bytes with the heaviest key paying)
and isolation, then `store`, `previous_response_id`, GET and DELETE through the routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.security.keys import KeyStore
from slmkit.server.app import create_app
from slmkit.server.responses.store import ResponseStore
from slmkit.store import ModelStore
from tests.unit.server.fakes import FakeWorkers, make_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def response(rid: str, text: str = "x") -> dict[str, Any]:
    return {"id": rid, "object": "response", "output": [{"type": "message", "content": text}]}


def test_each_key_keeps_its_newest_responses_up_to_the_count() -> None:
    store = ResponseStore(per_owner=2, ttl=60, max_bytes=1 << 20)
    for i in range(3):
        assert store.put("a", response(f"r{i}"), ())
    assert store.get("a", "r0") is None and store.get("a", "r1") and store.get("a", "r2")
    assert store.put("b", response("r0"), ())  # another key's count is its own
    assert store.get("a", "r1") is not None and len(store) == 3


def test_no_key_can_read_or_delete_another_keys_response() -> None:
    store = ResponseStore(per_owner=10, ttl=60, max_bytes=1 << 20)
    store.put("a", response("r1"), ({"type": "message", "role": "user", "content": "secret"},))
    assert store.get("b", "r1") is None and store.get("", "r1") is None
    assert not store.delete("b", "r1")
    stored = store.get("a", "r1")
    assert stored is not None and stored.context[0]["content"] == "secret"
    assert store.delete("a", "r1") and store.get("a", "r1") is None and store.total_bytes == 0


def test_responses_expire() -> None:
    clock = Clock()
    store = ResponseStore(per_owner=10, ttl=60, max_bytes=1 << 20, clock=clock)
    store.put("a", response("old"), ())
    clock.now += 30
    store.put("a", response("new"), ())
    clock.now += 31
    assert store.get("a", "old") is None and store.get("a", "new") is not None
    store.put("b", response("other"), ())  # a write sweeps what has expired, for every key
    clock.now += 30
    store.put("b", response("later"), ())
    assert len(store) == 2 and store.get("a", "new") is None


def test_over_the_byte_bound_the_heaviest_key_loses_its_oldest() -> None:
    one = len(str(response("r0", "y" * 1000)))
    store = ResponseStore(per_owner=100, ttl=60, max_bytes=5 * one)
    store.put("victim", response("v0", "y" * 1000), ())
    for i in range(10):  # a key that floods the store evicts its own responses first
        store.put("flood", response(f"f{i}", "y" * 1000), ())
    assert store.get("victim", "v0") is not None
    assert store.get("flood", "f9") is not None and store.get("flood", "f0") is None
    assert store.total_bytes <= store.max_bytes
    assert not store.put("flood", response("huge", "z" * 10 * one), ())  # larger than the bound
    assert store.get("victim", "v0") is not None and store.total_bytes <= store.max_bytes


def test_a_chain_is_charged_for_its_whole_context() -> None:
    store = ResponseStore(per_owner=100, ttl=60, max_bytes=1 << 20)
    turn = ({"type": "message", "role": "user", "content": "w" * 1000},)
    store.put("a", response("r1"), turn)
    first = store.total_bytes
    store.put("a", response("r2"), turn + turn)  # shared items are still counted per entry
    assert store.total_bytes - first > first


def test_a_zero_count_stores_nothing() -> None:
    store = ResponseStore(per_owner=0, ttl=60, max_bytes=1 << 20)
    assert not store.enabled and not store.put("a", response("r1"), ()) and len(store) == 0


# --- through the routes (FakeWorker answers "Hello world") ---


@pytest.fixture
def tall(workers: FakeWorkers) -> None:
    workers.n_ctx = 4096  # room for a conversation


def prompt(client: TestClient, response_id: str) -> str:
    (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
    return str(loaded.worker.backend.prompt_of(response_id.removeprefix("resp_")))


def test_a_stored_response_is_read_continued_and_deleted(client: TestClient, tall: None) -> None:
    first = client.post(
        "/v1/responses",
        json={
            "model": "tiny:1",
            "input": "My name is Ada.",
            "instructions": "Be terse.",
            "metadata": {"k": "v"},
        },
    ).json()
    assert (
        first["store"] is True and first["previous_response_id"] is None and first["metadata"] == {"k": "v"}
    )
    assert client.get(f"/v1/responses/{first['id']}").json() == first
    body = {"model": "tiny:1", "input": "What is my name?", "previous_response_id": first["id"]}
    second = client.post("/v1/responses", json=body).json()
    assert second["previous_response_id"] == first["id"] and second["instructions"] is None
    text = prompt(client, second["id"])
    assert "My name is Ada." in text and "Hello world" in text and "What is my name?" in text
    assert "Be terse." not in text  # instructions are not carried over
    third = client.post(
        "/v1/responses", json={**body, "previous_response_id": second["id"], "instructions": "Be kind."}
    ).json()
    text = prompt(client, third["id"])
    assert text.index("Be kind.") < text.index("My name is Ada.") < text.index("What is my name?")
    assert client.delete(f"/v1/responses/{first['id']}").json() == {
        "id": first["id"],
        "object": "response",
        "deleted": True,
    }
    gone = client.get(f"/v1/responses/{first['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"
    assert client.delete(f"/v1/responses/{first['id']}").status_code == 404
    again = client.post("/v1/responses", json={**body, "previous_response_id": first["id"]})
    error = again.json()["error"]
    assert again.status_code == 400 and error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id" and first["id"] in error["message"]
    # the second response holds its own copy of the conversation: deleting the first loses nothing
    fourth = client.post("/v1/responses", json={**body, "previous_response_id": second["id"]}).json()
    assert "My name is Ada." in prompt(client, fourth["id"])
    metrics = client.get("/metrics").text
    assert "slm_responses_stored 3.0" in metrics and "slm_responses_stored_bytes" in metrics


def test_store_false_keeps_nothing_and_streams_are_stored_when_done(client: TestClient, tall: None) -> None:
    unstored = client.post("/v1/responses", json={"model": "tiny:1", "input": "hi", "store": False}).json()
    assert unstored["store"] is False and client.get(f"/v1/responses/{unstored['id']}").status_code == 404
    with client.stream("POST", "/v1/responses", json={"model": "tiny:1", "input": "hi", "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    final = json.loads(lines[-1].removeprefix("data: "))["response"]
    assert client.get(f"/v1/responses/{final['id']}").json() == final


def test_a_continued_function_call_is_answered_by_its_output(
    client: TestClient, tall: None, workers: FakeWorkers
) -> None:
    workers.script = b'{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    first = client.post(
        "/v1/responses",
        json={"model": "tiny:1", "input": "Weather?", "tools": [tool], "tool_choice": "required"},
    ).json()
    (call,) = [i for i in first["output"] if i["type"] == "function_call"]
    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 21 C"}
    second = client.post(
        "/v1/responses",
        json={"model": "tiny:1", "input": [result], "tools": [tool], "previous_response_id": first["id"]},
    )
    assert second.status_code == 200, second.text
    text = prompt(client, second.json()["id"])
    assert "Sunny, 21 C" in text and "Oslo" in text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"previous_response_id": "resp_" + "x" * 200}, "previous_response_id"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"store": "maybe"}, "store"),
    ],
)
def test_bad_store_fields_are_refused_naming_them(
    client: TestClient, fields: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/responses", json={"model": "tiny:1", "input": "hi", **fields})
    assert r.status_code == 400 and field in r.json()["error"]["message"]


def test_one_key_never_sees_anothers_responses(tmp_path: Path, store: ModelStore, tall: None) -> None:
    config = make_config(tmp_path)
    keys = KeyStore(config.keys_file)
    alice, bob = (keys.create("inference", name=n)[1] for n in ("alice", "bob"))
    app = create_app(config, store=store, worker_factory=FakeWorkers(n_ctx=4096), preload=False)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:

        def auth(secret: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secret}"}

        mine = c.post(
            "/v1/responses", json={"model": "tiny:1", "input": "secret"}, headers=auth(alice)
        ).json()
        rid = mine["id"]
        assert c.get(f"/v1/responses/{rid}", headers=auth(bob)).status_code == 404
        assert c.delete(f"/v1/responses/{rid}", headers=auth(bob)).status_code == 404
        body = {"model": "tiny:1", "input": "what was it?", "previous_response_id": rid}
        stolen = c.post("/v1/responses", json=body, headers=auth(bob))
        assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "previous_response_not_found"
        assert c.get(f"/v1/responses/{rid}").status_code == 401
        assert c.get(f"/v1/responses/{rid}", headers=auth(alice)).json() == mine
        assert c.post("/v1/responses", json=body, headers=auth(alice)).status_code == 200


def test_input_items_list_a_responses_own_input_paged(client: TestClient, tall: None) -> None:
    turns = [{"role": "user", "content": f"line {i}"} for i in range(3)]
    first = client.post("/v1/responses", json={"model": "tiny:1", "input": turns}).json()
    listed = client.get(f"/v1/responses/{first['id']}/input_items").json()
    assert listed["object"] == "list" and not listed["has_more"]
    texts = [item["content"][0]["text"] for item in listed["data"]]
    assert texts == ["line 2", "line 1", "line 0"]  # newest first, as OpenAI lists them
    assert listed["data"][0]["content"][0]["type"] == "input_text" and listed["data"][0]["type"] == "message"
    assert listed["first_id"] == listed["data"][0]["id"] and listed["last_id"] == listed["data"][-1]["id"]
    page = client.get(f"/v1/responses/{first['id']}/input_items?order=asc&limit=2").json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["line 0", "line 1"] and page["has_more"]
    rest = client.get(f"/v1/responses/{first['id']}/input_items?order=asc&after={page['last_id']}").json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["line 2"] and not rest["has_more"]
    second = client.post(
        "/v1/responses", json={"model": "tiny:1", "input": "and now?", "previous_response_id": first["id"]}
    ).json()
    own = client.get(f"/v1/responses/{second['id']}/input_items").json()["data"]
    assert [i["content"][0]["text"] for i in own] == ["and now?"]  # not the earlier turns
    assert client.get(f"/v1/responses/{first['id']}/input_items?after=msg_nope").status_code == 400
    assert client.get(f"/v1/responses/{first['id']}/input_items?limit=0").status_code == 400
    assert client.get(f"/v1/responses/{first['id']}/input_items?order=up").status_code == 400
    assert client.get("/v1/responses/resp_nope/input_items").status_code == 404
