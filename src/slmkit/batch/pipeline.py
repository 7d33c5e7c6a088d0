"""``slm batch``: run a JSONL file of requests against a server, resumable, no job needed.

Each answer is appended to the output file as it arrives, in OpenAI's batch output format
(``custom_id``, ``response`` with status and body, or ``error`` for a line that could not
be sent). Running the same command again skips every ``custom_id`` already in the output
(a line torn by a crash is cut off first), so an interrupted run loses nothing and does
nothing twice. Answers that may succeed later (connection lost, 429, 5xx) are retried a
few times and, if they still fail, left out of the output for the next run.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.batch.jobs import recover
from slmkit.batch.lines import BatchLine, Limits, LineError, read_lines
from slmkit.errors import ServerUnavailable

# (url path, body) -> (HTTP status, response body); raises ServerUnavailable when no server answers
Send = Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
RETRY_DELAYS = (0.5, 2.0, 5.0)


@dataclass
class Summary:
    total: int = 0  # lines in the input
    skipped: int = 0  # already in the output (an earlier run)
    completed: int = 0  # answered with a 2xx status by this run
    failed: int = 0  # answered with an error, or refused before sending (written to the output)
    left: int = 0  # not answered (transient failures): run again to retry them


async def run_file(
    source: Path,
    output: Path,
    send: Send,
    limits: Limits,
    concurrency: int = 8,
    model: str | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
) -> Summary:
    """Answer every line of ``source`` not yet in ``output``; ``model`` replaces each body's."""
    done, _, lines = await asyncio.to_thread(recover, output)
    summary = Summary()
    items = await asyncio.to_thread(_read_all, source, limits)
    summary.total = len(items)
    todo: list[BatchLine] = []
    with open(output, "ab") as out:

        def write(record: dict[str, Any]) -> None:
            out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
            out.flush()

        for item in items:
            custom_id = item.custom_id
            if custom_id is not None and custom_id in done:
                summary.skipped += 1
            elif isinstance(item, LineError):
                summary.failed += 1
                if item.custom_id is not None and item.code != "duplicate_custom_id":
                    write({**item.record(), "response": {"status_code": 400, "body": _error(item.message)}})
                elif lines == 0:  # no id to resume by: written by the first run only
                    write(item.record())
            else:
                todo.append(item if model is None else _with_model(item, model))
        if on_progress is not None:
            on_progress(summary)

        next_lines = iter(todo)  # shared by the workers: each takes the next line

        async def worker() -> None:
            for line in next_lines:
                answer = await _send(send, line, retry_delays)
                if answer is None:
                    summary.left += 1
                else:
                    status, body = answer
                    write(_record(line, status, body))
                    summary.completed += 200 <= status < 300
                    summary.failed += not 200 <= status < 300
                if on_progress is not None:
                    on_progress(summary)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return summary


async def _send(send: Send, line: BatchLine, delays: tuple[float, ...]) -> tuple[int, dict[str, Any]] | None:
    """The answer, or None when every try met a transient failure."""
    for delay in (*delays, None):
        try:
            status, body = await send(line.url, line.body)
            if status not in TRANSIENT:
                return status, body
        except ServerUnavailable:
            if delay is None:
                raise
        if delay is None:
            return None
        await asyncio.sleep(delay)
    return None


def _read_all(source: Path, limits: Limits) -> list[BatchLine | LineError]:
    with open(source, "rb") as fh:
        return list(read_lines(fh, None, limits))


def _with_model(line: BatchLine, model: str) -> BatchLine:
    return BatchLine(line.index, line.custom_id, line.url, {**line.body, "model": model})


def _record(line: BatchLine, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"batch_req_{secrets.token_hex(12)}",
        "custom_id": line.custom_id,
        "response": {"status_code": status, "request_id": body.get("id", ""), "body": body},
        "error": None,
    }


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
