"""Stored responses for the Responses API: ``store`` keeps a response, ``previous_response_id``
continues from it, ``GET``/``DELETE /v1/responses/{id}`` read and remove it.

Held in memory, per owner (the API key's id; one anonymous owner when keys are off), so one
key can never read, continue or delete another's responses: an id that belongs to someone
else is answered exactly like one that never existed. Bounded three ways, all settings:
responses per owner (the oldest goes first), age, and the bytes of all owners together;
over the byte bound the owner holding the most bytes loses its oldest response, so a key
that floods the store evicts its own responses before anyone else's. A restart forgets
everything (as vLLM's store does); ``docs/api.md`` says so. Replicas share one store in
Redis instead (shared.py, ``SLM_RESPONSES_STORE``), under the same rules.

Each entry keeps the conversation up to and including its own output as Responses items
(``context``), without ``instructions``: a continuation is that context, then the new input,
under whatever instructions the new request gives. Items are shared between a chain's entries
(tuples of the same dicts), but each entry is charged for its whole context, so the byte
bound holds however the chain is evicted. Pure: no I/O, the clock is injected.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmkit.config import Config
    from slmkit.server.state import KeptResponses

Item = dict[str, Any]


@dataclass(frozen=True)
class Stored:
    response: dict[str, Any]  # the Response object as the caller got it
    context: tuple[Item, ...]  # every input and output item so far, instructions left out
    size: int  # bytes charged to the owner
    expires: float  # clock time after which it is gone
    inputs: int = 0  # this response's own input items: context[-(inputs + outputs):-outputs]

    def input_items(self) -> tuple[Item, ...]:
        """The input items this response was made from (not the earlier turns)."""
        end = len(self.context) - len(self.response.get("output") or ())
        return self.context[max(0, end - self.inputs) : end]


def size_of(response: dict[str, Any], context: tuple[Item, ...]) -> int:
    text = json.dumps([response, context], separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", errors="surrogatepass"))


class ResponseStore:
    def __init__(
        self,
        per_owner: int,
        ttl: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_owner = per_owner  # 0: store nothing
        self.ttl = ttl  # seconds
        self.max_bytes = max_bytes
        self._clock = clock
        self._owners: dict[str, OrderedDict[str, Stored]] = {}
        self._bytes: dict[str, int] = {}
        self.total_bytes = 0

    @property
    def enabled(self) -> bool:
        return self.per_owner > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._owners.values())

    def put(self, owner: str, response: dict[str, Any], context: tuple[Item, ...], inputs: int = 0) -> bool:
        """Keep ``response`` for ``owner``; False when the bounds leave no room for it."""
        if not self.enabled:
            return False
        self._expire()
        entry = Stored(response, context, size_of(response, context), self._clock() + self.ttl, inputs)
        entries = self._owners.setdefault(owner, OrderedDict())
        rid = str(response["id"])
        if rid in entries:
            self._drop(owner, rid)
            entries = self._owners.setdefault(owner, OrderedDict())
        entries[rid] = entry
        self._bytes[owner] = self._bytes.get(owner, 0) + entry.size
        self.total_bytes += entry.size
        while len(entries) > self.per_owner:
            self._drop(owner, next(iter(entries)))
        while self.total_bytes > self.max_bytes:
            heaviest = max(self._bytes, key=self._bytes.__getitem__)
            self._drop(heaviest, next(iter(self._owners[heaviest])))
        return rid in self._owners.get(owner, ())

    def get(self, owner: str, rid: str) -> Stored | None:
        entries = self._owners.get(owner)
        entry = entries.get(rid) if entries is not None else None
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(owner, rid)
            return None
        return entry

    def delete(self, owner: str, rid: str) -> bool:
        if self.get(owner, rid) is None:
            return False
        self._drop(owner, rid)
        return True

    def _drop(self, owner: str, rid: str) -> None:
        entries = self._owners[owner]
        entry = entries.pop(rid)
        self._bytes[owner] -= entry.size
        self.total_bytes -= entry.size
        if not entries:
            del self._owners[owner], self._bytes[owner]

    def _expire(self) -> None:
        """Drop what has outlived the TTL: each owner's entries are in age order."""
        now = self._clock()
        for owner in list(self._owners):
            entries = self._owners[owner]
            while entries and next(iter(entries.values())).expires <= now:
                self._drop(owner, next(iter(entries)))
                if owner not in self._owners:
                    break


class MemoryResponses:
    """The in-memory store behind the same awaitable interface as the shared one."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    @property
    def total_bytes(self) -> int:
        return self.store.total_bytes

    async def get(self, owner: str, rid: str) -> Stored | None:
        return self.store.get(owner, rid)

    async def put(
        self, owner: str, response: dict[str, Any], context: tuple[Item, ...], inputs: int = 0
    ) -> bool:
        return self.store.put(owner, response, context, inputs)

    async def delete(self, owner: str, rid: str) -> bool:
        return self.store.delete(owner, rid)

    async def close(self) -> None:
        return None


def open_responses(config: Config) -> KeptResponses:
    """SLM_RESPONSES_STORE: this process's memory, or Redis shared by the replicas."""
    bounds = (config.responses_per_key, config.responses_ttl, config.responses_memory)
    if config.responses_store == "memory":
        return MemoryResponses(ResponseStore(*bounds))
    from slmkit.server.responses.shared import RedisResponses

    return RedisResponses(config.responses_store, *bounds)
