"""CPU time per generated token of the API process and of the worker, streamed and not.

    .venv/bin/python benchmarks/cpu_per_token.py [--tokens 300] [--rounds 3] [--http h11,httptools]

Starts `slm serve` (2 threads) with the default model and asks for sampled /v1/completions
answers of exactly --tokens tokens (ignore_eos), streamed and not, reading each process's
CPU seconds (psutil) before and after. The API process's CPU runs on the cores llama.cpp's
threads use, and a descheduled thread holds up the whole step, so this is the overhead that
matters on a small machine. Medians over --rounds. Writes benchmarks/results/cpu-per-token.md
(--out). Another commit's code: `git worktree add /tmp/old REV`, then PYTHONPATH=/tmp/old/src.
``--http``: the SLM_HTTP values to measure, one server each, one after the other in this run
(h11: uvicorn's pure-Python parser on asyncio; httptools: llhttp in C on uvloop).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from common import start_server

RESULTS = Path(__file__).parent / "results"


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="", help="a line saying which code ran (in the report)")
    parser.add_argument("--out", default="cpu-per-token")
    parser.add_argument("--http", default="h11,httptools", help="SLM_HTTP values, compared in this run")
    args = parser.parse_args()
    from slmkit.store import ModelStore
    from slmkit.store.default import ensure_default_model

    models = Path(tempfile.mkdtemp(prefix="slm-cpu-"))
    ensure_default_model(ModelStore(models))
    results = {impl: measure(models, impl, args) for impl in args.http.split(",")}
    lines = [
        f"# CPU per generated token (SmolLM2, 2 threads, {args.tokens}-token sampled answers, "
        f"medians of {args.rounds})",
        "",
        *([args.label, ""] if args.label else []),
        "| SLM_HTTP | answer | API process (ms CPU / token) | worker (ms CPU / token) | tok/s |",
        "|---|---|---|---|---|",
    ]
    for impl, rows in results.items():
        for kind, xs in rows.items():
            api_ms, worker_ms, rate = (statistics.median(x[i] for x in xs) for i in range(3))
            lines.append(f"| {impl} | {kind} | {api_ms:.2f} | {worker_ms:.1f} | {rate:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def measure(models: Path, impl: str, args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    """(API ms CPU/token, worker ms CPU/token, tok/s) per round, streamed and not, on a server
    running SLM_HTTP=impl."""
    server, url = start_server(models, 2, SLM_NUM_PARALLEL="4", SLM_HTTP=impl)
    body = {"model": "smollm2:135m", "prompt": "Once upon a time", "temperature": 0.8, "ignore_eos": True}
    rows: dict[str, list[tuple[float, float, float]]] = {"streamed": [], "not streamed": []}
    try:
        httpx.post(f"{url}/v1/completions", json={**body, "max_tokens": 4}, timeout=300)  # load
        api = psutil.Process(server.pid)
        worker = next(c for c in api.children() if "spawn_main" in " ".join(c.cmdline()))
        for _ in range(args.rounds):
            for kind in rows:
                a, w, started = cpu(api), cpu(worker), time.perf_counter()
                request = {**body, "max_tokens": args.tokens, "stream": kind == "streamed"}
                with httpx.stream("POST", f"{url}/v1/completions", json=request, timeout=600) as r:
                    for _ in r.iter_bytes():
                        pass
                wall = time.perf_counter() - started
                n = args.tokens
                rows[kind].append(((cpu(api) - a) * 1000 / n, (cpu(worker) - w) * 1000 / n, n / wall))
    finally:
        server.terminate()
        server.wait(60)
    return rows


if __name__ == "__main__":
    main()
