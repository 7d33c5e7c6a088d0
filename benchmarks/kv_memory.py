"""Resident memory of one model served with 4 slots x 4096 tokens: slmkit's worker with
sliding-window caches trimmed (the default) and full-size (SLM_SWA_FULL=1), next to
llama-server from the same vendored llama.cpp.

    .venv/bin/python benchmarks/kv_memory.py [--models gemma,smollm2] [--slots 4] [--context 4096]

Each server loads the model, answers one 1500-token prompt in every slot (so each slot's
cells have been written), and its RSS is read with psutil (for slmkit the worker process,
which owns the model). Writes benchmarks/results/kv-memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import llama_server
import psutil
from common import free_port, start_server, wait_ready
from serving import model_file

RESULTS = Path(__file__).parent / "results"
MiB = 1024 * 1024


def fill(url: str, slots: int, model: str) -> None:
    """One long prompt per slot, at once (each lands in its own slot)."""

    def one(i: int) -> None:
        prompt = f"Note {i}. " + "the river runs past the old stone mill " * 190
        body = {"model": model, "prompt": prompt, "max_tokens": 4, "temperature": 0}
        httpx.post(f"{url}/v1/completions", json=body, timeout=600).raise_for_status()

    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(one, range(slots)))


def slmkit_rss(gguf: Path, slots: int, context: int, swa_full: bool) -> int:
    from slmkit.store import ModelStore

    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        ModelStore(models).import_gguf("bench", gguf)
        proc, url = start_server(
            models,
            2,
            SLM_NUM_PARALLEL=str(slots),
            SLM_CONTEXT_LENGTH=str(context),
            SLM_SWA_FULL="1" if swa_full else "0",
        )
        try:
            fill(url, slots, "bench")
            workers = [
                c for c in psutil.Process(proc.pid).children(recursive=True) if c.memory_info().rss > 50 * MiB
            ]
            return max(int(w.memory_info().rss) for w in workers)
        finally:
            proc.terminate()
            proc.wait(30)


def llama_server_rss(exe: Path, gguf: Path, slots: int, context: int) -> int:
    port = free_port()
    args = [str(exe), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-t", "2"]
    args += ["-np", str(slots), "-c", str(context * slots), "--no-webui", "--log-disable"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            proc.wait(20)  # a server that dies at start says so now
            raise SystemExit(f"llama-server exited with {proc.returncode} at start")
        except subprocess.TimeoutExpired:
            pass
        wait_ready(proc, f"{url}/health", 300)
        fill(url, slots, "any")
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="gemma,smollm2")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--context", type=int, default=4096)
    args = parser.parse_args()
    exe = llama_server.binary()
    rows: list[dict[str, Any]] = []
    for which in args.models.split(","):
        gguf = model_file(which)
        row: dict[str, Any] = {
            "model": which,
            "slmkit_MiB": slmkit_rss(gguf, args.slots, args.context, swa_full=False) / MiB,
            "slmkit_swa_full_MiB": slmkit_rss(gguf, args.slots, args.context, swa_full=True) / MiB,
        }
        try:
            row["llama_server_MiB"] = llama_server_rss(exe, gguf, args.slots, args.context) / MiB
            row["ratio"] = row["slmkit_MiB"] / row["llama_server_MiB"]
        except (SystemExit, OSError) as exc:  # reported, not hidden: the row says why
            row["llama_server_MiB"] = row["ratio"] = None
            row["llama_server_error"] = str(exc)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "slots": args.slots,
        "context": args.context,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kv-memory.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"{report['date']}: worker RSS after one 1500-token prompt in each of {args.slots} slots x "
        f"{args.context} tokens (MiB)",
        "",
        "| model | slmkit | slmkit SLM_SWA_FULL=1 | llama-server | slmkit / llama-server |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        theirs = f"{r['llama_server_MiB']:.0f}" if r["llama_server_MiB"] else f"({r['llama_server_error']})"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        lines.append(
            f"| {r['model']} | {r['slmkit_MiB']:.0f} | {r['slmkit_swa_full_MiB']:.0f} | {theirs} | {ratio} |"
        )
    (RESULTS / "kv-memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
