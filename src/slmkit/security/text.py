"""Text that enters slmkit must be valid Unicode: encodable as UTF-8.

JSON may carry a lone UTF-16 surrogate (``"\\ud800"``): it parses into a Python ``str``
that cannot be encoded, and the first ``.encode()`` on its path (a tokenizer, a template,
a log line, an answer) raises. Every request body is walked once, where it enters
(``server/wire.py``), before any work; the first bad string is refused with its field's
path. Only surrogates (U+D800..U+DFFF) make a Python ``str`` unencodable, so one regex
search per string is the whole test; NUL, control and bidi characters and the largest code
points are valid text and pass.
"""

from __future__ import annotations

import re
from typing import Any

from slmkit.errors import InvalidText

_SURROGATE = re.compile("[\ud800-\udfff]")


def unencodable(value: Any, path: str = "") -> str | None:
    """The path (``messages.0.content``; ``<key>`` for a mapping key) of the first string in
    ``value`` (nested dicts, lists and tuples of JSON values) that UTF-8 cannot encode, or
    None. Iterative: a deep body cannot exhaust the stack."""
    todo: list[tuple[str, Any]] = [(path, value)]
    while todo:
        where, item = todo.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return where or "body"
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                name = str(key)
                if not name.isascii() and _SURROGATE.search(name):
                    return _join(where, "<key>")
                todo.append((_join(where, name), child))
        elif isinstance(item, list | tuple):
            todo.extend((_join(where, str(i)), child) for i, child in reversed(list(enumerate(item))))
    return None


def check_text(value: Any, path: str = "") -> None:
    """Raise InvalidText naming the field when ``value`` holds text UTF-8 cannot encode."""
    bad = unencodable(value, path)
    if bad is not None:
        err = InvalidText(f"{safe(bad)}: text is not valid Unicode (it holds a lone UTF-16 surrogate)")
        err.param = safe(bad)
        raise err


def safe(text: str) -> str:
    """``text`` with any surrogate escaped (``\\ud800``), so it can be shown and sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name
