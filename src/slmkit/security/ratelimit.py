"""Per-key rate limits: token buckets for requests and for tokens, per minute.

A request is admitted while both of its key's buckets hold at least one unit; generated
and prompt tokens are charged when the request ends, so a bucket can go negative and
then refuses requests until it refills. Refusals carry the seconds until it has refilled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slmkit.security.keys import ApiKey


@dataclass
class Bucket:
    rate: float  # units per second
    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self) -> float:
        """Seconds until the bucket holds one unit."""
        return max(0.0, (1.0 - self.level) / self.rate)


@dataclass
class RateLimiter:
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)

    def _bucket(self, key: ApiKey, kind: str, per_minute: int) -> Bucket:
        bucket = self._buckets.get((key.id, kind))
        now = self.clock()
        if bucket is None or bucket.capacity != per_minute:
            bucket = Bucket(per_minute / 60.0, float(per_minute), float(per_minute), now)
            self._buckets[(key.id, kind)] = bucket
        bucket.refill(now)
        return bucket

    def admit(self, key: ApiKey) -> float:
        """0 when the request may go ahead (and is counted), else seconds to wait."""
        waits = []
        buckets = []
        for kind, limit in (("requests", key.rpm), ("tokens", key.tpm)):
            if limit:
                bucket = self._bucket(key, kind, limit)
                buckets.append((kind, bucket))
                waits.append(bucket.wait())
        if any(w > 0 for w in waits):
            return max(waits)
        for kind, bucket in buckets:
            if kind == "requests":
                bucket.level -= 1
        return 0.0

    def charge(self, key: ApiKey, tokens: int) -> None:
        if key.tpm and tokens:
            self._bucket(key, "tokens", key.tpm).level -= tokens
