"""Where the time goes while serving: py-spy profiles of the worker and the API process, and
a cProfile of the engine step loop in this process.

    .venv/bin/pip install py-spy && .venv/bin/python benchmarks/profile_serving.py [--clients 1,8]

For each client count, starts `slm serve` (SLM_NUM_PARALLEL=8, 2 threads) with the default
model, keeps that many /v1/completions streams busy, and records both processes with py-spy
(active samples only; a call into llama.cpp counts for the Python function making it) for
``--seconds``. Then runs EngineCore over the real backend in this process with the same
number of sequences under cProfile. Writes the collapsed stacks per process to
benchmarks/results/profile/ and the functions with the most samples (self and total), and
the step loop's top entries, to profile.md.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from common import start_server
from serving import prompt_for, stream_once

OUT = Path(__file__).parent / "results" / "profile"


def top(collapsed: Path, n: int = 12) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(function, share of samples) by self time and by total time, from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f.split(" (")[0] for f in stack.split(";")]
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    share = max(samples, 1)
    return (
        [(f, c / share) for f, c in own.most_common(n)],
        [(f, c / share) for f, c in total.most_common(n)],
    )


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen(
        [
            spy,
            "record",
            "--native",
            "-r",
            "100",
            "-d",
            str(seconds),
            "-p",
            str(pid),
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from slmkit.store import ModelStore
    from slmkit.store.default import packaged_path

    models = Path(tempfile.mkdtemp(prefix="slm-profile-"))
    ModelStore(models).import_gguf("bench", packaged_path())  # the name serving.py's streams use
    OUT.mkdir(parents=True, exist_ok=True)
    report = ["# Where the time goes (py-spy, 100 Hz, active samples; cProfile in-process)", ""]
    for clients in [int(c) for c in args.clients.split(",")]:
        proc, url = start_server(models, args.threads, SLM_NUM_PARALLEL="8")
        try:
            with httpx.Client() as http:
                stream_once(http, url, prompt_for(0), 8)  # load
            workers = [
                c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())
            ]
            stop = time.monotonic() + args.seconds + 3
            threads = [
                threading.Thread(target=_busy, args=(url, i, stop), daemon=True) for i in range(clients)
            ]
            for t in threads:
                t.start()
            time.sleep(1)
            worker = max(workers, key=lambda w: sum(w.cpu_times()[:2]))  # the default model's may idle
            spies = {
                name: (
                    record(pid, args.seconds, OUT / f"{name}-{clients}.txt"),
                    OUT / f"{name}-{clients}.txt",
                )
                for name, pid in (("worker", worker.pid), ("api", proc.pid))
            }
            for spy, _ in spies.values():
                spy.wait(timeout=args.seconds + 60)
            for t in threads:
                t.join(timeout=120)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        for name, (_, path) in spies.items():
            if not path.exists():
                continue
            by_self, by_total = top(path)
            report += [
                f"## {name}, {clients} stream(s)",
                "",
                "| self | function | | total | function |",
                "|---|---|---|---|---|",
            ]
            report += [
                f"| {a[1]:.1%} | `{a[0]}` | | {b[1]:.1%} | `{b[0]}` |"
                for a, b in zip(by_self, by_total, strict=False)
            ]
            report.append("")
        report += core_profile(clients, args.threads)
    (OUT / "profile.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))


def core_profile(clients: int, threads: int, tokens: int = 128) -> list[str]:
    """cProfile of EngineCore.step over the real backend: ``clients`` sequences of ``tokens``."""
    import cProfile
    import io
    import pstats

    from slmkit.engine.backends.llama import LlamaBackend
    from slmkit.engine.core import EngineCore
    from slmkit.pipe import EngineRequest, LoadSpec, SamplingParams
    from slmkit.store.default import packaged_path

    backend = LlamaBackend(LoadSpec(str(packaged_path()), n_ctx=1024, n_parallel=8, n_threads=threads))
    core = EngineCore(backend, None)
    sampling = SamplingParams(temperature=0.8, max_tokens=tokens, ignore_eos=True)
    for i in range(clients):
        core.add_request(EngineRequest(f"r{i}", sampling, prompt=prompt_for(i)))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    while core.has_work:
        core.step()
    profile.disable()
    elapsed = time.perf_counter() - started
    backend.close()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text).sort_stats("tottime")
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:10]  # type: ignore[attr-defined]
    lines = [
        f"## engine step loop in-process, {clients} sequence(s): {clients * tokens / elapsed:.1f} tok/s",
        "",
        "| own time | function |",
        "|---|---|",
    ]
    lines += [
        f"| {row[2] / total:.1%} | `{Path(where[0]).name}:{where[1]} {where[2]}` |" for where, row in rows
    ]
    return [*lines, ""]


def _busy(url: str, i: int, stop: float) -> None:
    with httpx.Client() as http:
        while time.monotonic() < stop:
            stream_once(http, url, prompt_for(i), 64)


if __name__ == "__main__":
    main()
