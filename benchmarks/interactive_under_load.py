"""What other users' work does to an interactive user's stream: time to first token and the
gaps between tokens of short chats, idle and while heavy work runs on the same model.

    .venv/bin/python benchmarks/interactive_under_load.py [--model smollm2|gemma] [--threads 2]
        [--scenarios idle,chat-batch,long-batch,long-prompt] [--out NAME]

Starts `slm serve` on a temporary store with the model and, in one run, sends a streamed
32-token chat every second (open loop: a late chat does not delay the next) during each
scenario:
  idle         nothing else runs (--idle chats);
  chat-batch   a 200-line batch job of short chats (/v1/files + /v1/batches, 32 tokens each);
  long-batch   a batch job of --long-lines prompts of ~1500 tokens each (16 tokens each);
  long-prompt  --long-prompts interactive completions of a ~4000-token prompt, one after another.
For each scenario: TTFT and inter-token gap p50/p90 of the chats and their ratio to idle,
and the heavy work's own throughput (prompt + generated tokens per second). Writes
benchmarks/results/interactive-under-load-MODEL.json. Ratios matter, not absolute times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from common import start_server
from serving import model_file

RESULTS = Path(__file__).parent / "results"
WORDS = [
    *("river", "stone", "apple", "market", "winter", "engine", "garden", "silver", "letter"),
    *("window", "planet", "orange", "doctor", "violin", "bridge", "forest", "candle", "rocket"),
    *("pencil", "island", "camera", "butter", "signal", "meadow", "harbor"),
]


def text_of(words: int, seed: int) -> str:
    """About ``words`` tokens of varied text: no two seeds share a prefix (no cache hits)."""
    rng = random.Random(seed)
    return f"Document {seed}. " + " ".join(rng.choice(WORDS) for _ in range(words))


def chat(http: httpx.Client, url: str, i: int) -> dict[str, Any]:
    """One streamed 32-token chat: its TTFT and the gaps between its content chunks."""
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": f"Tell me about the number {i}."}],
        "max_tokens": 32,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    sent = time.perf_counter()
    times: list[float] = []
    with http.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content":"' in line.replace(": ", ":"):
                times.append(time.perf_counter())
    return {"ttft": times[0] - sent, "gaps": [b - a for a, b in itertools.pairwise(times)]}


def chats_during(url: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` while a chat starts every second."""
    results: list[dict[str, Any]] = []
    done = threading.Event()
    lock = threading.Lock()

    # one client for all chats (a client per request spends ~40 ms on its TLS context)
    http = httpx.Client(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=64))

    def one(i: int) -> None:
        res = chat(http, url, i)
        with lock:
            results.append(res)

    def arrivals() -> None:
        start, i, threads = time.perf_counter(), 0, []
        while not done.is_set():
            t = threading.Thread(target=one, args=(i,))
            t.start()
            threads.append(t)
            i += 1
            done.wait(max(0.0, start + i - time.perf_counter()))
        for t in threads:
            t.join()

    prober = threading.Thread(target=arrivals)
    prober.start()
    try:
        heavy = work()
    finally:
        done.set()
        prober.join()
        http.close()
    return {"chats": results, "work": heavy}


def idle_for(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)  # the chats alone
    return {}


def batch_job(url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    data = "".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": b}) + "\n"
        for i, b in enumerate(bodies)
    )
    with httpx.Client(base_url=url, timeout=600) as http:
        up = http.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", data.encode())})
        up.raise_for_status()
        start = time.perf_counter()
        made = http.post(
            "/v1/batches", json={"input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions"}
        )
        made.raise_for_status()
        while True:
            job = http.get(f"/v1/batches/{made.json()['id']}").json()
            if job["status"] in ("completed", "failed", "cancelled", "expired"):
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        assert job["status"] == "completed", job
        out = http.get(f"/v1/files/{job['output_file_id']}/content").content.splitlines()
    usage = [json.loads(x)["response"]["body"]["usage"] for x in out]
    prompt = sum(u["prompt_tokens"] for u in usage)
    made_tokens = sum(u["completion_tokens"] for u in usage)
    return {
        "seconds": elapsed,
        "requests": len(usage),
        "prompt_tokens": prompt,
        "completion_tokens": made_tokens,
    }


