"""Background responses' events and cancellation in Redis, so that any replica sharing the
store (SLM_RESPONSES_STORE=redis://...) can follow a background response another replica
runs, and cancel it.

A run's events go to a Redis stream, ``events:<owner>:<id>``, one entry per event (its JSON),
then an end entry; a reader on any replica reads what is there after its ``starting_after``
and then blocks for more (``XREAD BLOCK``) until the end entry. A cancel asked on another
replica sets ``cancel:<owner>:<id>``; the replica running it looks every half second and
cancels its task. Both keys expire with the events' keep time (at most ``MAX_KEEP``).
Redis not answering is :class:`SharedStateUnavailable`; the run itself goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from slmkit import shared_state

log = logging.getLogger("slmkit.server")
PREFIX = "slm:background:"
MAX_KEEP = 3600  # seconds: a run's events stay in Redis at most this long after the last one
BLOCK_MS = 5000  # a follower waits this long per read for new events
CANCEL_POLL = 0.5  # seconds between the running replica's looks for a cancel


class SharedEvents:
    def __init__(self, url: str, keep: float, prefix: str = PREFIX) -> None:
        self.keep = max(1, int(min(keep, MAX_KEEP)))
        self.prefix = prefix
        self._redis = shared_state.connect(url, timeout=BLOCK_MS / 1000 + 2)

    def _events(self, owner: str, rid: str) -> str:
        return f"{self.prefix}events:{owner}:{rid}"

    def _cancel(self, owner: str, rid: str) -> str:
        return f"{self.prefix}cancel:{owner}:{rid}"

    async def add(self, owner: str, rid: str, data: dict[str, Any] | None) -> None:
        """One event (``None``: the end). Failing to publish is logged, never the run's end."""
        key = self._events(owner, rid)
        fields = {"end": "1"} if data is None else {"event": json.dumps(data, separators=(",", ":"))}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, fields)  # type: ignore[arg-type]
                pipe.expire(key, self.keep)
                await pipe.execute()
        except shared_state.FAILURES as exc:
            log.warning("background events: Redis did not take an event (%s)", type(exc).__name__)

    async def exists(self, owner: str, rid: str) -> bool:
        return bool(await shared_state.call(self._redis.exists(self._events(owner, rid))))

    async def follow(self, owner: str, rid: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """The events after sequence number ``after``, then each new one, until the end."""
        key, last = self._events(owner, rid), "0-0"
        while True:
            found = await shared_state.call(self._redis.xread({key: last}, block=BLOCK_MS, count=256))
            for _, entries in found or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if b"end" in fields:
                        return
                    data: dict[str, Any] = json.loads(fields[b"event"])
                    if int(data.get("sequence_number", -1)) > after:
                        yield data
            if not found and not await self.exists(owner, rid):
                return  # expired meanwhile

    async def request_cancel(self, owner: str, rid: str) -> None:
        await shared_state.call(self._redis.set(self._cancel(owner, rid), "1", ex=self.keep))

    async def cancel_requested(self, owner: str, rid: str) -> bool:
        try:
            return bool(await self._redis.exists(self._cancel(owner, rid)))
        except shared_state.FAILURES:
            return False  # asked again later

    async def close(self) -> None:
        await self._redis.aclose()
