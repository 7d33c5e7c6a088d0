"""Background responses (``background: true``): the answer runs in a task of its own, the
client polls it (``GET /v1/responses/{id}``), cancels it (``POST .../cancel``), or follows
its stream from any point (``GET /v1/responses/{id}?stream=true&starting_after=N``), again
after a dropped connection.

Every stream event of a run is kept, with its ``sequence_number``, while the run goes on and
for ``keep`` seconds after it ends (the app passes SLM_RESPONSES_TTL: as long as the response
itself); finished runs' events are dropped oldest first beyond ``MAX_BYTES`` in all. A key
may have ``PER_OWNER`` runs going at once. Runs live in the process that started them: the
response itself (queued, then its final state) is in the responses store, which replicas can
share (SLM_RESPONSES_STORE), but its events and its cancellation are on the replica that
runs it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import LimitExceeded
from slmkit.server.responses.shared_events import CANCEL_POLL, SharedEvents

PER_OWNER = 16  # background responses one key may have running at once
KEEP_SECONDS = 600.0  # a finished run's events stay this long for a late reader (default)
MAX_BYTES = 64 * 2**20  # finished runs' events, all together; the oldest go first


@dataclass
class Run:
    owner: str
    rid: str  # "resp_..."
    snapshot: dict[str, Any]  # the Response as it stands (queued, in_progress, then final)
    background: bool = True  # False: an ordinary stored stream (not counted against the key)
    events: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0  # bytes of the events, as JSON
    ended: float | None = None  # clock time it ended
    task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, data: dict[str, Any]) -> None:
        self.events.append(data)
        self.size += len(json.dumps(data, separators=(",", ":"), default=str))
        self._wake()

    def end(self, snapshot: dict[str, Any], now: float) -> None:
        self.snapshot, self.ended = snapshot, now
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, after: int) -> AsyncIterator[dict[str, Any]]:
        """The events after sequence number ``after``, then each new one, until the run ends."""
        i = 0
        while True:
            while i < len(self.events):
                data = self.events[i]
                i += 1
                if int(data.get("sequence_number", -1)) > after:
                    yield data
            if self.ended is not None:
                return
            await self._changed.wait()


class BackgroundRuns:
    def __init__(
        self,
        per_owner: int = PER_OWNER,
        keep: float = KEEP_SECONDS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedEvents | None = None,
    ) -> None:
        self.per_owner, self.keep, self.max_bytes, self._clock = per_owner, keep, max_bytes, clock
        self.shared = shared  # replicas share a Redis: events and cancels go through it too
        self._runs: dict[tuple[str, str], Run] = {}  # in the order they started

    async def emit(self, run: Run, data: dict[str, Any]) -> None:
        """One event of a run: kept here, and published for other replicas."""
        run.add(data)
        if self.shared is not None:
            await self.shared.add(run.owner, run.rid, data)

    async def finish(self, run: Run, snapshot: dict[str, Any]) -> None:
        run.end(snapshot, self._clock())
        if self.shared is not None:
            await self.shared.add(run.owner, run.rid, None)

    async def follow(self, owner: str, rid: str, after: int) -> AsyncIterator[dict[str, Any]] | None:
        """A run's events after ``after``, from here or (shared) from the replica running it;
        None when no events of it are kept."""
        run = self.get(owner, rid)
        if run is not None:
            return run.follow(after)
        if self.shared is not None and await self.shared.exists(owner, rid):
            return self.shared.follow(owner, rid, after)
        return None

    async def cancel_elsewhere(self, owner: str, rid: str) -> bool:
        """Ask the replica running it to cancel (shared only); whether it could be asked."""
        if self.shared is None:
            return False
        await self.shared.request_cancel(owner, rid)
        return True

    def __len__(self) -> int:
        return sum(1 for run in self._runs.values() if run.ended is None)

    def get(self, owner: str, rid: str) -> Run | None:
        self._sweep()
        return self._runs.get((owner, rid))

    def check(self, owner: str) -> None:
        """Whether the key may start another run (LimitExceeded when not)."""
        self._sweep()
        running = sum(
            1 for (o, _), run in self._runs.items() if o == owner and run.ended is None and run.background
        )
        if running >= self.per_owner:
            raise LimitExceeded(
                f"background: this key has {running} background responses running, the limit; "
                "wait for one to end or cancel one"
            )

    def start(
        self,
        owner: str,
        rid: str,
        snapshot: dict[str, Any],
        work: Callable[[Run], Awaitable[None]],
        limit: bool = True,
    ) -> Run:
        """Run ``work`` in a task of its own; the key's running count is checked first (a
        background response's; an ordinary stored stream is bounded as any request is)."""
        if limit:
            self.check(owner)
        run = Run(owner, rid, snapshot, background=limit)
        self._runs[(owner, rid)] = run
        run.task = asyncio.create_task(self._guarded(run, work))
        return run

    async def _guarded(self, run: Run, work: Callable[[Run], Awaitable[None]]) -> None:
        watch = asyncio.create_task(self._watch(run)) if self.shared is not None else None
        try:
            await work(run)
        finally:
            if watch is not None:
                watch.cancel()
            if run.ended is None:  # work ends its run; this is the backstop
                run.end(run.snapshot, self._clock())

    async def _watch(self, run: Run) -> None:
        """Cancel the run when another replica asks (shared only)."""
        assert self.shared is not None
        while run.ended is None:
            await asyncio.sleep(CANCEL_POLL)
            if run.ended is None and await self.shared.cancel_requested(run.owner, run.rid):
                if run.task is not None:
                    run.task.cancel()
                return

    async def cancel(self, run: Run) -> None:
        """Stop a running run and wait until it has recorded how it ended."""
        if run.task is not None and run.ended is None:
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)

    async def close(self) -> None:
        """Server shutdown: the runs still going end (each records it failed)."""
        tasks = [run.task for run in self._runs.values() if run.task is not None and run.ended is None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.shared is not None:
            await self.shared.close()

    def _sweep(self) -> None:
        now = self._clock()
        done = [(key, run) for key, run in self._runs.items() if run.ended is not None]
        for key, run in done:
            if run.ended is not None and now - run.ended > self.keep:
                del self._runs[key]
        total = sum(run.size for _, run in done if _ in self._runs)
        for key, run in done:
            if total <= self.max_bytes:
                break
            if key in self._runs:
                del self._runs[key]
                total -= run.size
