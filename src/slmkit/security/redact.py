"""Secrets out of everything shown or logged: URLs lose their userinfo and query string."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``https://user:token@host/v1?key=x`` -> ``https://***@host/v1?***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def redact_urls(text: str) -> str:
    """Every URL in a message, redacted."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
