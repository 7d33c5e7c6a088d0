"""``GET /api/events``: what the server does to its models, as it happens (server-sent
events): loading, loaded, load_failed, unloaded (why: expired, evicted, crashed, stopped,
replaced, shutdown) and pull progress.

The manager (and a pull) publish plain dicts on the event loop; each subscriber has its own
bounded queue, so a slow reader never slows loading or another reader: when its queue is
full it loses its oldest events and is told how many (a ``lagged`` event). The number of
subscribers is bounded too (a 503 past it); an idle stream gets a comment line every
HEARTBEAT seconds so proxies keep it open and a gone client is noticed.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator
from typing import Any

from slmkit.errors import ServerBusy

QUEUE = 256  # events one subscriber may be behind
SUBSCRIBERS = 32
HEARTBEAT = 15.0


class Subscriber:
    def __init__(self) -> None:
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=QUEUE)
        self.lost = 0
        self.ready = asyncio.Event()

    def put(self, event: dict[str, Any]) -> None:
        if len(self.events) == QUEUE:
            self.lost += 1  # the deque drops its oldest
        self.events.append(event)
        self.ready.set()

    def take(self) -> list[dict[str, Any]]:
        out = list(self.events)
        self.events.clear()
        self.ready.clear()
        if self.lost:
            out.insert(0, {"type": "lagged", "lost": self.lost})
            self.lost = 0
        return out


class EventHub:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()

    def publish(self, event: dict[str, Any]) -> None:
        for subscriber in list(self.subscribers):
            subscriber.put(event)

    async def stream(self) -> AsyncIterator[str]:
        """One subscriber's SSE lines until the client goes (the generator is closed)."""
        if len(self.subscribers) >= SUBSCRIBERS:
            raise ServerBusy(f"at most {SUBSCRIBERS} event streams at once; try again later")
        me = Subscriber()
        self.subscribers.add(me)
        try:
            yield ": slmkit events\n\n"
            while True:
                try:
                    await asyncio.wait_for(me.ready.wait(), HEARTBEAT)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                for event in me.take():
                    yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
        finally:
            self.subscribers.discard(me)
