"""Batch jobs against the same requests sent one by one, and what a running batch does to
interactive latency.

    .venv/bin/python benchmarks/batch_jobs.py [--lines 100] [--tokens 16] [--threads 1]

Starts `slm serve` on a temporary store with the default model and, in one run:
  1. TTFT of a short streamed chat on the idle server (10 tries);
  2. the --lines requests (chat, greedy, --tokens tokens each) one by one;
  3. the same requests from 8 concurrent clients (interactive priority);
  4. the same requests as one batch job (/v1/files + /v1/batches), while a client measures
     the TTFT of a short chat every 0.5 s.
Prints a table and writes benchmarks/results/batch-jobs.json. Ratios matter, not absolute
times: a neighbour's load moves those 2-3x.
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
from common import start_server

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model

RESULTS = Path(__file__).parent / "results"
MODEL = "smollm2:135m"


def body(i: int, tokens: int) -> dict[str, Any]:
    content = f"Write one short sentence about the number {i}."
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": tokens,
        "temperature": 0,
    }


def ttft(url: str) -> float:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 2, "stream": True}
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat, timeout=300) as r:
        for line in r.iter_lines():
            if '"content"' in line:
                return time.perf_counter() - start
    raise RuntimeError("no token")


def send_all(url: str, bodies: list[dict[str, Any]], clients: int) -> tuple[float, int]:
    def one(b: dict[str, Any]) -> int:
        r = httpx.post(f"{url}/v1/chat/completions", json=b, timeout=600)
        r.raise_for_status()
        return int(r.json()["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(one, bodies))
    return time.perf_counter() - start, tokens


def run_batch(url: str, bodies: list[dict[str, Any]]) -> tuple[float, int, list[float]]:
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
        samples: list[float] = []
        done = threading.Event()

        def probe() -> None:
            time.sleep(1.0)  # the batch is under way
            while not done.is_set():
                samples.append(ttft(url))
                time.sleep(0.5)

        prober = threading.Thread(target=probe)
        prober.start()
        while True:
            job = http.get(f"/v1/batches/{made.json()['id']}").json()
            if job["status"] in ("completed", "failed", "cancelled", "expired"):
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        done.set()
        prober.join()
        assert job["status"] == "completed", job
        out = http.get(f"/v1/files/{job['output_file_id']}/content").content.splitlines()
        tokens = sum(json.loads(x)["response"]["body"]["usage"]["completion_tokens"] for x in out)
        return elapsed, tokens, samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    bodies = [body(i, args.tokens) for i in range(args.lines)]
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        ensure_default_model(ModelStore(models))
        proc, url = start_server(models, args.threads)
        try:
            ttft(url)  # warm
            idle = [ttft(url) for _ in range(10)]
            one_s, one_tok = send_all(url, bodies, 1)
            eight_s, eight_tok = send_all(url, bodies, 8)
            batch_s, batch_tok, during = run_batch(url, bodies)
        finally:
            proc.terminate()
            proc.wait(30)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "lines": args.lines,
        "tokens": args.tokens,
        "threads": args.threads,
        "one_by_one": {"seconds": one_s, "tokens": one_tok},
        "eight_clients": {"seconds": eight_s, "tokens": eight_tok},
        "batch_job": {"seconds": batch_s, "tokens": batch_tok},
        "ttft_idle_ms": [round(x * 1000, 1) for x in idle],
        "ttft_during_batch_ms": [round(x * 1000, 1) for x in during],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch-jobs.json").write_text(json.dumps(result, indent=2) + "\n")
    idle_med, busy_med = statistics.median(idle), statistics.median(during)
    busy_p90 = sorted(during)[int(0.9 * (len(during) - 1))]
    print(f"{args.lines} chat requests, {args.tokens} tokens each, {args.threads} thread(s)")
    for name, secs, tok in (
        ("one by one", one_s, one_tok),
        ("8 clients", eight_s, eight_tok),
        ("batch job", batch_s, batch_tok),
    ):
        print(
            f"  {name:<11} {secs:7.1f} s  {args.lines / secs:6.2f} req/s  {tok / secs:7.1f} tok/s"
            f"  x{one_s / secs:.2f}"
        )
    print(
        f"  TTFT idle median {idle_med * 1000:.0f} ms; during the batch median {busy_med * 1000:.0f} ms,"
        f" p90 {busy_p90 * 1000:.0f} ms ({len(during)} samples): x{busy_med / idle_med:.2f} of idle"
    )


if __name__ == "__main__":
    main()
