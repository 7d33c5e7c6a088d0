"""The batch runner with a fake executor: every line answered once, across stops and
restarts, cancels and expiry; bad lines and error answers go to the error file."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from slmkit.batch.files import FileStore
from slmkit.batch.jobs import Job, JobStore
from slmkit.batch.lines import BatchLine, Limits
from slmkit.batch.runner import BatchRunner

CHAT = "/v1/chat/completions"
LIMITS = Limits(max_lines=1000, max_line_bytes=4096, max_depth=16)


def request(custom_id: str) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": custom_id}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}).encode()


class Executor:
    """Answers 200 with the line's content; ``hold`` lines wait for ``release``."""

    def __init__(self, hold: set[str] | None = None, busy: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.hold = hold or set()
        self.busy = dict(busy or {})  # custom_id -> how many 503s before an answer
        self.release = asyncio.Event()

    async def __call__(self, owner: str, line: BatchLine) -> tuple[int, dict[str, Any]]:
        self.calls.append(line.custom_id)
        await asyncio.sleep(0)  # an answer takes a trip through the event loop, as a real one does
        if line.custom_id in self.hold:
            await self.release.wait()
        if self.busy.get(line.custom_id, 0) > 0:
            self.busy[line.custom_id] -= 1
            return 503, {"error": {"message": "busy"}}
        if line.custom_id.startswith("bad"):
            return 400, {"error": {"message": "model: not found"}}
        return 200, {"id": f"chatcmpl-{line.custom_id}", "content": line.body["messages"][0]["content"]}


def setup(tmp_path: Path, lines: list[bytes], execute: Executor, **kw: Any) -> tuple[BatchRunner, Job]:
    files = FileStore(tmp_path / "files", 1 << 20, 10)
    jobs = JobStore(tmp_path / "batches", 5)
    record = files.create("k", "in.jsonl", "batch", io.BytesIO(b"\n".join(lines) + b"\n"))
    job = jobs.create("k", CHAT, record.id, "24h", None)
    return BatchRunner(jobs, files, execute, kw.pop("limits", LIMITS), kw.pop("concurrency", 3), **kw), job


def reopen(runner: BatchRunner, execute: Executor) -> tuple[BatchRunner, Job]:
    """A new runner on the same folders, as after a server restart."""
    jobs = JobStore(runner.jobs.root, 5)
    files = FileStore(runner.files.root, runner.files.max_bytes, 10)
    [job] = jobs.runnable()
    return BatchRunner(jobs, files, execute, LIMITS, 1, retry_delays=(0.0,)), job


def results(runner: BatchRunner, job: Job, kind: str = "output") -> list[dict[str, Any]]:
    file_id = job.output_file_id if kind == "output" else job.error_file_id
    if file_id is None:
        return []
    return [json.loads(x) for x in runner.files.path("k", file_id).read_bytes().splitlines()]


def test_every_line_is_answered_once_and_bad_lines_are_error_lines(tmp_path: Path) -> None:
    ex = Executor()
    lines = [request(f"r{i}") for i in range(20)] + [b"{oops", request("r3"), request("bad-1")]
    runner, job = setup(tmp_path, lines, ex)
    asyncio.run(runner.run(job))
    assert job.status == "completed" and job.to_openai()["completed_at"] is not None
    assert job.to_openai()["request_counts"] == {"total": 23, "completed": 20, "failed": 3}
    out = results(runner, job)
    assert sorted(r["custom_id"] for r in out) == sorted(f"r{i}" for i in range(20))
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in out)
    assert next(r for r in out if r["custom_id"] == "r7")["response"]["body"]["content"] == "r7"
    errors = results(runner, job, "error")
    assert {(e["custom_id"], (e["error"] or {}).get("code")) for e in errors} == {
        (None, "invalid_json"),
        ("r3", "duplicate_custom_id"),
        ("bad-1", None),
    }
    assert next(e for e in errors if e["custom_id"] == "bad-1")["response"]["status_code"] == 400
    assert sorted(ex.calls) == sorted([*(f"r{i}" for i in range(20)), "bad-1"])
    assert runner.files.get("k", job.output_file_id or "").purpose == "batch_output"
    assert not (runner.jobs.root / job.id).exists()  # the work folder is gone


def test_a_busy_answer_is_tried_again_not_recorded(tmp_path: Path) -> None:
    ex = Executor(busy={"r1": 2})
    runner, job = setup(tmp_path, [request("r0"), request("r1")], ex, retry_delays=(0.0, 0.0, 0.0))
    asyncio.run(runner.run(job))
    assert job.completed == 2 and job.failed == 0 and ex.calls.count("r1") == 3


