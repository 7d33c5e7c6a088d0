"""Stored responses in Redis, shared by every replica (``SLM_RESPONSES_STORE=redis://...``).

The same rules as the in-memory store (store.py): per owner (the API key's id), so an id
that belongs to another key is answered like one that never existed; at most ``per_owner``
responses per owner, the oldest dropped first; gone after ``ttl``; all owners together at
most ``max_bytes``, over which the owner holding the most loses its oldest. Each change runs
as one Lua script, so replicas writing at once never break the bounds or the byte counts.

Keys, under one prefix (``slm:responses:``): ``entry:<owner>:<id>`` the response and its
context as JSON (expiring with the TTL), ``order:<owner>`` a sorted set of ids by expiry
(with one TTL, the order they were stored), ``size:<owner>`` each id's bytes, ``bytes``
bytes per owner, ``total`` and ``count``.
Expired entries leave the indexes at the next write. Redis that does not answer within a
couple of seconds is :class:`SharedStateUnavailable` (503), never a hang; the message never
names its address (it may carry a password).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from slmkit import shared_state
from slmkit.server.responses.store import Item, Stored, size_of

PREFIX = "slm:responses:"
ID = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what our ids look like; anything else is not looked up

# drop(owner, id): forget one entry and charge its bytes back
_LIB = """
local p = ARGV[1]
local function drop(o, r)
  local size = tonumber(redis.call('HGET', p .. 'size:' .. o, r) or '0')
  if redis.call('ZREM', p .. 'order:' .. o, r) == 0 then return 0 end
  redis.call('HDEL', p .. 'size:' .. o, r)
  redis.call('DEL', p .. 'entry:' .. o .. ':' .. r)
  redis.call('DECR', p .. 'count')
  if size > 0 then
    if redis.call('HINCRBY', p .. 'bytes', o, -size) <= 0 then redis.call('HDEL', p .. 'bytes', o) end
    redis.call('DECRBY', p .. 'total', size)
  end
  return 1
end
local function totals()
  return {tonumber(redis.call('GET', p .. 'count') or '0'), tonumber(redis.call('GET', p .. 'total') or '0')}
end
"""

# ARGV: prefix, owner, id, payload, size, now (ms), ttl (ms), per owner, max bytes
_PUT = (
    _LIB
    + """
local o, r, payload = ARGV[2], ARGV[3], ARGV[4]
local size, now, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local per_owner, max_bytes = tonumber(ARGV[8]), tonumber(ARGV[9])
for _, owner in ipairs(redis.call('HKEYS', p .. 'bytes')) do
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', p .. 'order:' .. owner, '-inf', now)) do
    drop(owner, old)
  end
end
drop(o, r)
redis.call('SET', p .. 'entry:' .. o .. ':' .. r, payload, 'PX', ttl)
redis.call('ZADD', p .. 'order:' .. o, now + ttl, r)
redis.call('HSET', p .. 'size:' .. o, r, size)
redis.call('HINCRBY', p .. 'bytes', o, size)
redis.call('INCRBY', p .. 'total', size)
redis.call('INCR', p .. 'count')
while redis.call('ZCARD', p .. 'order:' .. o) > per_owner do
  drop(o, redis.call('ZRANGE', p .. 'order:' .. o, 0, 0)[1])
end
while tonumber(redis.call('GET', p .. 'total') or '0') > max_bytes do
  local owners = redis.call('HGETALL', p .. 'bytes')
  local heaviest, most = nil, -1
  for i = 1, #owners, 2 do
    local b = tonumber(owners[i + 1])
    if b > most then heaviest, most = owners[i], b end
  end
  if heaviest == nil then break end
  local oldest = redis.call('ZRANGE', p .. 'order:' .. heaviest, 0, 0)[1]
  if oldest == nil then redis.call('HDEL', p .. 'bytes', heaviest) else drop(heaviest, oldest) end
end
local t = totals()
return {redis.call('ZSCORE', p .. 'order:' .. o, r) and 1 or 0, t[1], t[2]}
"""
)

# ARGV: prefix, owner, id
_DELETE = (
    _LIB
    + """
local gone, o, r = 0, ARGV[2], ARGV[3]
if redis.call('EXISTS', p .. 'entry:' .. o .. ':' .. r) == 1 then gone = drop(o, r) end
local t = totals()
return {gone, t[1], t[2]}
"""
)


class RedisResponses:
    """The Responses store of :mod:`store` (``get``/``put``/``delete``), kept in Redis."""

    def __init__(self, url: str, per_owner: int, ttl: float, max_bytes: int, prefix: str = PREFIX) -> None:
        self.per_owner, self.ttl, self.max_bytes, self.prefix = per_owner, ttl, max_bytes, prefix
        self._redis = shared_state.connect(url)
        self._put = self._redis.register_script(_PUT)
        self._delete = self._redis.register_script(_DELETE)
        self.count = 0  # the shared totals as last seen (metrics); every write refreshes them
        self.total_bytes = 0

    @property
    def enabled(self) -> bool:
        return self.per_owner > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return self.count

    async def get(self, owner: str, rid: str) -> Stored | None:
        if not ID.fullmatch(rid):  # never a key pattern or another owner's key part
            return None
        raw = await shared_state.call(self._redis.get(f"{self.prefix}entry:{owner}:{rid}"))
        if raw is None:
            return None
        data = json.loads(raw)
        context = tuple(data["context"])
        return Stored(data["response"], context, data["size"], data["expires"], int(data.get("inputs", 0)))

    async def put(
        self, owner: str, response: dict[str, Any], context: tuple[Item, ...], inputs: int = 0
    ) -> bool:
        if not self.enabled:
            return False
        size = size_of(response, context)
        if size > self.max_bytes or not ID.fullmatch(str(response["id"])):
            return False  # could never be kept: not sent
        now = time.time()
        payload = json.dumps(
            {"response": response, "context": context, "size": size, "expires": now + self.ttl,
             "inputs": inputs},
            separators=(",", ":"), default=str,
        )  # fmt: skip
        ttl_ms = max(1, int(self.ttl * 1000))
        args: list[str | int] = [self.prefix, owner, str(response["id"]), payload, size,
                                 int(now * 1000), ttl_ms, self.per_owner, self.max_bytes]  # fmt: skip
        kept, self.count, self.total_bytes = await shared_state.call(self._put(args=args))
        return bool(kept)

    async def delete(self, owner: str, rid: str) -> bool:
        if not ID.fullmatch(rid):
            return False
        gone, self.count, self.total_bytes = await shared_state.call(
            self._delete(args=[self.prefix, owner, rid])
        )
        return bool(gone)

    async def close(self) -> None:
        await self._redis.aclose()
