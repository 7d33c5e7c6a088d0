"""Running batch jobs: every unfinished job at once, sharing ``concurrency`` requests in
flight; the places are handed out in turn (a fair semaphore), so a small job is not stuck
behind another key's fifty-thousand-line one.

Each request goes through ``execute`` (the server passes the same serving code its HTTP
routes use, with batch priority, so batch work yields to interactive requests in the
scheduler). A 2xx answer is appended to the job's output file and anything else to its
error file, as it finishes; a request refused because the server is momentarily full
(503) is tried again later, never recorded as failed. Stopping the runner (server
shutdown) cancels the requests in flight without recording them, so a restart does them
again and nothing is lost or doubled.

A line cannot crash-loop a model. A request that met a worker crash (503
``worker_crashed``: every request in flight on that worker gets it, so the line may be
innocent) is noted in the job's record at once, and tried once more, alone among such
suspects; if that try crashes too, the line is written as a ``worker_crashed`` error and
never sent again, across restarts. A job with ``max_crashes`` such lines stops and fails,
saying why.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from slmkit.batch.files import FileStore
from slmkit.batch.jobs import FINAL, Job, JobStore, recover
from slmkit.batch.lease import Leases, OwnStore
from slmkit.batch.lines import BatchLine, Limits, LineError, read_lines
from slmkit.errors import FileNotFound, LimitExceeded, SlmError

T = TypeVar("T")

log = logging.getLogger("slmkit.batch")

# (owner, line) -> (HTTP status, response body): one request, answered as the API would
Execute = Callable[[str, BatchLine], Awaitable[tuple[int, dict[str, Any]]]]
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # seconds between tries of a 503 answer
SAVE_EVERY = 1.0  # seconds between progress writes of a job's record
READ_AHEAD = 64  # lines read per trip to a thread


class BatchRunner:
    def __init__(
        self,
        jobs: JobStore,
        files: FileStore,
        execute: Execute,
        limits: Limits,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[bool], None] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        max_crashes: int = 3,
        leases: Leases | None = None,
    ) -> None:
        self.jobs = jobs
        self.files = files
        self.execute = execute
        self.limits = limits
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.on_result = on_result  # called with True/False per finished request (metrics)
        self.retry_delays = retry_delays
        self.max_crashes = max(1, max_crashes)  # crashing lines that fail a job (SLM_BATCH_MAX_CRASHES)
        self.leases = leases or OwnStore()  # replicas sharing the store: one runs each job (lease.py)
        self._suspect: asyncio.Lock | None = None  # one line that met a crash is retried at a time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}  # job id -> its task
        self._places: asyncio.Semaphore | None = None  # requests in flight, all jobs together

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Cancel the work in flight (it is redone after a restart) and wait for it."""
        task, self._task = self._task, None
        tasks = [t for t in (task, *self._running.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        await self.leases.close()

    def wake(self) -> None:
        """A job was created or cancelled."""
        self._wake.set()

    async def cancel(self, job: Job) -> None:
        """Stop a job: no new requests start; those in flight finish and are kept. A job
        another replica runs is told so by a mark on the shared store, which it reads."""
        if job.status in ("validating", "in_progress"):
            if self.leases.shared and job.id not in self._running:
                await asyncio.to_thread(self.jobs.request_cancel, job)
            job.move("cancelling")
            await asyncio.to_thread(self.jobs.save, job)
            self.wake()

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        """Start a task for every unfinished job that has none (and whose lease this replica
        gets); wait for news, or with shared leases a third of a lease time, since jobs appear
        and holders die on other replicas."""
        shared = self.leases.shared
        while True:
            self._wake.clear()
            for job in await asyncio.to_thread(self.jobs.runnable):
                if job.id in self._running or not await self.leases.acquire(job.id):
                    continue
                fresh = await asyncio.to_thread(self.jobs.hold, job.id) if shared else job
                if fresh is None or fresh.status in FINAL:  # finished elsewhere meanwhile
                    await self._let_go(job.id)
                    continue
                self._running[job.id] = asyncio.create_task(self._guarded(fresh))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.leases.seconds / 3 if shared else None)

    async def _guarded(self, job: Job) -> None:
        task = asyncio.current_task()
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep(job.id, task, lost)) if self.leases.shared else None
        try:
            await self.run(job)
        except (SlmError, OSError) as exc:  # the store failed (a full disk): tried again later
            log.error("batch %s stopped: %s", job.id, exc)
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if not lost.is_set():
                raise  # stopping; a lost lease ends only this job's task
            log.warning("batch %s: its lease was lost; another replica runs it", job.id)
        finally:
            if keeper is not None:
                keeper.cancel()
            self._running.pop(job.id, None)
            await self._let_go(job.id)
            self.wake()

    async def _keep(self, job_id: str, task: asyncio.Task[None] | None, lost: asyncio.Event) -> None:
        """Renew the job's lease while it runs; when renewing fails, stop running it."""
        while True:
            await asyncio.sleep(self.leases.seconds / 3)
            if not await self.leases.renew(job_id):
                lost.set()
                if task is not None:
                    task.cancel()
                return

    async def _let_go(self, job_id: str) -> None:
        if self.leases.shared:
            self.jobs.let_go(job_id)
            await self.leases.release(job_id)

    async def _cancel_asked(self, job: Job) -> None:
        """A cancel asked on another replica (the shared store's mark): stop as cancel() does."""
        if not self.leases.shared or job.status != "in_progress":
            return
        if await asyncio.to_thread(self.jobs.cancel_requested, job) and job.status == "in_progress":
            job.move("cancelling")

    async def run(self, job: Job) -> None:
        """Take one job as far as it goes: validate, process, finalize. Its state changes
        happen here, on the event loop (cancel() moves it too); threads only do file work."""
        if job.status == "validating":
            checked = await asyncio.to_thread(self._check_lines, job)
            if job.status == "validating":  # not cancelled meanwhile
                if isinstance(checked, dict):
                    job.errors = [checked]
                    job.move("failed")
                else:
                    (job.total, job.failed), job.completed = checked, 0
                    job.move("in_progress")
                await asyncio.to_thread(self.jobs.save, job)
        if job.status == "in_progress":
            try:
                await self._process(job)
            except (FileNotFound, FileNotFoundError):
                job.halt("input_file_missing", "the job stopped: its input file was deleted while it ran")
                job.move("finalizing")
                await asyncio.to_thread(self.jobs.save, job)
        if job.status in ("finalizing", "cancelling"):
            await asyncio.to_thread(self._store_results, job)
            job.move("cancelled" if job.status == "cancelling" else job.ending)
            await asyncio.to_thread(self.jobs.save, job)
            await asyncio.to_thread(self.jobs.drop_workdir, job)

    # -- validating -----------------------------------------------------------------------
    def _check_lines(self, job: Job) -> tuple[int, int] | dict[str, Any]:
        """Write the bad lines to the error file (afresh); (lines, bad lines), or why the
        whole file is refused."""
        errors_path = self.jobs.workdir(job) / "errors.jsonl"
        total = failed = 0
        try:
            source = self.files.path(job.owner, job.input_file_id)
            with open(source, "rb") as fh, open(errors_path, "wb") as errors:
                for item in read_lines(fh, job.endpoint, self.limits):
                    total += 1
                    if isinstance(item, LineError):
                        failed += 1
                        _append(errors, item.record())
        except SlmError as exc:
            return {"code": _code(exc), "message": str(exc), "param": "input_file_id", "line": None}
        except OSError as exc:
            return {"code": "file_unreadable", "message": exc.strerror or "cannot read", "line": None}
        return total, failed

    # -- in progress ------------------------------------------------------------------------
    async def _process(self, job: Job) -> None:
        work = self.jobs.workdir(job)
        (done_ok, ok, _), (done_err, _, failed) = await asyncio.to_thread(
            lambda: (recover(work / "output.jsonl"), recover(work / "errors.jsonl"))
        )
        job.completed, job.failed = ok, failed
        done = done_ok | done_err
        pending = asyncio.Queue[BatchLine | None](maxsize=self.concurrency)
        async with ResultWriter(work) as writer:
            last_save = self.clock()

            async def worker() -> None:
                nonlocal last_save
                while (line := await pending.get()) is not None:
                    async with self._place():
                        if job.status != "in_progress" or job.halted:
                            continue  # cancelled or stopped while queued: never started
                        status, body, crashed = await self._answer(job, line)
                    record = {
                        "id": f"batch_req_{secrets.token_hex(12)}",
                        "custom_id": line.custom_id,
                        "response": {"status_code": status, "request_id": body.get("id", ""), "body": body},
                        "error": _CRASHED if crashed else None,
                    }
                    if crashed:
                        job.crashes += 1
                        if job.crashes >= self.max_crashes:
                            job.halt(
                                "worker_crashes",
                                f"the job stopped: {job.crashes} of its lines crashed the model's worker "
                                "twice each (SLM_BATCH_MAX_CRASHES)",
                            )
                    good = 200 <= status < 300
                    await writer.append(good, record)
                    job.completed += good
                    job.failed += not good
                    if self.on_result is not None:
                        self.on_result(good)
                    if self.clock() - last_save > SAVE_EVERY:
                        last_save = self.clock()
                        await self._cancel_asked(job)
                        await asyncio.to_thread(self.jobs.save, job)

            workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
            try:
                unsent = await self._feed(job, done, pending)
                for _ in workers:
                    await pending.put(None)
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            for line in unsent:  # the window closed before they ran: OpenAI lists them as expired
                await writer.append(False, _expired(line))
                job.failed += 1
        if job.status == "in_progress":  # not cancelled meanwhile
            job.move("finalizing")
        await asyncio.to_thread(self.jobs.save, job)

    async def _feed(
        self, job: Job, done: set[str], pending: asyncio.Queue[BatchLine | None]
    ) -> list[BatchLine]:
        """Put the job's unfinished lines in the queue until they run out, the job is
        cancelled or its window closes; the lines the closed window left unsent."""
        source = await asyncio.to_thread(self.files.path, job.owner, job.input_file_id)
        fh = await _open(source)
        unsent: list[BatchLine] = []
        try:
            items = read_lines(fh, job.endpoint, self.limits)
            while chunk := await asyncio.to_thread(_take, items, READ_AHEAD):
                await self._cancel_asked(job)
                for item in chunk:
                    if job.status != "in_progress" or job.halted:
                        return unsent
                    if not isinstance(item, BatchLine) or item.custom_id in done:
                        continue
                    if self.clock() > job.expires_at:
                        job.ending = "expired"
                        unsent.append(item)
                    else:
                        await pending.put(item)
            return unsent
        finally:
            fh.close()

    def _place(self) -> asyncio.Semaphore:
        """The shared places for requests in flight (made on the running loop)."""
        if self._places is None:
            self._places = asyncio.Semaphore(self.concurrency)
        return self._places

    async def _answer(self, job: Job, line: BatchLine) -> tuple[int, dict[str, Any], bool]:
        """The line's answer, and whether it is its second worker crash. A line that meets a
        crash (now, or before a restart) is tried once more, while no other such line runs:
        if it crashes again, it is the likely cause and is not tried again."""
        if line.custom_id not in job.crashed:
            status, body, crashed = await self._tries(job, line)
            if not crashed:
                return status, body, False
            job.crashed.append(line.custom_id)
            await asyncio.to_thread(self.jobs.save, job)  # noted before it is sent again
        if self._suspect is None:
            self._suspect = asyncio.Lock()
        async with self._suspect:
            return await self._tries(job, line)

    async def _tries(self, job: Job, line: BatchLine) -> tuple[int, dict[str, Any], bool]:
        """The line's answer, a 503 (busy, a worker restarting) tried again a few times, and
        whether the answer says the worker crashed under it (never tried again here)."""
        for delay in (*self.retry_delays, None):
            status, body = await self.execute(job.owner, line)
            crashed = _crashed(status, body)
            if crashed or status != 503 or delay is None:
                return status, body, crashed
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # -- finalizing -------------------------------------------------------------------------
    def _store_results(self, job: Job) -> None:
        work = self.jobs.workdir(job)
        job.output_file_id = self._store_result(job, "output", work / "output.jsonl")
        job.error_file_id = self._store_result(job, "error", work / "errors.jsonl")

    def _store_result(self, job: Job, kind: str, path: Path) -> str | None:
        file_id = job.output_file(kind)
        with contextlib.suppress(SlmError):
            return self.files.get(job.owner, file_id).id  # stored before a crash
        if not path.exists() or path.stat().st_size == 0:
            return None
        recover(path)  # no torn line goes out
        return self.files.adopt(job.owner, path, f"{job.id}_{kind}.jsonl", "batch_output", file_id).id


