"""Each serving knob's effect, in one table: flash attention, the KV cache type, the unified pool.

    .venv/bin/python benchmarks/knobs.py [--model smollm2|gemma] [--threads 1] [--tokens 96] [--rounds 2]

For each configuration (SLM_FLASH_ATTENTION off/auto/on with an f16 KV cache; q8_0 and q4_0 KV
caches with flash attention on; SLM_KV_UNIFIED=1), starts `slm serve` (SLM_NUM_PARALLEL=4,
context 4096 per slot) and measures through /v1/completions with ignore_eos: decode tok/s of one stream,
aggregate tok/s of 4, TTFT of 4, and the worker's peak RSS. Configurations run in
interleaved rounds and the median is reported, relative to flash attention off + f16 (the
figure that survives a neighbour's load). Writes benchmarks/results/knobs-<model>.json/.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from common import start_server
from serving import PeakRss, concurrent, model_file, prompt_for, stream_once

RESULTS = Path(__file__).parent / "results"
CONFIGS = {
    "FA off, KV f16": {"SLM_FLASH_ATTENTION": "off", "SLM_KV_CACHE_TYPE": "f16"},
    "FA auto (default), KV f16": {"SLM_FLASH_ATTENTION": "auto", "SLM_KV_CACHE_TYPE": "f16"},
    "FA on, KV f16": {"SLM_FLASH_ATTENTION": "on", "SLM_KV_CACHE_TYPE": "f16"},
    "FA on, KV q8_0": {"SLM_FLASH_ATTENTION": "on", "SLM_KV_CACHE_TYPE": "q8_0"},
    "FA on, KV q4_0": {"SLM_FLASH_ATTENTION": "on", "SLM_KV_CACHE_TYPE": "q4_0"},
    "FA auto, KV f16, one unified pool": {
        "SLM_FLASH_ATTENTION": "auto",
        "SLM_KV_CACHE_TYPE": "f16",
        "SLM_KV_UNIFIED": "1",
    },
}


def run(models: Path, threads: int, tokens: int, settings: dict[str, str]) -> dict[str, float]:
    proc, url = start_server(models, threads, SLM_NUM_PARALLEL="4", **settings)
    peak = PeakRss(proc.pid)
    peak.start()
    try:
        with httpx.Client() as http:
            stream_once(http, url, prompt_for(0), 8)  # load and warm up
            one = stream_once(http, url, prompt_for(1), tokens)
        four = concurrent(url, 4, tokens)
    finally:
        peak.stop.set()
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "one_tok_s": one.decode_tok_s,
        "four_aggregate_tok_s": four["aggregate_tok_s"],
        "four_ttft_s": four["ttft_median_s"],
        "worker_rss_mib": peak.worker / 2**20,
    }


def row(name: str, m: dict[str, float], base: dict[str, float]) -> str:
    one, four = m["one_tok_s"], m["four_aggregate_tok_s"]
    return (
        f"| {name} | {one:.1f} ({one / base['one_tok_s']:.2f}x) "
        f"| {four:.1f} ({four / base['four_aggregate_tok_s']:.2f}x) "
        f"| {m['four_ttft_s']:.2f} | {m['worker_rss_mib']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from slmkit.store import ModelStore

    models = Path(tempfile.mkdtemp(prefix="slm-knobs-"))
    ModelStore(models).import_gguf("bench", model_file(args.model))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, settings in CONFIGS.items():
            runs[name].append(run(models, args.threads, args.tokens, settings))
    median: dict[str, dict[str, float]] = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    base = median["FA off, KV f16"]
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "threads": args.threads,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "median": median,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"knobs-{args.model}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Knobs, {args.model}, {args.threads} thread(s), 4 slots x 4096 context, {args.tokens} tokens",
        "",
        "| configuration | 1 stream tok/s | 4 streams tok/s | TTFT at 4 (s) | worker RSS (MiB) |",
        "|---|---|---|---|---|",
        *(row(name, m, base) for name, m in median.items()),
    ]
    (RESULTS / f"knobs-{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