def test_a_stopped_job_resumes_without_redoing_or_losing_a_line(tmp_path: Path) -> None:
    lines = [request(f"r{i}") for i in range(12)]
    first = Executor(hold={"r5"})
    runner, _ = setup(tmp_path, lines, first, concurrency=1)

    async def stop_midway() -> None:
        runner.start()
        while "r5" not in first.calls:
            await asyncio.sleep(0.01)
        await runner.stop()  # the server goes down while r5 is in flight

    asyncio.run(stop_midway())
    assert first.calls == [f"r{i}" for i in range(6)]
    second = Executor()
    runner2, job2 = reopen(runner, second)
    assert job2.status == "in_progress"
    asyncio.run(runner2.run(job2))
    assert second.calls == [f"r{i}" for i in range(5, 12)]  # r5 again: its answer was never written
    out = results(runner2, job2)
    assert sorted(r["custom_id"] for r in out) == sorted(f"r{i}" for i in range(12))
    assert job2.status == "completed" and job2.completed == 12


def test_a_line_torn_by_a_crash_is_done_again(tmp_path: Path) -> None:
    runner, job = setup(tmp_path, [request("r0"), request("r1")], Executor())
    job.move("in_progress")
    job.total = 2
    runner.jobs.save(job)
    work = runner.jobs.workdir(job)
    (work / "errors.jsonl").write_bytes(b"")
    done = {"custom_id": "r0", "response": {"status_code": 200, "body": {}}, "error": None}
    (work / "output.jsonl").write_bytes(json.dumps(done).encode() + b'\n{"custom_id": "r1", "respo')
    ex = Executor()
    runner2, job2 = reopen(runner, ex)
    asyncio.run(runner2.run(job2))
    assert ex.calls == ["r1"] and sorted(r["custom_id"] for r in results(runner2, job2)) == ["r0", "r1"]


def test_cancel_stops_new_lines_and_keeps_finished_ones(tmp_path: Path) -> None:
    ex = Executor(hold={"r2"})
    runner, job = setup(tmp_path, [request(f"r{i}") for i in range(10)], ex, concurrency=1)

    async def cancel_midway() -> None:
        task = asyncio.create_task(runner.run(job))
        while "r2" not in ex.calls:
            await asyncio.sleep(0.01)
        await runner.cancel(job)
        ex.release.set()  # r2, in flight, finishes and is kept
        await task

    asyncio.run(cancel_midway())
    assert job.status == "cancelled" and job.to_openai()["cancelling_at"] is not None
    assert [r["custom_id"] for r in results(runner, job)] == ["r0", "r1", "r2"]


def test_a_job_past_its_window_expires_with_what_it_finished(tmp_path: Path) -> None:
    now = [0.0]
    ex = Executor()
    runner, job = setup(
        tmp_path, [request(f"r{i}") for i in range(4)], ex, concurrency=1, clock=lambda: now[0]
    )
    now[0] = job.expires_at + 1
    asyncio.run(runner.run(job))
    assert job.status == "expired" and ex.calls == [] and job.output_file_id is None
    assert job.to_openai()["request_counts"] == {"total": 4, "completed": 0, "failed": 4}
    errors = results(runner, job, "error")
    assert [e["error"]["code"] for e in errors] == ["batch_expired"] * 4
    assert [e["custom_id"] for e in errors] == [f"r{i}" for i in range(4)]


def test_a_file_with_too_many_lines_fails_the_job(tmp_path: Path) -> None:
    runner, job = setup(
        tmp_path, [request(f"r{i}") for i in range(4)], Executor(), limits=Limits(3, 4096, 16)
    )
    asyncio.run(runner.run(job))
    assert job.status == "failed" and job.errors[0]["code"] == "too_many_lines"
    assert job.to_openai()["errors"]["data"][0]["message"].endswith("(SLM_BATCH_MAX_LINES)")


def test_a_deleted_input_file_fails_the_job(tmp_path: Path) -> None:
    runner, job = setup(tmp_path, [request("r0")], Executor())
    runner.files.delete("k", job.input_file_id)
    asyncio.run(runner.run(job))
    assert job.status == "failed" and "no such file" in job.errors[0]["message"]


def test_the_loop_runs_jobs_in_order_and_waits_for_new_ones(tmp_path: Path) -> None:
    ex = Executor()
    runner, first = setup(tmp_path, [request("a0"), request("a1")], ex)

    async def scenario() -> None:
        runner.start()
        while first.status != "completed":
            await asyncio.sleep(0.01)
        record = runner.files.create("k", "b.jsonl", "batch", io.BytesIO(request("b0") + b"\n"))
        second = runner.jobs.create("k", CHAT, record.id, "24h", None)
        runner.wake()
        while second.status != "completed":
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert sorted(ex.calls) == ["a0", "a1", "b0"]


def test_jobs_share_the_places_in_turn(tmp_path: Path) -> None:
    """A small job started after a big one is not stuck behind it: requests in flight are
    handed out in turn across the unfinished jobs."""
    ex = Executor()
    runner, big = setup(tmp_path, [request(f"big{i}") for i in range(30)], ex, concurrency=1)
    record = runner.files.create(
        "k2", "small.jsonl", "batch", io.BytesIO(b"\n".join(request(f"s{i}") for i in range(3)))
    )
    small = runner.jobs.create("k2", CHAT, record.id, "24h", None)

    async def answer(owner: str, line: BatchLine) -> tuple[int, dict[str, Any]]:
        await asyncio.sleep(0.01)  # answers take time (the small job reads its file meanwhile)
        return await ex(owner, line)

    runner.execute = answer

    async def scenario() -> None:
        runner.start()
        while small.status != "completed" or big.status != "completed":
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    last_small = max(i for i, c in enumerate(ex.calls) if c.startswith("s"))
    assert last_small < 10 and len(ex.calls) == 33  # interleaved, not after the 30 big ones


