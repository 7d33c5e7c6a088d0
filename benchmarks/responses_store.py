"""What sharing stored responses in Redis costs a request (SLM_RESPONSES_STORE).

    .venv/bin/python benchmarks/responses_store.py [--ops 2000]

A Responses API request with ``store`` (the default) writes its response once; one with
``previous_response_id`` also reads one. Per store (memory, Redis over TCP loopback, Redis
over a Unix socket, a real redis-server started here), the time of a put and of a get, for a
short exchange (~1 KiB) and a long conversation (~64 KiB of context), p50 and p99 over --ops
operations. Prints a table and writes benchmarks/results/responses-store.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import free_port

from slmkit.server.responses.shared import RedisResponses
from slmkit.server.responses.store import MemoryResponses, ResponseStore

RESULTS = Path(__file__).parent / "results"


def exchange(i: int, context_bytes: int) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    text = "word " * (context_bytes // 5 // 2)
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    response = {"id": f"resp_{i:08d}", "object": "response", "model": "smollm2:135m", "output": [message]}
    return response, ({"type": "message", "role": "user", "content": text}, *response["output"])


async def measure(store: Any, ops: int, size: int) -> dict[str, float]:
    puts, gets = [], []
    for i in range(ops):
        response, context = exchange(i, size)
        t = time.perf_counter()
        await store.put("k_bench", response, context)
        puts.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert await store.get("k_bench", response["id"]) is not None
        gets.append(time.perf_counter() - t)

    def ms(xs: list[float], q: int) -> float:
        return round(statistics.quantiles(xs, n=100)[q - 1] * 1000, 3)

    return {"put_p50_ms": ms(puts, 50), "put_p99_ms": ms(puts, 99), "get_p50_ms": ms(gets, 50),
            "get_p99_ms": ms(gets, 99)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="slm-redis-"))
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--unixsocket",
                               str(folder / "r.sock"), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "ops": args.ops, "stores": {}}
    try:
        time.sleep(0.5)  # a benchmark: the server is up well within this
        bounds = (1000, 3600.0, 1 << 30)
        stores = {
            "memory": lambda: MemoryResponses(ResponseStore(*bounds)),
            "redis tcp": lambda: RedisResponses(f"redis://127.0.0.1:{port}/0", *bounds),
            "redis unix": lambda: RedisResponses(f"unix://{folder / 'r.sock'}", *bounds),
        }
        print("| store | context | put p50 / p99 ms | get p50 / p99 ms |\n|---|---|---|---|")
        for name, make in stores.items():
            for size in (1024, 64 * 1024):

                async def run(make: Any = make, size: int = size) -> dict[str, float]:
                    store = make()
                    try:
                        return await measure(store, args.ops, size)
                    finally:
                        await store.close()

                got = asyncio.run(run())
                report["stores"][f"{name} {size // 1024} KiB"] = got
                print(f"| {name} | {size // 1024} KiB | {got['put_p50_ms']} / {got['put_p99_ms']} "
                      f"| {got['get_p50_ms']} / {got['get_p99_ms']} |")  # fmt: skip
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "responses-store.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
