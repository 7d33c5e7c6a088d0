"""Cancel a handler when its client goes away (vLLM's ``with_cancellation``).

Streaming responses stop on their own when the client disconnects; a non-streaming
request would otherwise keep its sequence generating until the end. Racing the handler
against the ASGI ``http.disconnect`` message cancels it, which closes the generation
stream and aborts the request in the worker within one step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, handler: Coroutine[Any, Any, T]) -> T:
    work = asyncio.ensure_future(handler)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not work.done():
        work.cancel()
        raise asyncio.CancelledError("client disconnected")
    return work.result()
