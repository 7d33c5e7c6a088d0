"""slmkit against llama.cpp's own llama-server, side by side in one run.

    .venv/bin/python benchmarks/versus_llama_server.py [--models smollm2,gemma] [--clients 1,4,8]
        [--rounds 3] [--tokens 96] [--skip-neighbour]

llama-server is built from the vendored llama.cpp of the installed llama-cpp-python
(benchmarks/llama_server.py; cached outside the repository), so both servers run the same
llama.cpp. Two parts:

1. **Throughput.** Both servers up on the same GGUF with 8 slots, 2 threads each and the same
   context per slot; for each round, each client count and each server (the order alternates
   round by round, so a neighbour's load falls on both alike), N clients stream sampled
   /v1/completions answers of --tokens tokens (ignore_eos, temperature 0.8, seeded). Reported:
   aggregate decode tok/s, median per-stream tok/s and TTFT (medians over rounds), and the
   slmkit / llama-server ratios.
2. **A busy neighbour.** Each server at its default threads (slmkit: SLM_NUM_THREADS=0, the
   governor; llama-server: no -t) answers a greedy 48-token prompt on SmolLM2, idle and with one
   process spinning a core; and, where this process may create a cgroup (root, cgroup v1 or v2),
   inside a CPU quota of one core. Answers are cut at --limit seconds and counted at the limit
   (the real figure is worse: reported as ">=").

Writes benchmarks/results/versus-llama-server.json and .md (and a chart when matplotlib is
installed). Absolute figures move with the machine; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import llama_server
from common import free_port, start_server, wait_ready
from serving import model_file, prompt_for, stream_once

RESULTS = Path(__file__).parent / "results"
CTX_PER_SLOT = 2048
SLOTS = 8
NEIGHBOUR_TOKENS = 48


@contextmanager
def slmkit(gguf: Path, threads: int, cgroup: Path | None = None) -> Iterator[str]:
    from slmkit.store import ModelStore

    models = Path(tempfile.mkdtemp(prefix="slm-versus-"))
    ModelStore(models).import_gguf("bench", gguf)
    proc, url = start_server(
        models,
        threads,
        SLM_NUM_PARALLEL=str(SLOTS),
        SLM_CONTEXT_LENGTH=str(CTX_PER_SLOT),
        SLM_DEFAULT_MODEL="bench",
        preexec=_joiner(cgroup),
    )
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


@contextmanager
def llama_cpp_server(exe: Path, gguf: Path, threads: int | None, cgroup: Path | None = None) -> Iterator[str]:
    port = free_port()
    args = [str(exe), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port)]
    args += ["-np", str(SLOTS), "-c", str(CTX_PER_SLOT * SLOTS), "--no-webui", "--log-disable"]
    if threads:
        args += ["-t", str(threads), "-tb", str(threads)]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_joiner(cgroup)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{url}/health", 300)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


def _joiner(cgroup: Path | None) -> Callable[[], None] | None:
    if cgroup is None:
        return None
    procs = cgroup / "cgroup.procs"

    def join() -> None:
        procs.write_text(str(os.getpid()))

    return join


# -- throughput -----------------------------------------------------------------------------------
def round_of(url: str, clients: int, tokens: int, seed: int) -> dict[str, float]:
    https = [httpx.Client() for _ in range(clients)]
    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            runs = list(
                pool.map(
                    lambda i: stream_once(
                        https[i], url, prompt_for(seed + i), tokens, temperature=0.8, seed=1000 + seed + i
                    ),
                    range(clients),
                )
            )
    finally:
        for h in https:
            h.close()
    start, end = min(r.sent for r in runs), max(r.last for r in runs)
    return {
        "aggregate_tok_s": sum(r.tokens for r in runs) / (end - start),
        "per_stream_tok_s": statistics.median(r.decode_tok_s for r in runs),
        "ttft_s": statistics.median(r.ttft for r in runs),
        "tokens": sum(r.tokens for r in runs),
    }


def throughput(exe: Path, which: str, clients: list[int], rounds: int, tokens: int) -> dict[str, Any]:
    gguf = model_file(which)
    with slmkit(gguf, 2) as ours, llama_cpp_server(exe, gguf, 2) as theirs:
        servers = {"slmkit": ours, "llama-server": theirs}
        for url in servers.values():  # load and warm up
            round_of(url, 2, 8, 0)
        runs: dict[str, dict[int, list[dict[str, float]]]] = {s: {c: [] for c in clients} for s in servers}
        for r in range(rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for c in clients:
                for name in order:
                    runs[name][c].append(round_of(servers[name], c, tokens, 100 * r))
    table: dict[str, Any] = {}
    for c in clients:
        row: dict[str, Any] = {}
        for name in servers:
            row[name] = {k: statistics.median(x[k] for x in runs[name][c]) for k in runs[name][c][0]}
            row[name]["rounds"] = runs[name][c]
        for key in ("aggregate_tok_s", "per_stream_tok_s"):
            row[f"{key}_ratio"] = row["slmkit"][key] / row["llama-server"][key]
        row["ttft_ratio"] = row["slmkit"]["ttft_s"] / row["llama-server"]["ttft_s"]
        table[str(c)] = row
    return {"file": gguf.name, "clients": table}


# -- a busy neighbour -------------------------------------------------------------------------------
def spin() -> None:
    while True:
        pass


def answer_s(url: str, limit: float) -> float:
    body = {
        "model": "bench",
        "prompt": "Write about the sea.",
        "max_tokens": NEIGHBOUR_TOKENS,
        "temperature": 0,
        "ignore_eos": True,
    }
    started = time.perf_counter()
    try:
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=limit)
        r.raise_for_status()
    except httpx.TimeoutException:
        return limit
    return time.perf_counter() - started


def idle_and_loaded(url: str, rounds: int, limit: float, busy: int) -> dict[str, Any]:
    for _ in range(2):
        answer_s(url, 120)  # load, warm up
    idle = [answer_s(url, 120) for _ in range(rounds)]
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
    for s in spinners:
        s.start()
    try:
        time.sleep(1.0)
        answer_s(url, limit)  # the governor's first look at the neighbour
        loaded = [answer_s(url, limit) for _ in range(rounds)]
    finally:
        for s in spinners:
            s.kill()
            s.join()
    return {
        "idle_s": statistics.median(idle),
        "loaded_s": statistics.median(loaded),
        "ratio": statistics.median(loaded) / statistics.median(idle),
        "cut_at_limit": sum(t >= limit for t in loaded),
        "idle_all": idle,
        "loaded_all": loaded,
    }


@contextmanager
def quota_cgroup(cores: float) -> Iterator[Path | None]:
    """A fresh cgroup limited to ``cores`` CPUs (v2 ``cpu.max`` or v1 CFS quota), or None."""
    name = f"slm-versus-{os.getpid()}"
    for parent, files in (
        (Path("/sys/fs/cgroup"), lambda d: [(d / "cpu.max", f"{int(cores * 100000)} 100000")]),
        (Path("/sys/fs/cgroup/cpu"), lambda d: [(d / "cpu.cfs_quota_us", str(int(cores * 100000)))]),
    ):
        if not (parent / "cgroup.procs").is_file():
            continue  # not a cgroup hierarchy (a hybrid host's /sys/fs/cgroup is a tmpfs)
        group = parent / name
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            for path, value in files(group):
                path.write_text(value)
        except OSError:
            group.rmdir()
            continue
        try:
            yield group
        finally:
            for _ in range(20):  # until the servers' processes have left the group
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.5)
        return
    yield None


def neighbour(exe: Path, rounds: int, limit: float) -> dict[str, Any]:
    """Per server: idle, next to one busy process, and (where a cgroup can be made) alone
    inside a CPU quota of one core; each against the same server's idle time."""
    gguf = model_file("smollm2")
    servers: dict[str, Callable[[Path | None], Any]] = {
        "slmkit": lambda group: slmkit(gguf, 0, group),
        "llama-server": lambda group: llama_cpp_server(exe, gguf, None, group),
    }
    out: dict[str, Any] = {}
    for name, serve in servers.items():
        with serve(None) as url:
            out[name] = idle_and_loaded(url, rounds, limit, 1)
    with quota_cgroup(1.0) as group:
        for name, serve in servers.items():
            if group is None:
                out[name]["quota"] = "skipped: this process cannot create a cgroup with a CPU quota"
                continue
            with serve(group) as url:
                inside = idle_and_loaded(url, rounds, limit, 0)["idle_all"]
            out[name]["quota_s"] = statistics.median(inside)
            out[name]["quota_ratio"] = out[name]["quota_s"] / out[name]["idle_s"]
            out[name]["quota_all"] = inside
    return out


