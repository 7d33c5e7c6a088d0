"""The worker handle: its pure helpers, and its process management with stand-in workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import pytest

from slmkit.errors import ModelLoadError
from slmkit.models.runner import WorkerProcess, _coalesce
from slmkit.pipe import Event, Finished, GenerationStats, LoadSpec, TextDelta
from tests.unit.models import workers

DONE = Finished("stop", GenerationStats(1, 1, 0.0, 0.0))


def test_coalesce_merges_waiting_text_and_stops_at_the_end() -> None:
    pending: deque[Event] = deque([TextDelta("a", 1), TextDelta("b", 1), TextDelta("", 1), DONE])
    assert _coalesce(pending) == TextDelta("ab", 3)
    assert _coalesce(pending) is DONE
    assert not pending


def test_coalesce_leaves_single_events_alone() -> None:
    first = TextDelta("x", 1)
    pending: deque[Event] = deque([first, DONE])
    assert _coalesce(pending) is first


# -- the worker process handle, with stand-in entry points (real processes, no model) ------


def start(target: object, timeout: float) -> tuple[WorkerProcess, ModelLoadError]:
    worker = WorkerProcess(LoadSpec("unused.gguf"), None, {}, target=target)  # type: ignore[arg-type]

    async def go() -> ModelLoadError:
        with pytest.raises(ModelLoadError) as info:
            await worker.start(timeout)
        return info.value

    return worker, asyncio.run(go())


def test_a_load_slower_than_the_timeout_fails_cleanly() -> None:
    worker, error = start(workers.never_ready, 1.0)
    assert "did not load within 1s" in str(error)
    assert not worker.alive and not worker._process.is_alive()  # no orphan


def test_a_native_crash_while_loading_is_reported() -> None:
    _, error = start(workers.crash_while_loading, 30)
    assert "crashed while loading (signal 11)" in str(error)


def test_worker_output_is_logged_line_by_line_in_the_servers_format(caplog: pytest.LogCaptureFixture) -> None:
    """llama.cpp writes to the worker's stderr: the API process logs each line (JSON with
    SLM_LOG_FORMAT=json), a native crash's last words included."""
    with caplog.at_level(logging.WARNING, logger="slmkit.worker"):
        worker, error = start(workers.chatter_then_crash, 30)
        deadline = time.monotonic() + 30
        while "last words" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)  # the reader thread logs until the pipe closes; bounded wait
    lines = [r.getMessage() for r in caplog.records if r.name == "slmkit.worker"]
    assert sorted(lines) == sorted(["ggml: something native", "second line", "on stdout", "last words"])
    assert all(r.fields == {"worker_pid": worker.pid} for r in caplog.records if r.name == "slmkit.worker")
    assert "signal 11" in str(error)


def test_an_exit_while_loading_is_reported() -> None:
    _, error = start(workers.exit_while_loading, 30)
    assert "exited while loading (exit code 3)" in str(error)


def test_workers_inherit_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in ("HF_TOKEN", "SLM_API_KEY", "SLM_UPSTREAM_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "s3cr3t")
    _, error = start(workers.exit_with_secret_count, 30)
    assert "exit code 10)" in str(error)  # none of them
    assert os.environ["HF_TOKEN"] == "s3cr3t"  # the API process keeps its own
