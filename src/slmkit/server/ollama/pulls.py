"""Running a pull (blocking HTTP and disk work) in a thread, with its progress as a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict

from slmkit.server.state import ServerState
from slmkit.store.pulling import pull_client, run_pull
from slmkit.store.registry import Progress, RegistryClient

_END = object()


async def pull(state: ServerState, ref: str, *, insecure: bool) -> AsyncIterator[dict[str, object]]:
    """Progress objects (Ollama's shape) until ``{"status": "success"}``; raises on failure.

    Closing the iterator early (client gone) cancels the download between chunks; what was
    downloaded stays as a ``-partial`` file for the next pull to resume.
    """
    client = pull_client(state.store, state.config, ref, max_bytes=state.manager.budget)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def report(progress: Progress) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, progress)

    def run() -> None:
        try:
            run_pull(client, state.config, ref, insecure=insecure, progress=report)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            assert isinstance(item, Progress)
            shown = {k: v for k, v in asdict(item).items() if v is not None}
            state.events.publish({"type": "pull", "model": ref, **shown})
            yield shown
        await task  # raises the pull's error, if any
        state.manager.forget(ref)  # the model may have changed
    finally:
        if not task.done():
            client.cancelled = True
            await asyncio.wait({task})
        if isinstance(client, RegistryClient):
            client.close()
