"""Short conversations in the memory of 4 slots x 4096 tokens: slmkit with a pool per slot (4
slots, the default layout) against one shared pool of the same 16384 cells (SLM_KV_POOL) with
many more slots.

    .venv/bin/python benchmarks/kv_pool.py [--model smollm2] [--slots 32,40] [--threads 2]

Each run sends ``--conversations`` (default: the most slots of any run) conversations at once,
each a unique ~400-token prompt and a 112-token answer (ignore_eos), so each ends near 512 cells.
Reports per run: answers completed and failed, the preemptions the server counted
(slm_preemptions_total), the worker's peak RSS, wall time, tokens/s, and time to first token.
Writes benchmarks/results/kv-pool-{model}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import start_server
from serving import model_file

RESULTS = Path(__file__).parent / "results"
MiB = 1024 * 1024
CELLS = 4 * 4096  # what 4 slots x 4096 tokens hold
ANSWER = 112


def prompt(i: int) -> str:
    return f"Conversation {i}. " + " ".join(f"item {i}-{k} is on the shelf," for k in range(34))


def converse(url: str, i: int) -> dict[str, Any]:
    body = {
        "model": "bench",
        "prompt": prompt(i),
        "max_tokens": ANSWER,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    usage: dict[str, int] = {}
    try:
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=1800) as reply:
            if reply.status_code != 200:
                return {"ok": False, "error": f"{reply.status_code}: {reply.read()[:200]!r}"}
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text") and first is None:
                    first = time.perf_counter() - started
                usage = chunk.get("usage") or usage
    except httpx.HTTPError as exc:
        return {"ok": False, "error": repr(exc)}
    done = usage.get("completion_tokens") == ANSWER
    return {
        "ok": done,
        "ttft_s": first,
        "seconds": time.perf_counter() - started,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        **({} if done else {"error": f"usage {usage}"}),
    }


def preemptions(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('slm_preemptions_total{model="bench"}'):
            return float(line.split()[-1])
    return 0.0


def run(gguf: Path, slots: int, pool: int, conversations: int, threads: int) -> dict[str, Any]:
    from slmkit.store import ModelStore

    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        ModelStore(models).import_gguf("bench", gguf)
        settings = {"SLM_NUM_PARALLEL": str(slots), "SLM_CONTEXT_LENGTH": "4096", "SLM_MAX_QUEUE": "512"}
        if pool:
            settings["SLM_KV_POOL"] = str(pool)
        proc, url = start_server(models, threads, **settings)
        peak = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.wait(0.2):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        peak = max(peak, int(child.memory_info().rss))
                    except psutil.Error:
                        pass

        try:
            body = {"model": "bench", "prompt": "Hi", "max_tokens": 1}
            httpx.post(f"{url}/v1/completions", json=body, timeout=300).raise_for_status()  # loaded
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(conversations) as workers:
                answers = list(workers.map(lambda i: converse(url, i), range(conversations)))
            wall = time.perf_counter() - started
            stop.set()
            watcher.join()
            ok = [a for a in answers if a["ok"]]
            ttfts = sorted(a["ttft_s"] for a in ok if a["ttft_s"] is not None)
            cells = [a["prompt_tokens"] + a["completion_tokens"] for a in ok]
            return {
                "slots": slots,
                "kv_pool": pool or slots * 4096,
                "conversations": conversations,
                "completed": len(ok),
                "failed": len(answers) - len(ok),
                "errors": sorted({a["error"] for a in answers if not a["ok"]})[:3],
                "preemptions": preemptions(url),
                "tokens_per_conversation": statistics.mean(cells) if cells else None,
                "worker_peak_MiB": peak / MiB,
                "wall_s": wall,
                "tok_per_s": sum(a["completion_tokens"] for a in ok) / wall,
                "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
                "ttft_p90_s": ttfts[int(0.9 * (len(ttfts) - 1))] if ttfts else None,
            }
        finally:
            stop.set()
            for child in psutil.Process(proc.pid).children(recursive=True):  # the worker too
                child.kill()
            proc.kill()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--slots", default="32,40", help="slots of the shared-pool runs")
    parser.add_argument("--conversations", type=int, default=0, help="per run (0: the most slots)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gguf = model_file(args.model)
    rows = []
    layouts = [(4, 0)] + [(int(n), CELLS) for n in args.slots.split(",")]
    conversations = args.conversations or max(n for n, _ in layouts)  # the same work for every layout
    for slots, pool in layouts:
        row = run(gguf, slots, pool, conversations, args.threads)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "threads": args.threads,
        "answer_tokens": ANSWER,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"kv-pool-{args.model}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"{report['date']}, {args.model}, {args.threads} threads: conversations sent at once, each "
        f"~{rows[0]['tokens_per_conversation'] or 0:.0f} tokens, in the cells of 4 slots x 4096",
        "",
        "| slots | KV cells | conversations | completed | failed | preemptions | worker peak MiB "
        "| wall s | tok/s | TTFT p50 / p90 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ttft = f"{r['ttft_p50_s']:.1f} / {r['ttft_p90_s']:.1f}" if r["ttft_p50_s"] is not None else "-"
        lines.append(
            f"| {r['slots']} | {r['kv_pool']} | {r['conversations']} | {r['completed']} | {r['failed']} "
            f"| {r['preemptions']:.0f} | {r['worker_peak_MiB']:.0f} | {r['wall_s']:.0f} "
            f"| {r['tok_per_s']:.1f} | {ttft} |"
        )
    (RESULTS / f"kv-pool-{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
