"""Reading a batch input file: one JSON request per line, each checked on its own.

A line is ``{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions",
"body": {...}}`` (OpenAI's batch input format). A line that is not valid JSON, lacks a
``custom_id``, repeats one, names another endpoint or carries a body that is too large,
too deep or streamed becomes a :class:`LineError` (an error line in the job's error file),
never a failed job; only a file with more lines than allowed fails as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from slmkit.errors import LimitExceeded
from slmkit.security.jsondepth import json_depth_exceeds

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_CUSTOM_ID = 512  # characters


@dataclass(frozen=True)
class Limits:
    max_lines: int  # requests in one file (SLM_BATCH_MAX_LINES)
    max_line_bytes: int  # bytes of one line (SLM_MAX_BODY_BYTES: what one HTTP request may send)
    max_depth: int  # JSON nesting of a line (SLM_MAX_JSON_DEPTH)


@dataclass(frozen=True)
class BatchLine:
    index: int  # 0-based position among the file's non-blank lines
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LineError:
    index: int
    custom_id: str | None  # None when the line has no usable custom_id
    code: str  # invalid_json, invalid_custom_id, duplicate_custom_id, invalid_url, invalid_method, ...
    message: str

    def record(self) -> dict[str, Any]:
        """The line as written to the error file (OpenAI's shape: ``error`` set, no response)."""
        return {
            "id": f"batch_req_line{self.index}",
            "custom_id": self.custom_id,
            "response": None,
            "error": {"code": self.code, "message": self.message, "line": self.index + 1},
        }


def _raw_lines(fh: BinaryIO, max_bytes: int) -> Iterator[bytes | None]:
    """Each line's bytes without its newline, or None for a line longer than ``max_bytes``
    (read past without holding it)."""
    while True:
        line = fh.readline(max_bytes + 2)
        if not line:
            return
        if len(line) > max_bytes + 1 or (len(line) == max_bytes + 1 and not line.endswith(b"\n")):
            while line and not line.endswith(b"\n"):  # skip the rest of the oversized line
                line = fh.readline(1 << 20)
            yield None
            continue
        yield line.rstrip(b"\r\n")


def read_lines(fh: BinaryIO, endpoint: str | None, limits: Limits) -> Iterator[BatchLine | LineError]:
    """Every non-blank line of ``fh``, checked (each line's url must be ``endpoint``, or with
    None any of ENDPOINTS). Raises LimitExceeded past ``max_lines``."""
    seen: dict[str, int] = {}
    index = -1
    for raw in _raw_lines(fh, limits.max_line_bytes):
        if raw is not None and not raw.strip():
            continue
        index += 1
        if index >= limits.max_lines:
            raise LimitExceeded(
                f"the input file has more than {limits.max_lines} requests (SLM_BATCH_MAX_LINES)"
            )
        if raw is None:
            yield LineError(
                index, None, "line_too_large",
                f"the line is larger than {limits.max_line_bytes} bytes (SLM_MAX_BODY_BYTES)",
            )  # fmt: skip
            continue
        item = parse_line(index, raw, endpoint, limits.max_depth)
        if isinstance(item, BatchLine):
            first = seen.setdefault(item.custom_id, index)
            if first != index:
                item = LineError(
                    index, item.custom_id, "duplicate_custom_id",
                    f"custom_id {item.custom_id!r} was already used on line {first + 1}",
                )  # fmt: skip
        yield item


def parse_line(index: int, raw: bytes, endpoint: str | None, max_depth: int) -> BatchLine | LineError:
    """One line, checked against the batch's endpoint."""

    def error(code: str, message: str, custom_id: str | None = None) -> LineError:
        return LineError(index, custom_id, code, message)

    if json_depth_exceeds(raw, max_depth):
        return error(
            "invalid_json", f"the line nests JSON deeper than {max_depth} levels (SLM_MAX_JSON_DEPTH)"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return error("invalid_json", f"the line is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return error("invalid_json", "the line must be a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        return error("invalid_custom_id", f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters")
    method = data.get("method", "POST")
    if method != "POST":
        return error("invalid_method", f"method must be POST, not {str(method)[:20]!r}", custom_id)
    url = data.get("url")
    if not isinstance(url, str) or (endpoint is None and url not in ENDPOINTS):
        return error("invalid_url", f"url must be one of {', '.join(ENDPOINTS)}", custom_id)
    if endpoint is not None and url != endpoint:
        return error("invalid_url", f"url must be this batch's endpoint, {endpoint}", custom_id)
    body = data.get("body")
    if not isinstance(body, dict):
        return error("invalid_body", "body must be a JSON object (the request for the endpoint)", custom_id)
    if body.get("stream"):
        return error("invalid_body", "body.stream: batch requests cannot stream", custom_id)
    return BatchLine(index, custom_id, url, body)
