"""What replicas share lives in Redis (stored responses, background responses' events, batch
leases): one way to connect, with deadlines, and one way to fail, naming the setting and
never the server's address or password."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from slmkit.errors import SharedStateUnavailable

log = logging.getLogger("slmkit.server")
FAILURES = (RedisError, OSError)


def connect(url: str, timeout: float = 2.0) -> aioredis.Redis:
    """A client for ``url`` that gives up after ``timeout`` seconds rather than hang."""
    return aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=2, health_check_interval=30)


async def call(pending: Any, setting: str = "SLM_RESPONSES_STORE") -> Any:
    """Await a Redis call; a failure becomes SharedStateUnavailable (HTTP 503)."""
    try:
        return await pending
    except FAILURES as exc:
        log.warning("shared state (%s): Redis failed (%s)", setting, type(exc).__name__)
        raise SharedStateUnavailable(f"the shared state ({setting}) is unavailable; try again") from None
