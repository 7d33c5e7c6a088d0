"""Thousands of batch lines across hard kills: nothing lost, nothing done twice.

    .venv/bin/python benchmarks/batch_restarts.py [--lines 3000]

Starts `slm serve` (1 thread) on a temporary store, runs --lines short completions as one
batch job, kills the server with SIGKILL after a third and after two thirds of the lines
(restarting it each time), and checks the output file: every custom_id exactly once. Then
runs the same file through `slm batch` against the server. Prints the counts and times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import start_server

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model

MODEL = "smollm2:135m"


def lines(n: int) -> str:
    body = {"model": MODEL, "max_tokens": 2, "temperature": 0}
    return "".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/completions",
                "body": body | {"prompt": f"{i}+1="},
            }
        )
        + "\n"
        for i in range(n)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=3000)
    n = parser.parse_args().lines
    rows = lines(n)
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        ensure_default_model(ModelStore(models))
        proc, url = start_server(models, 1)
        started = time.perf_counter()
        up = httpx.post(
            f"{url}/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", rows.encode())}
        )
        made = httpx.post(
            f"{url}/v1/batches", json={"input_file_id": up.json()["id"], "endpoint": "/v1/completions"}
        )
        batch_id, kills = made.json()["id"], 0
        while True:
            job = httpx.get(f"{url}/v1/batches/{batch_id}").json()
            done = job["request_counts"]["completed"]
            if kills < 2 and done >= (kills + 1) * n // 3:
                proc.kill()  # no drain: lines in flight die with it
                proc.wait()
                kills += 1
                print(f"SIGKILL at {done} completed, {time.perf_counter() - started:.1f} s")
                proc, url = start_server(models, 1)
                continue
            if job["status"] in ("completed", "failed", "cancelled", "expired"):
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        out = httpx.get(f"{url}/v1/files/{job['output_file_id']}/content").content.splitlines()
        ids = [json.loads(x)["custom_id"] for x in out]
        print(
            f"batch job: {job['status']}, {job['request_counts']}, {len(ids)} output lines, "
            f"{len(set(ids))} distinct ids, {n - len(set(ids))} missing, {elapsed:.1f} s with {kills} kills"
        )
        source, output = Path(scratch) / "in.jsonl", Path(scratch) / "out.jsonl"
        source.write_text(rows)
        started = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "slmkit",
            "batch",
            "--json",
            str(source),
            "-o",
            str(output),
            "--target",
            url,
        ]
        run = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "SLM_MODELS": str(models)}
        )
        summary = json.loads(run.stdout)
        answered = {json.loads(x)["custom_id"] for x in output.read_text().splitlines()}
        print(f"slm batch: {summary}, {len(answered)} distinct ids, {time.perf_counter() - started:.1f} s")
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