# -- report -----------------------------------------------------------------------------------------
def render(report: dict[str, Any]) -> str:
    lines = [
        "# slmkit against llama-server (same llama.cpp, side by side)",
        "",
        f"{report['when']}, {report['cpu']}, llama-cpp-python {report['llama_cpp_python']}; "
        f"{SLOTS} slots x {CTX_PER_SLOT} tokens, 2 threads each, {report['tokens']}-token sampled "
        f"streams, medians of {report['rounds']} interleaved rounds.",
        "",
        "| model | clients | slmkit tok/s | llama-server tok/s | ratio | per stream ratio "
        "| TTFT slmkit / llama-server (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for which, model in report["throughput"].items():
        for c, row in model["clients"].items():
            ours, theirs = row["slmkit"], row["llama-server"]
            lines.append(
                f"| {which} | {c} | {ours['aggregate_tok_s']:.1f} | {theirs['aggregate_tok_s']:.1f} "
                f"| {row['aggregate_tok_s_ratio']:.2f}x | {row['per_stream_tok_s_ratio']:.2f}x "
                f"| {ours['ttft_s']:.2f} / {theirs['ttft_s']:.2f} |"
            )
    if report.get("neighbour"):
        lines += [
            "",
            f"## A greedy {NEIGHBOUR_TOKENS}-token answer (SmolLM2), default threads, "
            f"cut at {report['limit']:.0f} s",
            "",
            "| server | idle (s) | next to one busy process (s) | x idle | alone in a 1-core CPU quota (s) "
            "| x idle |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in report["neighbour"].items():
            at = ">= " if r["cut_at_limit"] else ""
            quota = (
                f"{r['quota_s']:.2f} | {r['quota_ratio']:.1f}x" if "quota_s" in r else f"{r.get('quota')} |"
            )
            lines.append(
                f"| {name} | {r['idle_s']:.2f} | {at}{r['loaded_s']:.2f} | {at}{r['ratio']:.1f}x | {quota} |"
            )
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    models = list(report["throughput"])
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
    for ax, which in zip(axes[0], models, strict=True):
        rows = report["throughput"][which]["clients"]
        xs = list(rows)
        for offset, name in ((-0.2, "slmkit"), (0.2, "llama-server")):
            ax.bar([i + offset for i in range(len(xs))], [rows[c][name]["aggregate_tok_s"] for c in xs],
                   width=0.4, label=name)  # fmt: skip
        ax.set_xticks(range(len(xs)), [f"{c} clients" for c in xs])
        ax.set_title(report["throughput"][which]["file"])
        ax.set_ylabel("decode tok/s (aggregate)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--limit", type=float, default=30.0, help="seconds before a loaded answer is cut")
    parser.add_argument("--skip-neighbour", action="store_true")
    parser.add_argument("--out", default="versus-llama-server")
    args = parser.parse_args()
    from importlib import metadata

    from slmkit.hardware import _cpu, cpu_budget

    exe = llama_server.binary()
    clients = [int(c) for c in args.clients.split(",")]
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": f"{_cpu()[0]} ({cpu_budget()} cores)",
        "llama_cpp_python": metadata.version("llama-cpp-python"),
        "tokens": args.tokens,
        "rounds": args.rounds,
        "limit": args.limit,
        "throughput": {
            which: throughput(exe, which, clients, args.rounds, args.tokens)
            for which in args.models.split(",")
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")  # kept if the rest fails
    if not args.skip_neighbour:
        report["neighbour"] = neighbour(exe, args.rounds, args.limit)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(render(report))
    chart(report, RESULTS / f"{args.out}.png")
    print(render(report))


if __name__ == "__main__":
    main()
