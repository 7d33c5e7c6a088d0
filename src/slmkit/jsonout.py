"""JSON that every parser reads: what slmkit writes for people and programs (results files,
`--json` output). A number that is not finite (NaN, an infinity: a percentile of nothing, a
rate over zero seconds) becomes null, where Python's json would write a bare NaN that
strict parsers (jq, JavaScript's JSON.parse, Go) refuse. Files are written whole or not at
all (a temporary file, then a rename)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (dicts, lists, tuples walked)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(finite(value), indent=indent, ensure_ascii=False, allow_nan=False)


def write(path: Path, value: Any) -> Path:
    """``path`` holds ``value`` as JSON, or (on any failure) what it held before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(dumps(value) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
