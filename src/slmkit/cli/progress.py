"""The terminal display of slmkit.progress: rich bars and spinners on stderr, one line per
step, only when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from slmkit import progress


class Terminal:
    def __init__(self, bars: Any) -> None:
        self.bars = bars
        self.task_id: Any = None

    def task(self, description: str, total: int | None = None) -> None:
        self._finish()
        self.task_id = self.bars.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self.task_id is not None:
            self.bars.advance(self.task_id, steps)

    def _finish(self) -> None:
        if self.task_id is None:
            return
        task = self.bars.tasks[-1]
        done = task.total or task.completed or 1  # a spinner's step ends as a full bar
        self.bars.update(self.task_id, total=done, completed=done)
        self.bars.stop_task(self.task_id)


@contextlib.contextmanager
def on_terminal() -> Iterator[None]:
    """Show progress on stderr while the block runs, if stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bars = Progress(
        SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True),
    )  # fmt: skip
    display = Terminal(bars)
    with bars, progress.watching(display):
        try:
            yield
        finally:
            display._finish()
