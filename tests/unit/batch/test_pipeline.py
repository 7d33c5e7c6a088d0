"""`slm batch`'s loop with a fake sender: resumable, nothing twice, transient failures left
for the next run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from slmkit.batch.lines import Limits
from slmkit.batch.pipeline import Summary, run_file
from slmkit.errors import ServerUnavailable

LIMITS = Limits(1000, 4096, 16)


def write_input(path: Path, n: int, extra: list[bytes] | None = None) -> Path:
    rows = [
        json.dumps(
            {"custom_id": f"r{i}", "url": "/v1/completions", "body": {"model": "m", "prompt": str(i)}}
        ).encode()
        for i in range(n)
    ]
    path.write_bytes(b"\n".join(rows + (extra or [])) + b"\n")
    return path


class Sender:
    def __init__(self, fail: dict[str, int] | None = None, down: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = dict(fail or {})  # prompt -> transient failures before success
        self.down = down

    async def __call__(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.down:
            raise ServerUnavailable("no server")
        self.calls.append(body)
        if self.fail.get(body["prompt"], 0) > 0:
            self.fail[body["prompt"]] -= 1
            return 503, {"error": {"message": "busy"}}
        if body["prompt"] == "bad":
            return 400, {"error": {"message": "prompt: bad"}}
        return 200, {"id": "cmpl-" + body["prompt"], "model": body["model"], "text": body["prompt"] * 2}


def go(src: Path, out: Path, send: Sender, **kw: Any) -> Summary:
    return asyncio.run(run_file(src, out, send, LIMITS, retry_delays=(0.0,), **kw))


def read(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.read_bytes().splitlines()]


def test_every_line_is_answered_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 25), tmp_path / "out.jsonl"
    s = go(src, out, Sender(), concurrency=4)
    assert (s.total, s.completed, s.failed, s.left) == (25, 25, 0, 0)
    rows = read(out)
    assert sorted(r["custom_id"] for r in rows) == sorted(f"r{i}" for i in range(25))
    assert next(r for r in rows if r["custom_id"] == "r7")["response"]["body"]["text"] == "77"
    again = Sender()
    s = go(src, out, again)
    assert s.skipped == 25 and again.calls == [] and len(read(out)) == 25


def test_model_replaces_each_bodys_model(tmp_path: Path) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 2), tmp_path / "out.jsonl"
    send = Sender()
    go(src, out, send, model="smollm2:135m")
    assert {c["model"] for c in send.calls} == {"smollm2:135m"}


def test_transient_failures_are_retried_then_left_for_the_next_run(tmp_path: Path) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    s = go(src, out, Sender(fail={"1": 1, "2": 5}))
    assert (s.completed, s.left) == (2, 1) and sorted(r["custom_id"] for r in read(out)) == ["r0", "r1"]
    s = go(src, out, Sender())
    assert (s.skipped, s.completed, s.left) == (2, 1, 0) and len(read(out)) == 3


def test_errors_are_written_once_bad_lines_included(tmp_path: Path) -> None:
    bad = json.dumps({"custom_id": "b", "url": "/v1/completions", "body": {"model": "m", "prompt": "bad"}})
    src = write_input(tmp_path / "in.jsonl", 1, [bad.encode(), b"{oops", b'{"custom_id": "w", "url": "/x"}'])
    out = tmp_path / "out.jsonl"
    s = go(src, out, Sender())
    assert (s.completed, s.failed) == (1, 3)
    by_id = {r["custom_id"]: r for r in read(out)}
    assert by_id["b"]["response"]["status_code"] == 400 and by_id["w"]["error"]["code"] == "invalid_url"
    assert by_id[None]["error"]["code"] == "invalid_json"
    go(src, out, Sender())
    assert len(read(out)) == 4  # nothing written twice, the id-less error included


def test_a_torn_last_line_is_cut_and_its_request_sent_again(tmp_path: Path) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 2), tmp_path / "out.jsonl"
    go(src, out, Sender())
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 10])  # the process died while writing the second answer
    send = Sender()
    go(src, out, send)
    assert len(send.calls) == 1 and sorted(r["custom_id"] for r in read(out)) == ["r0", "r1"]


def test_no_server_is_an_error_not_a_file_of_failures(tmp_path: Path) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    with pytest.raises(ServerUnavailable):
        go(src, out, Sender(down=True))
    assert not out.exists() or out.read_bytes() == b""
