"""Batch jobs on a store that replicas share (SLM_BATCH_LEASES, a real redis-server): each
job is run by exactly one replica, another takes it over when the holder stops renewing,
and a cancel asked on any replica reaches the one running it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmkit.batch.files import FileStore
from slmkit.batch.jobs import FINAL, JobStore
from slmkit.batch.lease import RedisLeases
from slmkit.batch.runner import BatchRunner
from tests.redis_server import redis_server
from tests.unit.batch.test_runner import CHAT, LIMITS, Executor, request, results

LEASE = 3.0  # seconds: long enough that a busy machine's stalls never lose one
SHORT = 0.6  # the dying holder's: a takeover happens soon


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def replica(root: Path, url: str, execute: Executor, prefix: str, lease: float = LEASE) -> BatchRunner:
    leases = RedisLeases(url, seconds=lease, prefix=prefix)
    files = FileStore(root / "files", 1 << 20, 10)
    jobs = JobStore(root / "batches", 5, shared=True)
    return BatchRunner(jobs, files, execute, LIMITS, 2, retry_delays=(0.0,), leases=leases)


def submit(root: Path, name: str, lines: int) -> str:
    files = FileStore(root / "files", 1 << 20, 10)
    body = b"\n".join(request(f"{name}{i}") for i in range(lines)) + b"\n"
    record = files.create("k", f"{name}.jsonl", "batch", io.BytesIO(body))
    return JobStore(root / "batches", 5).create("k", CHAT, record.id, "24h", None).id


async def until(check: object, what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def finished(root: Path) -> bool:
    """Every job's record, read afresh, says it is over."""
    return all(j.status in FINAL for j in JobStore(root / "batches", 5).owned("k"))


def test_each_job_is_run_by_exactly_one_replica(tmp_path: Path, redis_url: str) -> None:
    ids = [submit(tmp_path, name, 6) for name in ("a", "b", "c")]
    ex1, ex2 = Executor(), Executor()

    async def go() -> None:
        one, two = (replica(tmp_path, redis_url, ex, "t1:") for ex in (ex1, ex2))
        one.start()
        two.start()
        await until(lambda: finished(tmp_path), "the jobs never finished")
        await one.stop()
        await two.stop()

    asyncio.run(go())
    calls = ex1.calls + ex2.calls
    assert sorted(calls) == sorted(f"{n}{i}" for n in "abc" for i in range(6))  # none twice
    jobs = JobStore(tmp_path / "batches", 5)
    runner = replica(tmp_path, redis_url, Executor(), "t1:")
    for job_id in ids:
        job = jobs.get("k", job_id)
        assert job.status == "completed" and job.completed == 6
        assert len(results(runner, job)) == 6


def test_another_replica_takes_over_a_job_whose_holder_died(tmp_path: Path, redis_url: str) -> None:
    submit(tmp_path, "r", 8)
    first = Executor(hold={"r3"})
    second = Executor()

    async def go() -> None:
        holder = replica(tmp_path, redis_url, first, "t2:", lease=SHORT)
        holder.start()
        await until(lambda: "r3" in first.calls, "the holder never started")

        async def dead(job_id: str) -> None:  # a killed process gives nothing back
            return None

        holder.leases.release = dead  # type: ignore[method-assign]
        await holder.stop()  # its lines in flight are lost with it; it stops renewing
        other = replica(tmp_path, redis_url, second, "t2:")
        other.start()
        await until(lambda: finished(tmp_path), "nobody took the job over")
        await other.stop()

    asyncio.run(go())
    assert "r3" in second.calls and "r0" not in second.calls  # resumed, not restarted
    job = JobStore(tmp_path / "batches", 5).owned("k")[0]
    runner = replica(tmp_path, redis_url, Executor(), "t2:")
    out = [r["custom_id"] for r in results(runner, job)]
    assert sorted(out) == sorted(f"r{i}" for i in range(8)) and job.completed == 8


def test_a_cancel_asked_on_another_replica_stops_the_holder(tmp_path: Path, redis_url: str) -> None:
    job_id = submit(tmp_path, "x", 200)
    ex = Executor(hold={"x2", "x3"})  # both of the holder's places busy: the rest waits

    async def go() -> None:
        holder = replica(tmp_path, redis_url, ex, "t3:")
        holder.start()
        await until(lambda: {"x2", "x3"} <= set(ex.calls), "the holder never started")
        other = replica(tmp_path, redis_url, Executor(), "t3:")  # not started: it only answers the API
        await other.cancel(other.jobs.get("k", job_id))
        ex.release.set()
        await until(lambda: finished(tmp_path), "the cancel never reached the holder")
        await holder.stop()
        await other.stop()

    asyncio.run(go())
    job = JobStore(tmp_path / "batches", 5).get("k", job_id)
    assert job.status == "cancelled" and job.completed < 200
