"""The server's log: one line per record, text for people or JSON for log aggregation.

``SLM_LOG_FORMAT=json`` makes every line the API process writes one JSON object (Loki,
Vector, Fluent Bit, Cloud Logging read them as they are): ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, the record's own fields (the access log's request id,
route, status, tokens, refusal ...) and, for a failure, ``error`` plus its traceback as one
escaped string, never a multi-line block. The model workers' native output (llama.cpp
writes to the process's stderr) is read by the API process and logged line by line
(models/runner.py), so it is JSON too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any, TextIO

FIELDS = "fields"  # logging's ``extra={FIELDS: {...}}``: structured fields of one record


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = record.created
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        out: dict[str, Any] = {
            "time": f"{stamp}.{int(seconds % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = "".join(traceback.format_exception(exc)).rstrip()
        return json.dumps(out, separators=(",", ":"), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` (the fields people look for, inline)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            extra = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, 0, ""))
            line = f"{line} {extra}" if extra else line
        return line


def setup(log_format: str, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """One handler on the root logger (uvicorn's loggers propagate to it: runtime.py gives
    uvicorn no logging config of its own)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
