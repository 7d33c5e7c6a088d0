"""Capacity from measurement: how many replicas a target load needs, from `slm bench` results.

A bench run (results.json) measured one server at several concurrency levels. At each level
one replica completes ``completed / duration`` requests per second (and ``output_tok_s``
tokens per second). The operating point is the level with the most throughput whose p90 time
to first token stays within ``slo_ttft`` (every level when none is given), counting only
levels where every request completed. A replica is planned at ``UTILISATION`` of that
throughput, so a burst finds room before the autoscaler reacts:

    replicas     = ceil(target / (per-replica throughput x UTILISATION))
    max replicas = max(replicas + 1, 2 x replicas)       (bursts, a replica restarting)
    queue        = requests waiting per replica at the operating point (concurrency - slots),
                   at least 1: KEDA adds replicas when the average waiting exceeds it

Pure: reads nothing but the dict it is given; the CLI prints ``reasoning``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import InvalidRequest

UTILISATION = 0.75  # plan each replica at this share of its measured throughput


@dataclass(frozen=True)
class Capacity:
    replicas: int
    max_replicas: int
    queue_threshold: int
    per_replica: float  # requests (or tokens) per second one replica serves at the operating point
    unit: str  # "requests/s" or "tokens/s"
    concurrency: int  # the operating point's concurrency level
    reasoning: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas, "max_replicas": self.max_replicas,
            "queue_threshold": self.queue_threshold, "per_replica": round(self.per_replica, 3),
            "unit": self.unit, "concurrency": self.concurrency, "reasoning": self.reasoning,
        }  # fmt: skip


def pick_target(results: dict[str, Any], model: str, name: str | None) -> str:
    """The bench target that measured ``model``: ``name`` when given, else the only one, else
    the one whose name contains the model's (``smollm2:135m`` matches ``smollm2-135m-q4_1``)."""
    targets = [str(t) for t in results.get("targets") or []]
    if not targets:
        raise InvalidRequest("--bench: the results hold no targets (not `slm bench` results.json?)")
    if name is not None:
        if name not in targets:
            raise InvalidRequest(f"--bench-target: {name!r} is not one of {', '.join(targets)}")
        return name
    if len(targets) == 1:
        return targets[0]
    key = "-".join(model.lower().split("/")[-1].split(":"))
    matches = [t for t in targets if key in t.lower()]
    if len(matches) != 1:
        raise InvalidRequest(
            f"--bench-target: the results measured {', '.join(targets)}; name the one that is {model}"
        )
    return matches[0]


def plan_capacity(
    results: dict[str, Any],
    target: str,
    *,
    rps: float | None = None,
    tps: float | None = None,
    parallel: int,
    threads: int,
    slo_ttft: float | None = None,
) -> Capacity:
    if (rps is None) == (tps is None):
        raise InvalidRequest("give one of --target-rps and --target-tps")
    goal = float(rps if rps is not None else tps)  # type: ignore[arg-type]
    if not math.isfinite(goal) or goal <= 0:
        raise InvalidRequest("--target-rps / --target-tps: must be a positive number")
    unit = "requests/s" if rps is not None else "tokens/s"
    points = []
    for level in results.get("levels") or []:
        measured: dict[str, Any] = (level.get("targets") or {}).get(target) or {}
        complete = bool(measured) and measured.get("completed") == measured.get("requests")
        if not complete or not measured.get("duration_s"):
            continue  # failed requests: not an operating point
        ttft = float((measured.get("ttft_s") or {}).get("p90") or 0.0)
        if slo_ttft is not None and ttft > slo_ttft:
            continue
        if rps is not None:
            per_second = measured["completed"] / measured["duration_s"]
        else:
            per_second = float(measured["output_tok_s"])
        points.append((per_second, int(level["concurrency"]), ttft))
    if not points:
        slo = f" with p90 TTFT within {slo_ttft:g} s" if slo_ttft is not None else ""
        raise InvalidRequest(f"--bench: no concurrency level of {target} completed every request{slo}")
    per_replica, concurrency, ttft = max(points)
    replicas = max(1, math.ceil(goal / (per_replica * UTILISATION)))
    max_replicas = max(replicas + 1, 2 * replicas)
    queue = max(1, concurrency - parallel)
    machine = results.get("machine") or {}
    cpus = machine.get("cpus")
    levels = ", ".join(str(p[1]) for p in sorted(points, key=lambda p: p[1]))
    reasoning = [
        f"bench: {target}, measured {results.get('when', 'at an unknown time')} on "
        f"{cpus if cpus else '?'} CPUs; levels {levels}"
        + (f" within p90 TTFT {slo_ttft:g} s" if slo_ttft is not None else ""),
        f"operating point: {concurrency} concurrent requests, {per_replica:.3g} {unit} per replica "
        f"(p90 TTFT {ttft:.3g} s)",
        f"replicas = ceil({goal:g} / ({per_replica:.3g} x {UTILISATION:g})) = {replicas}; "
        f"max replicas = max({replicas} + 1, 2 x {replicas}) = {max_replicas}",
        f"KEDA queue threshold = max(1, {concurrency} concurrent - {parallel} slots) = {queue} waiting "
        "per replica",
    ]
    if cpus and int(cpus) != threads:
        reasoning.append(
            f"note: the bench machine had {cpus} CPUs and each replica gets {threads} threads: bench on "
            "the nodes' hardware class (slm bench) for numbers that hold there"
        )
    return Capacity(replicas, max_replicas, queue, per_replica, unit, concurrency, reasoning)
