"""GET /api/events: loads and unloads as server-sent events; a slow reader loses its oldest
events and is told, never slowing anyone; the number of streams is bounded."""

from __future__ import annotations

import asyncio
import json

import pytest

from slmkit.errors import ServerBusy
from slmkit.server import events


def _events(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line.split("data: ", 1)[1]) for line in lines if "data: " in line]


def test_a_slow_reader_loses_its_oldest_and_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "QUEUE", 4)

    async def scenario() -> list[dict[str, object]]:
        hub = events.EventHub()
        stream = hub.stream()
        assert (await anext(stream)).startswith(":")  # subscribed
        await asyncio.sleep(0)
        for i in range(10):  # published while the reader does nothing
            hub.publish({"type": "loaded", "model": f"m{i}"})
        got = [await anext(stream) for _ in range(5)]
        await stream.aclose()  # type: ignore[attr-defined]
        assert not hub.subscribers  # gone at once
        return _events(got)

    got = asyncio.run(scenario())
    assert got[0] == {"type": "lagged", "lost": 6}
    assert [e["model"] for e in got[1:]] == ["m6", "m7", "m8", "m9"]


def test_streams_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "SUBSCRIBERS", 1)

    async def scenario() -> None:
        hub = events.EventHub()
        first = hub.stream()
        await anext(first)
        with pytest.raises(ServerBusy, match="at most 1 event streams"):
            await anext(hub.stream())
        await first.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
