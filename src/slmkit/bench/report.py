"""Bench results as JSON, a Markdown report, PNG charts, and side-by-side comparisons."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from slmkit import jsonout
from slmkit.errors import InvalidRequest


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * 1000:.0f}"


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        f"# slm bench ({result['when']})",
        "",
        f"{plan['num_requests']} requests per target and level, {plan['output_tokens']} output tokens, "
        f"{'chat prompts' if not plan['input_tokens'] else str(plan['input_tokens']) + '-token prompts'}; "
        f"targets interleaved. Ratios are to the first target.",
        "",
        "| concurrency | target | out tok/s | x first | per-stream tok/s p50 | TTFT p50/p90/p99 ms "
        "| ITL p50 ms | e2e p50 ms | goodput | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in result["levels"]:
        first = None
        for label, a in level["targets"].items():
            first = first if first is not None else a["output_tok_s"]
            t = a["ttft_s"]
            lines.append(
                f"| {level['concurrency']} | {label} | {a['output_tok_s']:.1f} | "
                f"{a['output_tok_s'] / first:.2f} | {a['per_stream_tok_s']['p50']:.1f} | "
                f"{_ms(t['p50'])}/{_ms(t['p90'])}/{_ms(t['p99'])} | {_ms(a['itl_s']['p50'])} | "
                f"{_ms(a['e2e_s']['p50'])} | {a['goodput_fraction']:.0%} | {sum(a['errors'].values())} |"
                if first
                else f"| {level['concurrency']} | {label} | 0 | - | - | - | - | - | - | "
                f"{sum(a['errors'].values())} |"
            )
    for label, res in result.get("resources", {}).items():
        rss = res.get("peak_rss_bytes", 0) / 2**20
        lines.append(
            f"\n{label}: peak RSS {rss:.0f} MiB, CPU {res.get('cpu_seconds', 0):.1f} s, "
            f"load {res.get('load_seconds', 0):.2f} s"
        )
    return "\n".join(lines) + "\n"


def charts(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    levels = result["levels"]
    labels = result["targets"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for label in labels:
        ax.plot(
            [lv["concurrency"] for lv in levels],
            [lv["targets"][label]["output_tok_s"] for lv in levels],
            marker="o",
            label=label,
        )
    ax.set(xlabel="concurrent clients", ylabel="output tokens / s", title="Throughput vs concurrency")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    paths.append(out / "throughput.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    top = levels[-1]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        s = top["targets"][label]["e2e_s"]
        ax.bar([q + i * width for q in range(3)], [s["p50"], s["p90"], s["p99"]], width, label=label)
    ax.set_xticks([q + width * (len(labels) - 1) / 2 for q in range(3)], ["p50", "p90", "p99"])
    ax.set(ylabel="seconds", title=f"End-to-end latency at concurrency {top['concurrency']}")
    ax.legend(fontsize=7)
    paths.append(out / "latency.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for label in labels:
        samples = top["ttft_samples"][label]
        if samples:
            ax.hist(samples, bins=20, alpha=0.5, label=label)
    ax.set(
        xlabel="time to first token (s)", ylabel="requests", title=f"TTFT at concurrency {top['concurrency']}"
    )
    ax.legend(fontsize=7)
    paths.append(out / "ttft.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    jsonout.write(out / "results.json", result)
    (out / "report.md").write_text(markdown(result))
    return [out / "results.json", out / "report.md", *charts(result, out)]


def compare(results: list[dict[str, Any]], names: list[str]) -> str:
    """Side by side: each run's first target, per concurrency level, with ratios to the first run."""
    lines = [
        "| concurrency | "
        + " | ".join(f"{n} tok/s (ratio)" for n in names)
        + " | "
        + " | ".join(f"{n} TTFT p50 ms" for n in names)
        + " |",
        "|---|" + "---|" * (2 * len(names)),
    ]
    by_level: dict[int, list[dict[str, Any] | None]] = {}
    for i, result in enumerate(results):
        for level in result["levels"]:
            first = next(iter(level["targets"].values()))
            by_level.setdefault(level["concurrency"], [None] * len(results))[i] = first
    for concurrency, rows in sorted(by_level.items()):
        base = rows[0]["output_tok_s"] if rows[0] else None
        tps = [
            f"{r['output_tok_s']:.1f} ({r['output_tok_s'] / base:.2f})" if r and base else "-" for r in rows
        ]
        ttft = [_ms(r["ttft_s"]["p50"]) if r else "-" for r in rows]
        lines.append(f"| {concurrency} | " + " | ".join(tps) + " | " + " | ".join(ttft) + " |")
    return "\n".join(lines) + "\n"


def read(path: Path, field: str, missing: str) -> dict[str, Any]:
    """One `slm bench` results.json, or an InvalidRequest naming ``field``, the file and (when
    it is not there) ``missing``: how to make one."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"{field}: {path} does not exist; {missing}") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequest(
            f"{field}: {path} is not `slm bench` results.json ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict) or "levels" not in data:
        raise InvalidRequest(f"{field}: {path} is not `slm bench` results.json (no levels)")
    return data