def long_prompts(url: str, count: int, words: int) -> dict[str, Any]:
    prompt = completion = 0
    start = time.perf_counter()
    with httpx.Client(timeout=600) as http:
        for i in range(count):
            body = {"model": "bench", "prompt": text_of(words, 1000 + i), "max_tokens": 16, "temperature": 0}
            r = http.post(f"{url}/v1/completions", json=body)
            r.raise_for_status()
            prompt += r.json()["usage"]["prompt_tokens"]
            completion += r.json()["usage"]["completion_tokens"]
    return {
        "seconds": time.perf_counter() - start,
        "requests": count,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }


def short_bodies(lines: int) -> list[dict[str, Any]]:
    return [
        {
            "model": "bench",
            "messages": [{"role": "user", "content": f"Write one short sentence about the number {i}."}],
            "max_tokens": 32,
            "temperature": 0,
            "ignore_eos": True,
        }
        for i in range(lines)
    ]


def long_bodies(lines: int) -> list[dict[str, Any]]:
    return [
        {
            "model": "bench",
            "messages": [{"role": "user", "content": text_of(1500, i) + "\nSummarise the document."}],
            "max_tokens": 16,
            "temperature": 0,
        }
        for i in range(lines)
    ]


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(run: dict[str, Any]) -> dict[str, Any]:
    ttft = [c["ttft"] for c in run["chats"]]
    gaps = [g for c in run["chats"] for g in c["gaps"]]
    out: dict[str, Any] = {
        "chats": len(ttft),
        "ttft_p50_ms": 1000 * statistics.median(ttft),
        "ttft_p90_ms": 1000 * p(ttft, 0.9),
        "itl_p50_ms": 1000 * statistics.median(gaps),
        "itl_p90_ms": 1000 * p(gaps, 0.9),
        "itl_max_ms": 1000 * max(gaps),
    }
    work = run["work"]
    if work:
        out["work"] = {
            **work,
            "tokens_per_s": (work["prompt_tokens"] + work["completion_tokens"]) / work["seconds"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scenarios", default="idle,chat-batch,long-batch,long-prompt")
    parser.add_argument("--idle", type=int, default=15, help="seconds of chats on the idle server")
    parser.add_argument("--lines", type=int, default=200, help="lines of the short-chat batch")
    parser.add_argument("--long-lines", type=int, default=16, help="lines of the long-prompt batch")
    parser.add_argument("--long-prompts", type=int, default=3, help="4000-token prompts, one after another")
    parser.add_argument("--out", default="", help="results file name (default interactive-under-load-MODEL)")
    args = parser.parse_args()
    from slmkit.store import ModelStore

    path = model_file(args.model)
    wanted = args.scenarios.split(",")
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "threads": args.threads,
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        ModelStore(models).import_gguf("bench", path)
        proc, url = start_server(models, args.threads, SLM_CONTEXT_LENGTH="4352")
        try:
            with httpx.Client() as http:
                chat(http, url, 0)  # loaded and warm
            runs: dict[str, Callable[[], dict[str, Any]]] = {
                "idle": lambda: idle_for(args.idle),
                "chat-batch": lambda: batch_job(url, short_bodies(args.lines)),
                "long-batch": lambda: batch_job(url, long_bodies(args.long_lines)),
                "long-prompt": lambda: long_prompts(url, args.long_prompts, 4000),
            }
            for name in wanted:
                run = chats_during(url, runs[name])
                report["scenarios"][name] = summary(run)
                print(name, json.dumps(report["scenarios"][name]), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    idle = report["scenarios"].get("idle")
    if idle:
        for s in report["scenarios"].values():
            s["ttft_p90_x_idle"] = s["ttft_p90_ms"] / idle["ttft_p90_ms"]
            s["itl_p90_x_idle"] = s["itl_p90_ms"] / idle["itl_p90_ms"]
    RESULTS.mkdir(exist_ok=True)
    name = args.out or f"interactive-under-load-{args.model}"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.model}, {args.threads} thread(s)")
    print(
        f"  {'scenario':<12} {'TTFT p50':>9} {'p90':>7} {'xidle':>6}"
        f" {'ITL p50':>8} {'p90':>7} {'xidle':>6}  work tok/s"
    )
    for key, s in report["scenarios"].items():
        work = f"{s['work']['tokens_per_s']:.0f}" if "work" in s else "-"
        print(
            f"  {key:<12} {s['ttft_p50_ms']:8.0f}ms {s['ttft_p90_ms']:5.0f}ms"
            f" {s.get('ttft_p90_x_idle', 0):6.2f}"
            f" {s['itl_p50_ms']:6.0f}ms {s['itl_p90_ms']:5.0f}ms {s.get('itl_p90_x_idle', 0):6.2f}  {work}"
        )


if __name__ == "__main__":
    main()
