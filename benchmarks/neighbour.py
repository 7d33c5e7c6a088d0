"""A 48-token answer, idle and next to busy processes: fixed threads against automatic ones.

    .venv/bin/python benchmarks/neighbour.py [--rounds 5] [--busy 1]

Starts `slm serve` twice on the default model, once with SLM_NUM_THREADS = the cores this
process may use (what llama-server and Ollama do) and once with SLM_NUM_THREADS=0 (slmkit's
governor, engine/threads.py); for each, the median time of a greedy 48-token /api/generate
answer with no neighbour and with ``--busy`` processes spinning a core each. Reports each
server's loaded/idle ratio (the figure that matters: absolute times move with the machine).
Writes benchmarks/results/neighbour.json and .md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from common import start_server

RESULTS = Path(__file__).parent / "results"
MODEL = "smollm2:135m"
BODY = {
    "model": MODEL,
    "prompt": "Write about the sea.",
    "stream": False,
    "options": {"num_predict": 48, "temperature": 0},
}


def spin() -> None:
    while True:
        pass


def answer_seconds(url: str, rounds: int, limit: float) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        try:
            r = httpx.post(f"{url}/api/generate", json=BODY, timeout=limit)
            r.raise_for_status()
            assert r.json()["eval_count"] == 48
            times.append(time.perf_counter() - started)
        except httpx.TimeoutException:
            times.append(limit)  # counted at the limit: the real figure is worse
    return times


def threads_now(url: str) -> Any:
    models = httpx.get(f"{url}/api/ps", timeout=30).json()["models"]
    return models[0].get("threads") if models else None


def measure(models: Path, threads: int, busy: int, rounds: int) -> dict[str, Any]:
    proc, url = start_server(models, threads, SLM_NUM_PARALLEL="4")
    try:
        answer_seconds(url, 2, 120)  # load and warm up
        idle = answer_seconds(url, rounds, 120)
        before = threads_now(url)
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
        for s in spinners:
            s.start()
        try:
            first = answer_seconds(url, 1, 60)  # the first request after the neighbour appears
            time.sleep(1.0)
            answer_seconds(url, 1, 120)  # lets the governor see the neighbour
            loaded = answer_seconds(url, rounds, 60)
            during = threads_now(url)
        finally:
            for s in spinners:
                s.kill()
                s.join()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "threads_setting": threads,
        "threads_idle": before,
        "threads_with_neighbour": during,
        "idle_s": statistics.median(idle),
        "loaded_s": statistics.median(loaded),
        "ratio": statistics.median(loaded) / statistics.median(idle),
        "first_s": first[0],
        "first_ratio": first[0] / statistics.median(idle),
        "idle_all": idle,
        "loaded_all": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", type=int, default=1)
    parser.add_argument("--only", choices=["fixed", "automatic"], help="measure one server only")
    args = parser.parse_args()

    from slmkit.hardware import cpu_budget
    from slmkit.store import ModelStore
    from slmkit.store.default import ensure_default_model

    models = Path(tempfile.mkdtemp(prefix="slm-neighbour-"))
    ensure_default_model(ModelStore(models))
    cores = cpu_budget()
    runs = {}
    if args.only != "automatic":
        runs[f"fixed {cores} threads"] = measure(models, cores, args.busy, args.rounds)
    if args.only != "fixed":
        runs["automatic (governor)"] = measure(models, 0, args.busy, args.rounds)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": cores,
        "busy_neighbours": args.busy,
        "rounds": args.rounds,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "neighbour.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# A 48-token answer next to {args.busy} busy process(es), {cores} cores",
        "",
        "| server | threads idle / with neighbour | idle (s) | first with neighbour (s) | then (s) | "
        "first ratio | then ratio |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['threads_idle']} / {r['threads_with_neighbour']} "
            f"| {r['idle_s']:.2f} | {r['first_s']:.2f} | {r['loaded_s']:.2f} | {r['first_ratio']:.1f}x "
            f"| {r['ratio']:.1f}x |"
            for name, r in runs.items()
        ),
    ]
    (RESULTS / "neighbour.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
