"""Pure helpers of the worker handle."""

from __future__ import annotations

from collections import deque

from slmkit.engine.runner import _coalesce
from slmkit.engine.types import Event, Finished, GenerationStats, TextDelta

DONE = Finished("stop", GenerationStats(1, 1, 0.0, 0.0))


def test_coalesce_merges_waiting_text_and_stops_at_the_end() -> None:
    pending: deque[Event] = deque([TextDelta("a", 1), TextDelta("b", 1), TextDelta("", 1), DONE])
    assert _coalesce(pending) == TextDelta("ab", 3)
    assert _coalesce(pending) is DONE
    assert not pending


def test_coalesce_leaves_single_events_alone() -> None:
    first = TextDelta("x", 1)
    pending: deque[Event] = deque([first, DONE])
    assert _coalesce(pending) is first
