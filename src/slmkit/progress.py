"""Progress of long work (quantize, eval, convert), reported where it happens and shown by
whoever is watching.

The work says what it is doing through :func:`current`: ``task(description, total)`` starts
a step (a bar when ``total`` is known, a spinner otherwise) and ``advance()`` moves it. By
default nobody watches and the calls cost nothing; the CLI installs a terminal display on
stderr (cli/progress.py) only when stderr is a terminal, so pipes, files and --json stay
clean. A library user may install their own with :func:`watching`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> None: ...

    def advance(self, steps: int = 1) -> None: ...


class Silent:
    def task(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


SILENT = Silent()
_current: ContextVar[Progress | None] = ContextVar("slm_progress", default=None)


def current() -> Progress:
    return _current.get() or SILENT


@contextlib.contextmanager
def watching(progress: Progress) -> Iterator[Progress]:
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)
