"""The statistics of a benchmark, on plain lists of timings (exact, tested on synthetic data)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99 (NaN when empty)."""
    return {
        "mean": sum(values) / len(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
    }


@dataclass
class RequestResult:
    """One request as the client saw it; times in seconds."""

    sent: float
    first_token: float | None = None  # when the first text arrived
    finished: float | None = None
    output_tokens: int = 0
    prompt_tokens: int = 0
    gaps: list[float] = field(default_factory=list)  # seconds between streamed chunks, per token
    error: str | None = None  # kind of failure, when it failed

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.sent

    @property
    def e2e(self) -> float | None:
        return None if self.finished is None else self.finished - self.sent

    @property
    def itl(self) -> float | None:
        """Mean inter-token latency of this request."""
        if self.first_token is None or self.finished is None or self.output_tokens < 2:
            return None
        return (self.finished - self.first_token) / (self.output_tokens - 1)


def aggregate(
    results: Sequence[RequestResult],
    *,
    slo_ttft: float | None = None,
    slo_itl: float | None = None,
    busy: float | None = None,
) -> dict[str, object]:
    """Everything `slm bench` reports for one target at one load. ``busy``: the seconds the
    target was being measured (other targets' interleaved rounds excluded); default: from
    the first request sent to the last one finished."""
    ok = [r for r in results if r.error is None and r.finished is not None]
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
    ends = [r.finished for r in ok if r.finished is not None]
    first_to_last = (max(ends) - min(r.sent for r in ok)) if ok else 0.0
    span = busy if busy is not None else first_to_last
    tokens = sum(r.output_tokens for r in ok)
    per_stream = [
        r.output_tokens / (r.finished - r.first_token)
        for r in ok
        if r.first_token is not None
        and r.finished is not None
        and r.finished > r.first_token
        and r.output_tokens > 1
    ]
    good = [
        r
        for r in ok
        if (slo_ttft is None or (r.ttft is not None and r.ttft <= slo_ttft))
        and (slo_itl is None or (r.itl is not None and r.itl <= slo_itl))
    ]
    return {
        "requests": len(results),
        "completed": len(ok),
        "errors": errors,
        "output_tokens": tokens,
        "duration_s": span,
        "output_tok_s": tokens / span if span > 0 else 0.0,
        "prompt_tok_s": sum(r.prompt_tokens for r in ok) / span if span > 0 else 0.0,
        "per_stream_tok_s": summary(per_stream),
        "ttft_s": summary([r.ttft for r in ok if r.ttft is not None]),
        "itl_s": summary([r.itl for r in ok if r.itl is not None]),
        "e2e_s": summary([r.e2e for r in ok if r.e2e is not None]),
        "goodput_rps": len(good) / span if span > 0 else 0.0,
        "goodput_fraction": len(good) / len(results) if results else 0.0,
    }
