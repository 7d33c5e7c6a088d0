"""Who runs a batch job when replicas share one store (``SLM_BATCH_LEASES``).

Without leases (the default), the server runs every unfinished job in its store: right for
one server per store. Replicas sharing a store (a shared volume) take a lease per job in
Redis before running it: ``SET NX PX`` with this replica's token, renewed every third of
its time while the job runs and given back when it ends. A replica that dies stops
renewing; within one lease time another replica takes the job over and resumes it from its
results files, as a restart does (lines answered are kept, lines in flight are redone). A
holder that cannot renew (Redis gone, or another replica took it) stops running the job.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Protocol

from slmkit import shared_state

log = logging.getLogger("slmkit.batch")
LEASE_SECONDS = 15.0
PREFIX = "slm:batch-lease:"
# Closing the client waits for its connections; one whose command was cancelled mid-flight
# (a stopping replica) was once seen to never finish closing, which hung the stop: a stop
# waits this long, then drops the connections instead.
CLOSE_SECONDS = 5.0

# ARGV: key, token, ttl (ms): extend our own lease only
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases(Protocol):
    shared: bool  # other replicas run jobs from the same store
    seconds: float  # how long a lease lasts without renewal

    async def acquire(self, job_id: str) -> bool: ...
    async def renew(self, job_id: str) -> bool: ...
    async def release(self, job_id: str) -> None: ...
    async def close(self) -> None: ...


class OwnStore:
    """One server per store: every job is this server's."""

    shared = False
    seconds = LEASE_SECONDS

    async def acquire(self, job_id: str) -> bool:
        return True

    async def renew(self, job_id: str) -> bool:
        return True

    async def release(self, job_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisLeases:
    shared = True

    def __init__(self, url: str, seconds: float = LEASE_SECONDS, prefix: str = PREFIX) -> None:
        self.seconds, self.prefix = seconds, prefix
        self.token = secrets.token_hex(8)  # this replica
        self._redis = shared_state.connect(url)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    @property
    def _ms(self) -> int:
        return max(1, int(self.seconds * 1000))

    async def acquire(self, job_id: str) -> bool:
        try:
            return bool(await self._redis.set(self.prefix + job_id, self.token, nx=True, px=self._ms))
        except shared_state.FAILURES as exc:
            log.warning("batch leases: Redis did not answer (%s); no job taken", type(exc).__name__)
            return False

    async def renew(self, job_id: str) -> bool:
        try:
            return bool(await self._renew(keys=[self.prefix + job_id], args=[self.token, self._ms]))
        except shared_state.FAILURES as exc:
            log.warning("batch leases: Redis did not answer (%s)", type(exc).__name__)
            return False

    async def release(self, job_id: str) -> None:
        try:
            await self._release(keys=[self.prefix + job_id], args=[self.token])
        except shared_state.FAILURES:
            pass  # it expires by itself

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._redis.aclose(), CLOSE_SECONDS)
        except (TimeoutError, *shared_state.FAILURES) as exc:
            log.warning("batch leases: the Redis client did not close (%s); dropped", type(exc).__name__)
            try:
                await asyncio.wait_for(self._redis.connection_pool.disconnect(), CLOSE_SECONDS)
            except (TimeoutError, *shared_state.FAILURES):
                pass  # the process goes on; the server drops the connection when it ends


def open_leases(url: str) -> Leases:
    """SLM_BATCH_LEASES: empty (one server per store) or a Redis URL."""
    return RedisLeases(url) if url else OwnStore()