class ResultWriter:
    """A job's output and error files, appended to by a thread of their own: the event loop
    never waits on the disk, and lines keep the order they were answered in."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slm-batch-writer")
        self._files: tuple[IO[bytes], IO[bytes]] | None = None

    async def __aenter__(self) -> ResultWriter:
        self._files = await _uncancelled(self._run(_open_results, self.work), _close_all)
        return self

    async def append(self, good: bool, record: dict[str, Any]) -> None:
        assert self._files is not None
        await self._run(_append, self._files[0] if good else self._files[1], record)

    async def __aexit__(self, *exc: object) -> None:
        files, self._files = self._files, None
        try:
            if files is not None:  # closed in the writer's thread, after every line it was given
                await _uncancelled(self._run(_close_all, files), lambda _: None)
        finally:
            self._thread.shutdown(wait=False)

    def _run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def _open_results(work: Path) -> tuple[IO[bytes], IO[bytes]]:
    out = open(work / "output.jsonl", "ab")  # noqa: SIM115 (ResultWriter closes them)
    try:
        return out, open(work / "errors.jsonl", "ab")
    except BaseException:
        out.close()
        raise


def _close_all(files: IO[bytes] | tuple[IO[bytes], ...]) -> None:
    for f in files if isinstance(files, tuple) else (files,):
        f.close()


def _append(fh: IO[bytes], record: dict[str, Any]) -> None:
    fh.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    fh.flush()


_CRASHED = {
    "code": "worker_crashed",
    "message": "The model's worker crashed twice while answering this request; it is not tried again.",
}


def _crashed(status: int, body: dict[str, Any]) -> bool:
    """Whether an answer says the model's worker died under the request."""
    error = body.get("error")
    return status == 503 and isinstance(error, dict) and error.get("code") == "worker_crashed"


def _expired(line: BatchLine) -> dict[str, Any]:
    message = "This request could not be executed before the completion window expired."
    return {
        "id": f"batch_req_{secrets.token_hex(12)}",
        "custom_id": line.custom_id,
        "response": None,
        "error": {"code": "batch_expired", "message": message},
    }


def _take(items: Iterator[BatchLine | LineError], n: int) -> list[BatchLine | LineError]:
    out: list[BatchLine | LineError] = []
    for item in items:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _code(exc: Exception) -> str:
    if isinstance(exc, LimitExceeded):
        return "too_many_lines"
    return getattr(exc, "code", None) or "invalid_file"


async def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading off the event loop."""
    return await _uncancelled(asyncio.to_thread(_read_open, path), _close_all)


async def _uncancelled(work: Awaitable[T], undo: Callable[[T], object]) -> T:
    """Await ``work`` (a thread's); if the caller is cancelled meanwhile, still wait for it
    and ``undo`` what it made (close a file it opened), so nothing is left to the collector
    when the loop stops, then re-raise the cancellation."""
    running = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            undo(await running)
        raise


def _read_open(path: Path) -> BinaryIO:
    return open(path, "rb")
