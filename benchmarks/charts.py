"""Charts of committed benchmark results, drawn from their JSON (no rerun needed).

    .venv/bin/python benchmarks/charts.py [interactive-under-load-smollm2 kv-pool-smollm2 ...]

Each name is a results file under benchmarks/results/ (without .json); the chart is written
beside it as .png. Known shapes: interactive-under-load-* (TTFT and inter-token p90 against
idle, per scenario, with the targets), kv-pool-* (memory and throughput per KV layout),
kv-memory (worker RSS against llama-server) and neighbour (answers next to a busy process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"


def interactive(report: dict[str, Any], path: Path) -> None:
    scenarios = [name for name in report["scenarios"] if name != "idle"]
    ttft = [report["scenarios"][s]["ttft_p90_x_idle"] for s in scenarios]
    itl = [report["scenarios"][s]["itl_p90_x_idle"] for s in scenarios]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(scenarios))
    ax.bar([x - 0.2 for x in xs], ttft, width=0.4, label="TTFT p90 / idle (target <= 2)")
    ax.bar([x + 0.2 for x in xs], itl, width=0.4, label="inter-token p90 / idle (target <= 1.5)")
    ax.axhline(2.0, color="C0", linestyle="--", linewidth=1)
    ax.axhline(1.5, color="C1", linestyle="--", linewidth=1)
    ax.set_xticks(list(xs), scenarios)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("x idle")
    ax.set_title(f"Interactive chats under load ({report['model']}, {report['date'][:10]})")
    for x, value in zip(xs, ttft, strict=True):
        ax.annotate(f"{value:.2f}", (x - 0.2, value), ha="center", va="bottom", fontsize=8)
    for x, value in zip(xs, itl, strict=True):
        ax.annotate(f"{value:.2f}", (x + 0.2, value), ha="center", va="bottom", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def kv_pool(report: dict[str, Any], path: Path) -> None:
    rows = report["rows"]
    labels = [f"{r['slots']} slots\n{'shared' if r['slots'] > 4 else 'a pool each'}" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6))
    left.bar(labels, [r["worker_peak_MiB"] for r in rows], color="C0")
    left.set_ylabel("worker peak RSS (MiB)")
    left.set_title("memory")
    right.bar(labels, [r["tok_per_s"] for r in rows], color="C1")
    right.set_ylabel("answer tokens/s, all conversations")
    right.set_title("throughput")
    size = rows[0]["tokens_per_conversation"]
    fig.suptitle(f"{rows[0]['conversations']} conversations of ~{size:.0f} tokens at once, 16384 KV cells")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def kv_memory(report: dict[str, Any], path: Path) -> None:
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = range(len(rows))
    series = (
        ("slmkit", "slmkit_MiB"),
        ("slmkit SLM_SWA_FULL=1", "slmkit_swa_full_MiB"),
        ("llama-server", "llama_server_MiB"),
    )
    for k, (label, key) in enumerate(series):
        ax.bar([x + (k - 1) * 0.27 for x in xs], [r[key] or 0 for r in rows], width=0.27, label=label)
    ax.set_xticks(list(xs), [r["model"] for r in rows])
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_title(f"{report['slots']} slots x {report['context']} tokens, each slot written")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def neighbour(report: dict[str, Any], path: Path) -> None:
    runs = report["runs"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = range(len(runs))
    ax.bar([x - 0.2 for x in xs], [r["first_ratio"] for r in runs.values()], width=0.4, label="first answer")
    ax.bar([x + 0.2 for x in xs], [r["ratio"] for r in runs.values()], width=0.4, label="later answers")
    ax.axhline(1.5, color="grey", linestyle="--", label="target 1.5x")
    ax.set_xticks(list(xs), list(runs))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("x idle")
    ax.set_title(
        f"A 48-token answer next to {report['busy_neighbours']} busy process, {report['cores']} cores"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


DRAW = {
    "interactive-under-load": interactive,
    "kv-pool": kv_pool,
    "kv-memory": kv_memory,
    "neighbour": neighbour,
}


def main(names: list[str]) -> None:
    for name in names:
        report = json.loads((RESULTS / f"{name}.json").read_text())
        kind = next(k for k in DRAW if name.startswith(k))
        DRAW[kind](report, RESULTS / f"{name}.png")
        print(RESULTS / f"{name}.png")


if __name__ == "__main__":
    main(sys.argv[1:] or ["interactive-under-load-smollm2", "kv-pool-smollm2", "kv-memory", "neighbour"])
