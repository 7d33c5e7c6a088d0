"""Bench statistics on synthetic timings (exact values), reports, compare, failures as errors."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from slmkit.bench import report
from slmkit.bench.runner import Plan, run
from slmkit.bench.stats import RequestResult, aggregate, percentile, summary


def test_percentile_matches_linear_interpolation() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 50) == 30.0
    assert percentile(values, 90) == pytest.approx(46.0)
    assert percentile(values, 99) == pytest.approx(49.6)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    assert summary([1.0, 3.0])["mean"] == 2.0


def req(sent: float, first: float, done: float, tokens: int, error: str | None = None) -> RequestResult:
    return RequestResult(sent=sent, first_token=first, finished=done, output_tokens=tokens, error=error)


def test_aggregate_exact() -> None:
    results = [
        req(0.0, 0.1, 1.1, 11),  # ttft 0.1, itl 0.1, 11 tokens over 1.0 s after the first
        req(0.0, 0.3, 2.3, 11),  # ttft 0.3, itl 0.2
        req(1.0, 1.5, 3.0, 4),  # ttft 0.5, itl 0.5
        RequestResult(sent=0.5, error="http_503"),
    ]
    a = aggregate(results, slo_ttft=0.35, slo_itl=0.25)
    assert a["completed"] == 3 and a["errors"] == {"http_503": 1}
    assert a["duration_s"] == 3.0 and a["output_tokens"] == 26
    assert a["output_tok_s"] == pytest.approx(26 / 3)
    assert a["ttft_s"]["p50"] == pytest.approx(0.3)  # type: ignore[index]
    assert a["itl_s"]["p50"] == pytest.approx(0.2)  # type: ignore[index]
    assert a["e2e_s"]["p99"] == pytest.approx(2.3 - (2.3 - 2.0) * 0.02)  # type: ignore[index]
    assert a["goodput_fraction"] == 0.5  # the first two meet both SLOs, 4 requests in all
    assert a["goodput_rps"] == pytest.approx(2 / 3)


class FakeTarget:
    """Deterministic timings; fails on every third request when told to."""

    def __init__(self, label: str, speed: float, fail: bool = False) -> None:
        self.label, self.speed, self.fail, self.calls = label, speed, fail, 0

    async def request(self, prompt: str, max_tokens: int) -> RequestResult:
        self.calls += 1
        if self.fail and self.calls % 3 == 0:
            return RequestResult(sent=0.0, error="connection")
        await asyncio.sleep(0)
        return RequestResult(
            sent=0.0, first_token=0.01, finished=0.01 + max_tokens / self.speed, output_tokens=max_tokens
        )

    async def close(self) -> None:
        pass


def test_run_interleaves_reports_and_compares(tmp_path: Path) -> None:
    fast, slow = FakeTarget("fast", 200.0), FakeTarget("slow", 100.0, fail=True)
    plan = Plan(concurrency=[1, 2], num_requests=4, output_tokens=10)
    result = asyncio.run(run([fast, slow], plan))  # type: ignore[list-item]
    level = result["levels"][0]  # type: ignore[index]
    assert set(level["targets"]) == {"fast", "slow"}
    assert level["targets"]["slow"]["errors"] == {"connection": 1} or level["targets"]["slow"]["errors"]
    assert level["targets"]["fast"]["output_tok_s"] > 0
    paths = report.write(result, tmp_path / "a")  # type: ignore[arg-type]
    assert {p.name for p in paths} == {
        "results.json",
        "report.md",
        "throughput.png",
        "latency.png",
        "ttft.png",
    }
    assert all(p.stat().st_size > 0 for p in paths)
    md = (tmp_path / "a" / "report.md").read_text()
    assert "| 1 | fast |" in md and "| 2 | slow |" in md
    other = json.loads((tmp_path / "a" / "results.json").read_text())
    table = report.compare([other, other], ["a", "b"])
    assert "(1.00)" in table and "| 2 |" in table


def test_busy_time_excludes_other_targets_rounds() -> None:
    results = [req(0.0, 0.1, 1.0, 10), req(5.0, 5.1, 6.0, 10)]  # another target ran from 1.0 to 5.0
    assert aggregate(results, busy=2.0)["output_tok_s"] == 10.0
    assert aggregate(results)["output_tok_s"] == pytest.approx(20 / 6)


def test_multi_turn_prompts_share_growing_prefixes() -> None:
    from slmkit.bench.prompts import multi_turn

    prompts = multi_turn(6, 3, seed=1)  # 2 conversations x 3 turns, interleaved
    assert len(prompts) == 6
    c0 = [prompts[0], prompts[2], prompts[4]]
    assert c0[1].startswith(c0[0].removesuffix("Assistant:").rstrip("\n").split("User: ")[0])
    assert c0[2].count("User: ") == 3 and c0[1].count("User: ") == 2
    assert c0[2].startswith(c0[1].rsplit("User: ", 1)[0])


def test_duration_repeats_the_workload() -> None:
    target = FakeTarget("t", 1000.0)
    plan = Plan(concurrency=[1], num_requests=2, output_tokens=5, duration=0.05)
    result = asyncio.run(run([target], plan))  # type: ignore[list-item]
    assert result["levels"][0]["targets"]["t"]["requests"] > 2  # type: ignore[index]
