"""The API process's handle on one worker process (Ollama's runner, vLLM's engine client).

A reader thread receives the worker's messages and hands each request's events to that
request's asyncio queue. When the pipe closes unexpectedly every waiting request gets a
WorkerCrashed error; the process that owns the API never imports llama_cpp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil

from slmkit.config import worker_environment
from slmkit.errors import ModelLoadError, SlmError, WorkerCrashed
from slmkit.logs import FIELDS
from slmkit.pipe import EngineRequest, Event, Failed, Finished, LoadSpec, ModelInfo, TextDelta

log = logging.getLogger("slmkit.worker")


class WorkerProcess:
    def __init__(
        self,
        spec: LoadSpec,
        template: str | None,
        options: dict[str, Any],
        target: Callable[..., None] | None = None,
    ) -> None:
        self.spec = spec
        self._target = target  # the worker's entry point; tests pass stand-ins
        self._template = template
        self._options = options
        self._ctx = multiprocessing.get_context("spawn")
        self._conn: Any = None
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._embedding = 0  # embedding jobs in the worker (in_flight)
        self._call_ids = itertools.count()
        self._send_lock = threading.Lock()
        self._dead: str | None = None  # why the worker is gone
        self._stopping: str | None = None  # why we asked it to stop
        self.info: ModelInfo | None = None
        self.kv_tokens = 0  # tokens in the worker's KV cells, as of its last step
        self.preemptions = 0  # sequences its scheduler preempted (a slot or cells for another)

    @property
    def alive(self) -> bool:
        return self._dead is None and self._process is not None and self._process.is_alive()

    @property
    def in_flight(self) -> int:
        """Requests sent to the worker and not finished: generations and embedding jobs."""
        return len(self._queues) + self._embedding

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self, timeout: float) -> ModelInfo:
        target = self._target or _worker_entry
        self._loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=True)
        output, output_end = self._ctx.Pipe(duplex=False)  # the worker's stdout and stderr
        self._conn = parent
        self._process = self._ctx.Process(
            target=_with_output,
            args=(target, output_end, child, self.spec, self._template, self._options),
            daemon=True,
            name="slm-worker",
        )
        with worker_environment():  # the worker inherits no tokens or keys
            self._process.start()
        child.close()
        output_end.close()
        threading.Thread(
            target=_log_output, args=(output, self._process.pid), name="slm-worker-output", daemon=True
        ).start()
        try:
            ready = await asyncio.to_thread(parent.poll, timeout)
            if not ready:
                raise ModelLoadError(f"the model did not load within {timeout:g}s (SLM_LOAD_TIMEOUT)")
            message = await asyncio.to_thread(parent.recv)
        except (EOFError, OSError) as exc:
            code = await asyncio.to_thread(self._exit_code)
            if code is not None and code < 0:
                raise ModelLoadError(
                    f"the model worker crashed while loading (signal {-code}); "
                    "the model file is probably corrupt or not supported"
                ) from exc
            raise ModelLoadError(f"the model worker exited while loading (exit code {code})") from exc
        except ModelLoadError:
            await self.stop()
            raise
        if message[0] == "load_error":
            await self.stop()
            error = message[1]
            raise error if isinstance(error, SlmError) else ModelLoadError(str(error))
        info: ModelInfo = message[1]
        try:
            info = dataclasses.replace(
                info, memory_bytes=int(psutil.Process(self._process.pid).memory_info().rss)
            )
        except psutil.Error:
            pass
        self.info = info
        threading.Thread(target=self._read, name="slm-worker-reader", daemon=True).start()
        return info

    def _exit_code(self) -> int | None:
        self._process.join(timeout=5)
        return int(self._process.exitcode) if self._process.exitcode is not None else None

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._dead is not None:
            raise WorkerCrashed(self._dead)
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError) as exc:
            raise WorkerCrashed("the model worker is not running") from exc

    def _read(self) -> None:
        assert self._loop is not None
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._loop.call_soon_threadsafe(self._dispatch, message)
            except RuntimeError:  # event loop closed
                return
        code = self._exit_code()
        reason = self._stopping or f"the model worker crashed (exit code {code})"
        try:
            self._loop.call_soon_threadsafe(self._fail_all, reason)
        except RuntimeError:
            pass

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "events":
            if len(message) > 3:
                self.kv_tokens, self.preemptions = message[2], message[3]
            for request_id, event in message[1]:
                queue = self._queues.get(request_id)
                if queue is not None:
                    queue.put_nowait(event)
        elif kind == "threads" and self.info is not None:
            self.info = dataclasses.replace(self.info, n_threads=message[1])
        elif kind in {"result", "result_error"}:
            future = self._calls.pop(message[1], None)
            if future is not None and not future.done():
                if kind == "result":
                    future.set_result(message[2])
                else:
                    future.set_exception(message[2])

    def _fail_all(self, reason: str) -> None:
        self._dead = reason
        for queue in self._queues.values():
            queue.put_nowait(Failed(WorkerCrashed(reason)))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(WorkerCrashed(reason))
        self._calls.clear()

    async def generate(self, request: EngineRequest) -> AsyncIterator[Event]:
        """Events of one request; closing the iterator early aborts it in the worker."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues[request.request_id] = queue
        finished = False
        try:
            self._send(("generate", request))
            pending: deque[Event] = deque()
            while True:
                if not pending:
                    pending.append(await queue.get())
                while not queue.empty():
                    pending.append(queue.get_nowait())
                event = _coalesce(pending)
                if isinstance(event, Finished | Failed):
                    finished = True
                yield event
                if finished:
                    return
        finally:
            self._queues.pop(request.request_id, None)
            if not finished and self._dead is None:
                try:
                    self._send(("abort", request.request_id))
                except WorkerCrashed:
                    pass

    def end(self, request_id: str) -> None:
        """Stop a request now: the worker finishes it ("cancelled") and its Finished event,
        with the stats so far, reaches the request's stream as usual."""
        if request_id in self._queues and self._dead is None:
            try:
                self._send(("abort", request_id))
            except WorkerCrashed:
                pass  # the crash reaches the stream as its Failed event

    async def tokenize(self, text: str, add_special: bool) -> list[int]:
        tokens: list[int] = await self._call("tokenize", text, add_special)
        return tokens

    async def detokenize(self, tokens: list[int]) -> str:
        text: str = await self._call("detokenize", tokens)
        return text

    async def render(self, request: EngineRequest) -> list[int]:
        tokens: list[int] = await self._call("render", request)
        return tokens

    async def _call(self, kind: str, *args: Any, cancel: str | None = None) -> Any:
        """A request the worker answers with ("result", call_id, value); when the caller goes
        away first, ``cancel`` (a message kind) tells the worker to drop the rest."""
        assert self._loop is not None
        call_id = next(self._call_ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._calls[call_id] = future
        try:
            self._send((kind, call_id, *args))
        except WorkerCrashed:
            self._calls.pop(call_id, None)
            raise
        try:
            return await future
        except asyncio.CancelledError:
            if cancel is not None and self._dead is None:
                try:
                    self._send((cancel, call_id))
                except WorkerCrashed:
                    pass
            raise
        finally:
            self._calls.pop(call_id, None)

    async def embed(self, texts: list[str], priority: int = 0) -> tuple[list[list[float]], int]:
        """Vectors and tokens read; ``priority`` as for generation (batch jobs: 1, after
        interactive embedding jobs)."""
        self._embedding += 1
        try:
            result: tuple[list[list[float]], int] = await self._call(
                "embed", texts, priority, cancel="cancel_embed"
            )
        finally:
            self._embedding -= 1
        return result

    async def rank(
        self, pairs: list[tuple[str, str]], priority: int = 0, max_doc_tokens: int = 0
    ) -> tuple[list[float], int]:
        """A cross-encoder's score for each (query, document) pair (each document cut to
        ``max_doc_tokens`` when set), and tokens read; run as embedding jobs are."""
        self._embedding += 1
        try:
            result: tuple[list[float], int] = await self._call(
                "rank", pairs, priority, max_doc_tokens, cancel="cancel_embed"
            )
        finally:
            self._embedding -= 1
        return result

    async def stop(self, timeout: float = 5.0, reason: str = "the model was unloaded") -> None:
        """Ask the worker to exit (killing it after ``timeout``); requests still in flight
        end with WorkerCrashed(``reason``)."""
        if self._process is None:
            return
        self._stopping = self._stopping or reason
        if self._process.is_alive():
            try:
                self._send(("shutdown",))
            except WorkerCrashed:
                pass
            await asyncio.to_thread(self._process.join, timeout)
            if self._process.is_alive():
                self._process.kill()
                await asyncio.to_thread(self._process.join, timeout)
        self._dead = self._dead or reason
        try:
            self._conn.close()
        except OSError:
            pass


def _coalesce(pending: deque[Event]) -> Event:
    """The next event, with the text deltas right behind it merged in: when the reader lags
    behind the worker (many streams, a slow client) it writes one chunk instead of many."""
    event = pending.popleft()
    if not isinstance(event, TextDelta) or not pending or not isinstance(pending[0], TextDelta):
        return event
    text, tokens, logprobs = [event.text], event.tokens, list(event.logprobs)
    while pending and isinstance(pending[0], TextDelta):
        following = pending.popleft()
        assert isinstance(following, TextDelta)
        text.append(following.text)
        tokens += following.tokens
        logprobs += following.logprobs
    return TextDelta("".join(text), tokens, tuple(logprobs))


def _with_output(target: Callable[..., None], output: Any, *args: Any) -> None:
    """In the worker: its stdout and stderr (llama.cpp's own messages, a native crash's last
    words) go to a pipe the API process reads and logs line by line (:func:`_log_output`),
    so that they come out in the server's log format (JSON lines with SLM_LOG_FORMAT=json)."""
    for fd in (1, 2):
        os.dup2(output.fileno(), fd)
    output.close()
    target(*args)


def _log_output(output: Any, pid: int | None, limit: int = 16 * 1024) -> None:
    """Log each line a worker writes (until it exits); a line over ``limit`` bytes is cut."""
    pending = b""
    while True:
        try:
            chunk = os.read(output.fileno(), 64 * 1024)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > limit:
            lines, pending = [*lines, pending], b""
        for line in lines:
            _log_line(line, pid)
    _log_line(pending, pid)
    output.close()


def _log_line(line: bytes, pid: int | None) -> None:
    text = line.decode("utf-8", "replace").rstrip()
    if text:
        log.warning("%s", text, extra={FIELDS: {"worker_pid": pid}})


def _worker_entry(*args: Any) -> None:
    """The worker process's entry point. It imports the engine in the child only: the API
    process never loads worker code (tests/unit/test_boundaries.py)."""
    from slmkit.engine.worker import worker_main

    worker_main(*args)
