"""The server's log formats: one JSON object per line (fields, failures on one line), key=value text."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from slmkit.logs import FIELDS, JsonFormatter, TextFormatter, setup

ROOT = Path(__file__).resolve().parents[2]


def record(
    message: str = "hello %s", *args: object, fields: dict[str, object] | None = None
) -> logging.LogRecord:
    rec = logging.LogRecord("slmkit.access", logging.INFO, __file__, 1, message, args or ("world",), None)
    if fields is not None:
        setattr(rec, FIELDS, fields)
    return rec


def test_json_lines_carry_the_core_keys_and_the_fields() -> None:
    line = JsonFormatter().format(record(fields={"request_id": "r1", "status": 200, "level": "forged"}))
    out = json.loads(line)
    assert out["message"] == "hello world" and out["logger"] == "slmkit.access"
    assert out["request_id"] == "r1" and out["status"] == 200
    assert out["level"] == "info"  # a field never overrides a core key
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["time"])


def test_a_failure_is_one_line_with_its_traceback_escaped() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        rec = logging.LogRecord("slmkit.server", logging.ERROR, __file__, 1, "failed", (), exc_info=True)
        rec.exc_info = __import__("sys").exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    out = json.loads(line)
    assert out["error"] == "ValueError: bad\nthing" and "Traceback" in out["traceback"]


def test_control_characters_cannot_forge_json_lines() -> None:
    line = JsonFormatter().format(record("%s", "a\r\nb\x1b[31m", fields={"path": "/x\n{}"}))
    assert "\n" not in line and "\r" not in line and json.loads(line)["path"] == "/x\n{}"


def test_text_lines_show_the_fields_that_matter() -> None:
    line = TextFormatter().format(
        record(fields={"request_id": "r1", "status": 200, "model": None, "tokens": 0})
    )
    assert line.endswith("slmkit.access: hello world request_id=r1 status=200")


def test_setup_routes_every_logger_through_one_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    saved = [
        (x, x.handlers, x.propagate, x.level)
        for x in map(logging.getLogger, ("", "uvicorn", "uvicorn.error"))
    ]
    try:
        for logger in (logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error")):
            # as uvicorn leaves them given log_config=None (other tests may have configured them)
            logger.handlers, logger.propagate, logger.disabled = [], True, False
            logger.setLevel(logging.NOTSET)
        stream = io.StringIO()
        setup("json", stream=stream)
        logging.getLogger("uvicorn.error").warning("from uvicorn")  # runtime.py gives uvicorn no config
        logging.getLogger("slmkit.worker").warning("native", extra={FIELDS: {"worker_pid": 7}})
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(x["logger"], x["message"]) for x in lines] == [
        ("uvicorn.error", "from uvicorn"),
        ("slmkit.worker", "native"),
    ]
    assert lines[1]["worker_pid"] == 7


def test_the_documented_log_shipping_config_reads_fields_the_server_writes() -> None:
    """docs/deploy.md's Vector configuration: every field it uses is in the access records."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split("```yaml\n# vector.yaml", 1)[1].split("```", 1)[0]
    config = yaml.safe_load("# vector.yaml" + block)
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", block)) | set(
        re.findall(r"\.(\w+)\b", config["transforms"]["slmkit_json"]["source"])
    )
    written = "request_id method path route status duration_ms model prompt_tokens cached_tokens"
    written += " completion_tokens ttft_ms key rejected"  # server/observe.py
    access = json.loads(JsonFormatter().format(record(fields=dict.fromkeys(written.split()))))
    unknown = used - set(access) - {"message", "timestamp"}  # Vector's own: the line, the event time
    assert not unknown, f"the config uses fields the server does not write: {unknown}"
    assert config["sinks"]["loki"]["inputs"] == ["slmkit_json"]
