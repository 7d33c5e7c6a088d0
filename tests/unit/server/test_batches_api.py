"""/v1/files and /v1/batches through the app, with a fake worker: upload, run, download;
owners, limits and bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.security.keys import KeyStore
from slmkit.server.app import create_app
from slmkit.store import ModelStore
from tests.unit.server.fakes import FakeWorker, make_config


def jsonl(*rows: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def chat_line(custom_id: str, content: str = "hi", model: str = "tiny:1") -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


@pytest.fixture
def app_client(tmp_path: Path, store: ModelStore) -> Iterator[tuple[TestClient, dict[str, str]]]:
    config = make_config(tmp_path, default_model="tiny:1", file_max_bytes=4096, files_per_key=3)
    keys = KeyStore(config.keys_file)
    secrets = {name: keys.create("inference", name=name)[1] for name in ("alice", "bob")}
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        yield c, {k: f"Bearer {v}" for k, v in secrets.items()}


def upload(client: TestClient, auth: str, data: bytes, purpose: str = "batch") -> Any:
    return client.post(
        "/v1/files",
        headers={"Authorization": auth},
        data={"purpose": purpose},
        files={"file": ("../../in.jsonl", data, "application/jsonl")},
    )


def wait_done(client: TestClient, auth: str, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/batches/{batch_id}", headers={"Authorization": auth}).json()
        if job["status"] in ("completed", "failed", "cancelled", "expired"):
            return dict(job)
        time.sleep(0.05)
    raise AssertionError("the batch did not finish")


def test_a_batch_runs_end_to_end(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = app_client
    rows = [chat_line(f"r{i}", f"hello {i}") for i in range(6)]
    rows += [chat_line("nomodel", model="missing:1"), {"custom_id": "x", "url": "/v1/embeddings", "body": {}}]
    up = upload(client, auth["alice"], jsonl(*rows))
    assert up.status_code == 200, up.text
    f = up.json()
    assert f["object"] == "file" and f["filename"] == "in.jsonl" and f["bytes"] == len(jsonl(*rows))
    made = client.post(
        "/v1/batches",
        headers={"Authorization": auth["alice"]},
        json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h",
              "metadata": {"run": "1"}},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    job = wait_done(client, auth["alice"], made.json()["id"])
    assert job["status"] == "completed" and job["metadata"] == {"run": "1"}
    assert job["request_counts"] == {"total": 8, "completed": 6, "failed": 2}
    out = client.get(f"/v1/files/{job['output_file_id']}/content", headers={"Authorization": auth["alice"]})
    answers = [json.loads(x) for x in out.content.splitlines()]
    assert sorted(a["custom_id"] for a in answers) == [f"r{i}" for i in range(6)]
    assert all(a["response"]["body"]["object"] == "chat.completion" for a in answers)
    errs = client.get(f"/v1/files/{job['error_file_id']}/content", headers={"Authorization": auth["alice"]})
    by_id = {e["custom_id"]: e for e in map(json.loads, errs.content.splitlines())}
    assert by_id["nomodel"]["response"]["status_code"] == 404
    assert by_id["x"]["error"]["code"] == "invalid_url"
    listed = client.get("/v1/batches", headers={"Authorization": auth["alice"]}).json()
    assert [b["id"] for b in listed["data"]] == [job["id"]] and listed["has_more"] is False
    files = client.get("/v1/files", headers={"Authorization": auth["alice"]}).json()["data"]
    assert {x["purpose"] for x in files} == {"batch", "batch_output"}


def test_another_key_sees_nothing(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = app_client
    f = upload(client, auth["alice"], jsonl(chat_line("a"))).json()
    bob = {"Authorization": auth["bob"]}
    assert client.get(f"/v1/files/{f['id']}", headers=bob).status_code == 404
    assert client.get(f"/v1/files/{f['id']}/content", headers=bob).status_code == 404
    assert client.delete(f"/v1/files/{f['id']}", headers=bob).status_code == 404
    assert client.get("/v1/files", headers=bob).json()["data"] == []
    made = client.post(
        "/v1/batches", headers=bob, json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}
    )
    assert made.status_code == 404
    mine = client.post(
        "/v1/batches",
        headers={"Authorization": auth["alice"]},
        json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"},
    ).json()
    assert client.get(f"/v1/batches/{mine['id']}", headers=bob).status_code == 404
    assert client.post(f"/v1/batches/{mine['id']}/cancel", headers=bob).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endpoint": "/v1/responses"}, "endpoint"),
        ({"endpoint": "/v1/chat/completions", "completion_window": "1h"}, "completion_window"),
        ({"endpoint": "/v1/chat/completions", "metadata": {"k": "v" * 600}}, "metadata"),
        ({"endpoint": "/v1/chat/completions", "extra": 1}, "extra"),
    ],
)
def test_bad_batch_requests_name_the_field(
    app_client: tuple[TestClient, dict[str, str]], body: dict[str, Any], field: str
) -> None:
    client, auth = app_client
    f = upload(client, auth["alice"], jsonl(chat_line("a"))).json()
    r = client.post(
        "/v1/batches", headers={"Authorization": auth["alice"]}, json={"input_file_id": f["id"], **body}
    )
    assert r.status_code == 400 and field in r.json()["error"]["message"]


def test_uploads_are_bounded(app_client: tuple[TestClient, dict[str, str]], tmp_path: Path) -> None:
    client, auth = app_client
    big = upload(client, auth["alice"], b"x" * 5000)
    assert big.status_code == 413 and "SLM_FILE_MAX_BYTES" in big.json()["error"]["message"]
    assert upload(client, auth["alice"], b"{}", purpose="fine-tune").status_code == 400
    no_file = client.post("/v1/files", headers={"Authorization": auth["alice"]}, data={"purpose": "batch"})
    assert no_file.status_code == 400 and "file" in no_file.json()["error"]["message"]
    for _ in range(3):
        assert upload(client, auth["alice"], b"{}").status_code == 200
    over = upload(client, auth["alice"], b"{}")
    assert over.status_code == 400 and "SLM_FILES_PER_KEY" in over.json()["error"]["message"]
    leftovers = [p for p in (tmp_path / "models" / "files").iterdir() if p.name.startswith(".partial")]
    assert leftovers == []


def test_a_non_batch_file_cannot_start_a_batch(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = app_client
    f = upload(client, auth["alice"], jsonl(chat_line("a")), purpose="user_data").json()
    r = client.post(
        "/v1/batches",
        headers={"Authorization": auth["alice"]},
        json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"},
    )
    assert r.status_code == 400 and "purpose" in r.json()["error"]["message"]


def test_deleting_a_file_removes_it(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = app_client
    h = {"Authorization": auth["alice"]}
    f = upload(client, auth["alice"], b"{}\n").json()
    assert client.delete(f"/v1/files/{f['id']}", headers=h).json() == {
        "id": f["id"],
        "object": "file",
        "deleted": True,
    }
    assert client.get(f"/v1/files/{f['id']}", headers=h).status_code == 404


def test_a_chunked_upload_without_a_length_is_cut_at_the_limit(
    app_client: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = app_client
    boundary = "slmboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # no Content-Length: the transfer is chunked
        yield head
        for _ in range(200):
            yield b"x" * 1024  # 200 KiB against a 4 KiB file limit (+64 KiB for the form)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/v1/files",
        headers={"Authorization": auth["alice"], "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )
    assert r.status_code == 413 and "SLM_FILE_MAX_BYTES" in r.json()["error"]["message"]
    assert client.get("/v1/files", headers={"Authorization": auth["alice"]}).json()["data"] == []
    stored = tmp_path / "models" / "files"
    assert not stored.exists() or not any(p.name.startswith(".partial") for p in stored.iterdir())


def test_batch_work_shows_in_the_metrics(client: TestClient) -> None:
    import re

    f = client.post(
        "/v1/files",
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", jsonl(chat_line("a"), chat_line("b")))},
    ).json()
    made = client.post(
        "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}
    ).json()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/batches/{made['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = client.get("/metrics").text
    assert 'slm_batch_requests_total{result="completed"} 2.0' in text
    generated = re.search(r'^slm_generation_tokens_total\{model="tiny:1"\} (\S+)$', text, re.MULTILINE)
    assert generated is not None and float(generated.group(1)) > 0  # batch tokens are counted
