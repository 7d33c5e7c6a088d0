"""Sizes as people write them (``8GiB``, ``512MB``) and as we print them."""

from __future__ import annotations

import re

from slmkit.errors import InvalidRequest

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 1024,
    "m": 1e6,
    "mb": 1e6,
    "mib": 1024**2,
    "g": 1e9,
    "gb": 1e9,
    "gib": 1024**3,
    "t": 1e12,
    "tb": 1e12,
    "tib": 1024**4,
}


def parse_size(text: str, *, field: str = "SLM_MAX_MEMORY") -> int:
    """``"8GiB"``, ``"512MB"``, ``"1000000"`` -> bytes."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InvalidRequest(f"{field}: invalid size {text!r} (use e.g. 8GiB or 512MB)")
    return int(float(match.group(1)) * _UNITS[unit])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