class Crashing(Executor):
    """Lines named ``poison*`` crash the model's worker every time they run: each request in
    flight at that moment (the poison and any it coincided with) gets 503 worker_crashed."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes = 0
        self.in_flight: set[str] = set()
        self.doomed: set[str] = set()

    async def __call__(self, owner: str, line: BatchLine) -> tuple[int, dict[str, Any]]:
        self.calls.append(line.custom_id)
        self.in_flight.add(line.custom_id)
        try:
            await asyncio.sleep(0)
            if line.custom_id.startswith("poison"):
                self.crashes += 1
                self.doomed |= self.in_flight
            await asyncio.sleep(0)
            if line.custom_id in self.doomed:
                self.doomed.discard(line.custom_id)
                return 503, {"error": {"message": "the worker crashed", "code": "worker_crashed"}}
            return 200, {"id": f"chatcmpl-{line.custom_id}", "content": "ok"}
        finally:
            self.in_flight.discard(line.custom_id)


def test_a_line_that_crashes_the_worker_is_tried_once_more_then_written_as_an_error(tmp_path: Path) -> None:
    ex = Crashing()
    runner, job = setup(tmp_path, [request(f"r{i}") for i in range(6)] + [request("poison-1")], ex)
    asyncio.run(runner.run(job))
    assert job.status == "completed" and ex.calls.count("poison-1") == 2 and ex.crashes == 2
    assert sorted(r["custom_id"] for r in results(runner, job)) == [
        f"r{i}" for i in range(6)
    ]  # innocents kept
    (error,) = results(runner, job, "error")
    assert error["custom_id"] == "poison-1" and error["error"]["code"] == "worker_crashed"
    assert error["response"]["status_code"] == 503 and "poison-1" in job.crashed
    # lines in flight with the poison's first run met its crash too: noted, tried again, kept
    assert set(job.crashed) <= {"poison-1"} | {f"r{i}" for i in range(6)}


def test_a_job_whose_lines_keep_crashing_the_worker_stops_and_fails(tmp_path: Path) -> None:
    ex = Crashing()
    lines = [request(f"poison-{i}") for i in range(10)] + [request(f"r{i}") for i in range(40)]
    runner, job = setup(tmp_path, lines, ex, max_crashes=3, concurrency=1)
    asyncio.run(runner.run(job))
    assert job.status == "failed" and job.crashes == 3 and ex.crashes == 6  # two crashes per line
    assert job.to_openai()["errors"]["data"][0]["code"] == "worker_crashes"
    assert "SLM_BATCH_MAX_CRASHES" in job.to_openai()["errors"]["data"][0]["message"]
    assert "r39" not in ex.calls  # it stopped taking lines
    assert len(results(runner, job, "error")) == 3  # what it did is kept


def test_a_line_that_crashed_once_before_a_restart_is_not_sent_twice_more(tmp_path: Path) -> None:
    ex = Crashing()
    runner, job = setup(tmp_path, [request("poison-1")], ex)
    job.move("in_progress")
    job.crashed.append("poison-1")  # it met a crash, then the server went down
    runner.jobs.save(job)
    again, job = reopen(runner, ex)
    asyncio.run(again.run(job))
    assert ex.calls == ["poison-1"] and job.status == "completed"
    assert results(again, job, "error")[0]["error"]["code"] == "worker_crashed"


def test_an_input_file_deleted_while_the_job_waits_fails_it_with_a_reason(tmp_path: Path) -> None:
    ex = Executor()
    runner, job = setup(tmp_path, [request(f"r{i}") for i in range(5)], ex)
    job.move("in_progress")
    runner.jobs.save(job)
    runner.files.delete("k", job.input_file_id)  # the owner deleted it; then a restart
    again, job = reopen(runner, ex)
    asyncio.run(asyncio.wait_for(again.run(job), 60))
    assert job.status == "failed" and job.to_openai()["errors"]["data"][0]["code"] == "input_file_missing"
    assert ex.calls == []


def test_what_a_thread_opened_for_a_cancelled_caller_is_closed() -> None:
    """A job cancelled while a thread opens its file: the thread is waited for and the file
    closed, not left to the collector once the loop has stopped (it was a rare test error)."""
    import threading

    from slmkit.batch.runner import _uncancelled

    async def scenario() -> list[str]:
        opened = threading.Event()  # the thread's open finishes only after the cancel
        closed: list[str] = []
        work = asyncio.get_running_loop().run_in_executor(None, lambda: opened.wait(30) and "file")
        task = asyncio.create_task(_uncancelled(work, closed.append))
        await asyncio.sleep(0)  # the task now waits on the thread
        task.cancel()
        opened.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return closed

    assert asyncio.run(scenario()) == ["file"]
