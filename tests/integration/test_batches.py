"""Batch jobs on a real server with the real model: the official openai client's files and
batches APIs, a server killed mid-job and restarted, and `slm batch` against a URL and
against slm://MODEL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model
from tests.integration.conftest import MODEL, Server, start_server, stop_server, wait_until

FINAL = ("completed", "failed", "cancelled", "expired")


def lines(n: int, max_tokens: int = 4, prefix: str = "r") -> bytes:
    rows = []
    for i in range(n):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Say the number {i}."}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        rows.append(
            {"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def wait(client: openai.OpenAI, batch_id: str, timeout: float = 900) -> Any:
    def final() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in FINAL else None

    return wait_until(final, timeout, f"batch {batch_id} did not finish", every=0.5)


def completed(client: openai.OpenAI, batch_id: str, n: int, timeout: float = 600) -> None:
    """Wait until the batch has answered at least ``n`` lines (or ended)."""

    def enough() -> bool:
        batch = client.batches.retrieve(batch_id)
        counts = batch.request_counts
        return batch.status in FINAL or (counts is not None and counts.completed >= n)

    wait_until(enough, timeout, f"batch {batch_id} never answered {n} lines", every=0.1)


def answers(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(x) for x in client.files.content(file_id).content.splitlines()]


def ttft(url: str) -> float:
    """Seconds to the first streamed chunk after the role (informational, never asserted):
    greedy, and any chunk counts, since a sampled answer may end before any text."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi!"}],
        "max_tokens": 2,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as r:
        assert r.status_code == 200, r.read()
        chunks = (line for line in r.iter_lines() if line.startswith("data: {"))
        next(chunks, None)  # the role
        next(chunks, None)  # the first token, or the end
        return time.perf_counter() - start


def test_two_hundred_lines_through_the_openai_batches_api(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    try:
        idle = min(ttft(server.url) for _ in range(3))
        uploaded = client.files.create(file=("in.jsonl", lines(200)), purpose="batch")
        assert uploaded.purpose == "batch" and uploaded.bytes > 0
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"suite": "integration"},
        )  # fmt: skip
        completed(client, batch.id, 10)
        busy = [ttft(server.url) for _ in range(3)]  # interactive requests while the batch runs (no
        # assertion on them: how far the batch got meanwhile depends on the machine's load)
        done = wait(client, batch.id)
        print(f"\nTTFT idle {idle * 1000:.0f} ms, during the batch {[round(b * 1000) for b in busy]} ms")
        assert done.status == "completed" and done.error_file_id is None
        assert done.request_counts.total == 200 and done.request_counts.completed == 200
        assert done.metadata == {"suite": "integration"}
        got = answers(client, done.output_file_id)
        assert sorted(a["custom_id"] for a in got) == sorted(f"r{i}" for i in range(200))
        for a in got:
            body = a["response"]["body"]
            assert a["response"]["status_code"] == 200 and body["object"] == "chat.completion"
            assert body["usage"]["completion_tokens"] <= 4
        assert batch.id in [b.id for b in client.batches.list()]
        client.files.delete(uploaded.id)
    finally:
        client.close()


def test_a_killed_server_finishes_the_job_after_a_restart_without_duplicates(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ensure_default_model(ModelStore(models))
    first = start_server(models, tmp_path / "first.log", SLM_BATCH_CONCURRENCY="4")
    client = openai.OpenAI(base_url=f"{first.url}/v1", api_key="unused")
    try:
        uploaded = client.files.create(file=("in.jsonl", lines(60, max_tokens=12)), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        completed(client, batch.id, 8)
    finally:
        client.close()
        first.process.kill()  # no drain, no clean shutdown: lines in flight are lost mid-write
        first.process.wait()
    second = start_server(models, tmp_path / "second.log", SLM_BATCH_CONCURRENCY="4")
    client = openai.OpenAI(base_url=f"{second.url}/v1", api_key="unused")
    try:
        done = wait(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 60
        ids = [a["custom_id"] for a in answers(client, done.output_file_id)]
        assert len(ids) == 60 and sorted(ids) == sorted(f"r{i}" for i in range(60))
    finally:
        client.close()
        stop_server(second)


def test_cancel_keeps_what_finished(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    try:
        uploaded = client.files.create(file=("in.jsonl", lines(300, prefix="c")), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        completed(client, batch.id, 3)
        assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
        done = wait(client, batch.id)
        assert done.status == "cancelled" and 3 <= done.request_counts.completed < 300  # type: ignore[union-attr]
        assert len(answers(client, done.output_file_id)) == done.request_counts.completed  # type: ignore[union-attr]
    finally:
        client.close()


def write_input(path: Path, n: int) -> Path:
    rows = [
        {
            "custom_id": f"p{i}",
            "url": "/v1/completions",
            "body": {"model": "x", "prompt": f"{i} + 1 =", "max_tokens": 3},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("local", [False, True], ids=["url", "slm"])
def test_slm_batch_answers_a_file_and_resumes(server: Server, tmp_path: Path, local: bool) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 20), tmp_path / "out.jsonl"
    target = f"slm://{MODEL}" if local else server.url
    model = [] if local else ["--model", MODEL]
    result = server.cli("batch", "--json", str(src), "-o", str(out), "--target", target, *model, timeout=600)
    summary = json.loads(result.stdout)
    assert summary["completed"] == 20 and summary["left"] == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in rows) == sorted(f"p{i}" for i in range(20))
    assert all(r["response"]["status_code"] == 200 and r["response"]["body"]["model"] == MODEL for r in rows)
    again = json.loads(
        server.cli("batch", str(src), "-o", str(out), "--target", target, *model, "--json").stdout
    )
    assert again["skipped"] == 20 and again["completed"] == 0
    assert len(out.read_text().splitlines()) == 20


def test_slm_batch_without_a_server_says_so(tmp_path: Path, server: Server) -> None:
    src = write_input(tmp_path / "in.jsonl", 2)
    result = server.cli(
        "batch", str(src), "-o", str(tmp_path / "o.jsonl"), "--target", "http://127.0.0.1:9", check=False
    )
    assert result.returncode != 0 and "no server answers" in result.stderr
