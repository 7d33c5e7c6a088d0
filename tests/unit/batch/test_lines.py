"""Reading batch input files: every bad line becomes its own error, never a failed job."""

from __future__ import annotations

import io
import json

import pytest

from slmkit.batch.lines import BatchLine, Limits, LineError, read_lines
from slmkit.errors import LimitExceeded

CHAT = "/v1/chat/completions"
LIMITS = Limits(max_lines=100, max_line_bytes=2048, max_depth=8)


def line(custom_id: object = "a", url: str = CHAT, **extra: object) -> bytes:
    data = {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": "m", "messages": []}}
    data.update(extra)
    return json.dumps(data).encode()


def read(*lines: bytes, limits: Limits = LIMITS) -> list[BatchLine | LineError]:
    return list(read_lines(io.BytesIO(b"\n".join(lines) + b"\n"), CHAT, limits))


def test_a_good_line_is_a_request() -> None:
    [item] = read(line("row-1"))
    assert item == BatchLine(0, "row-1", CHAT, {"model": "m", "messages": []})


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (line(None), "invalid_custom_id"),
        (line(""), "invalid_custom_id"),
        (line(7), "invalid_custom_id"),
        (line("x" * 513), "invalid_custom_id"),
        (line("a", url="/v1/embeddings"), "invalid_url"),
        (line("a", url="/api/../v1/chat/completions"), "invalid_url"),
        (line("a", method="GET"), "invalid_method"),
        (line("a", body="text"), "invalid_body"),
        (line("a", body={"model": "m", "stream": True}), "invalid_body"),
        (b'{"custom_id": "a", "body": ' + b"[" * 20 + b"]" * 20 + b"}", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
    ],
)
def test_each_bad_line_is_an_error_naming_what_is_wrong(raw: bytes, code: str) -> None:
    [item] = read(raw)
    assert isinstance(item, LineError) and item.code == code and item.index == 0
    record = item.record()
    assert record["error"]["line"] == 1 and record["response"] is None


def test_a_repeated_custom_id_is_an_error_and_the_first_use_stays_a_request() -> None:
    items = read(line("a"), line("b"), line("a"))
    assert [type(i).__name__ for i in items] == ["BatchLine", "BatchLine", "LineError"]
    error = items[2]
    assert isinstance(error, LineError) and error.code == "duplicate_custom_id" and "line 1" in error.message


def test_blank_lines_are_skipped_and_not_counted() -> None:
    items = read(b"", line("a"), b"   ", b"\r", line("b"))
    assert [i.index for i in items] == [0, 1]


def test_an_oversized_line_is_an_error_and_the_next_line_still_reads() -> None:
    big = line("big", body={"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]})
    items = read(line("a"), big, line("c"))
    assert isinstance(items[1], LineError) and items[1].code == "line_too_large"
    assert isinstance(items[2], BatchLine) and items[2].custom_id == "c"


def test_a_line_exactly_at_the_limit_is_read() -> None:
    raw = line("a")
    [item] = read(raw, limits=Limits(10, len(raw), 8))
    assert isinstance(item, BatchLine)


def test_more_lines_than_allowed_fail_the_file() -> None:
    with pytest.raises(LimitExceeded, match="SLM_BATCH_MAX_LINES"):
        read(*(line(str(i)) for i in range(4)), limits=Limits(3, 2048, 8))
