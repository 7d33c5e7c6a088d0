"""Soak: a server at saturation for a long time with mixed valid and hostile requests.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--clients 6] [--threads 1]

Starts `slm serve` (SLM_NUM_PARALLEL=4) with the default model on a temporary store; each
client thread sends requests back to back, drawn from MIX: valid chats (streamed and not),
completions, embeddings and structured output, and the hostile kinds the isolation work
closed (schemas whose grammar crashed llama.cpp, too many or too long stops, huge budgets,
out-of-vocabulary context ids, cross-site text/plain POSTs, oversized and deeply nested
bodies, a chat template asked to think, pulls to loopback, 257 embedding inputs, clients
that vanish mid-stream, headers that trickle). Every minute it samples RSS and open file
descriptors of the API process and of the model worker, and worker restarts from /metrics.

Writes benchmarks/results/soak/soak.json, soak.md and soak.png. Not part of CI: its figures
are drift (last sample against the first after warm-up), which a busy machine does not move.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import start_server

OUT = Path(__file__).parent / "results" / "soak"
MODEL = "smollm2:135m"
CHAT = [{"role": "user", "content": "Tell me about lighthouses."}]


def chat(c: httpx.Client, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": CHAT, "stream": False, "options": {"num_predict": 48}} | extra
    return c.post("/api/chat", json=body)


def stream_chat(c: httpx.Client) -> int:
    body = {"model": MODEL, "messages": CHAT, "max_tokens": 64, "stream": True}
    with c.stream("POST", "/v1/chat/completions", json=body) as r:
        for _ in r.iter_lines():
            pass
    return r.status_code


def vanish(c: httpx.Client) -> int:
    """Start a stream and go away after a few chunks."""
    body = {"model": MODEL, "messages": CHAT, "max_tokens": 256, "stream": True}
    with c.stream("POST", "/v1/chat/completions", json=body) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 3:
                break
    return 499


def trickle(url: str) -> int:
    """Send half a request's headers and wait past SLM_HEADER_TIMEOUT: the server hangs up."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        s.settimeout(30)
        try:
            return 408 if s.recv(1) == b"" else 400
        except TimeoutError:
            return 0  # never closed: counted as an error


def status(r: httpx.Response) -> int:
    return r.status_code


MIX: list[tuple[str, int, Any]] = [
    # valid
    ("chat", 20, lambda c, u: status(chat(c))),
    ("stream", 20, lambda c, u: stream_chat(c)),
    (
        "completion",
        8,
        lambda c, u: status(
            c.post("/v1/completions", json={"model": MODEL, "prompt": "Once", "max_tokens": 32})
        ),
    ),
    (
        "embed",
        8,
        lambda c, u: status(c.post("/api/embed", json={"model": MODEL, "input": ["a lighthouse"] * 16})),
    ),
    (
        "structured",
        6,
        lambda c, u: status(
            chat(c, format={"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}})
        ),
    ),
    # hostile
    ("schema 100k", 3, lambda c, u: status(chat(c, format={"type": "string", "maxLength": 100_000}))),
    ("stops", 3, lambda c, u: status(chat(c, options={"stop": ["e" * 999 + "x"] * 16, "num_predict": 32}))),
    ("17 stops", 2, lambda c, u: status(chat(c, options={"stop": ["x"] * 17}))),
    ("num_predict 1e9", 2, lambda c, u: status(chat(c, options={"num_predict": 10**9}))),
    (
        "context ids",
        2,
        lambda c, u: status(
            c.post(
                "/api/generate", json={"model": MODEL, "prompt": "hi", "context": [2**30], "stream": False}
            )
        ),
    ),
    (
        "cross-site",
        3,
        lambda c, u: status(
            c.post(
                "/api/create",
                content='{"model": "planted", "from": "smollm2:135m"}',
                headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
            )
        ),
    ),
    ("9 MiB body", 1, lambda c, u: status(c.post("/api/chat", content=b"x" * (9 * 1024 * 1024)))),
    ("deep json", 2, lambda c, u: status(c.post("/api/chat", content=b"[" * 5000 + b"]" * 5000))),
    ("think", 2, lambda c, u: status(chat(c, think="high"))),
    (
        "pull loopback",
        1,
        lambda c, u: status(
            c.post("/api/pull", json={"model": "127.0.0.1:9/x/y:z", "insecure": True, "stream": False})
        ),
    ),
    ("257 inputs", 2, lambda c, u: status(c.post("/api/embed", json={"model": MODEL, "input": ["a"] * 257}))),
    ("vanish", 3, lambda c, u: vanish(c)),
    ("trickle", 1, lambda c, u: trickle(u)),
]
EXPECTED = {  # kind -> statuses that mean the server did the right thing
    "chat": {200},
    "stream": {200},
    "completion": {200},
    "embed": {200},
    "structured": {200},
    "schema 100k": {400},
    "stops": {200},
    "17 stops": {400},
    "num_predict 1e9": {400},
    "context ids": {400},
    "cross-site": {403},
    "9 MiB body": {413},
    "deep json": {400},
    "think": {400},
    "pull loopback": {502},
    "257 inputs": {400},
    "vanish": {499},
    "trickle": {408},
}


def processes(server: psutil.Process) -> tuple[psutil.Process, list[psutil.Process]]:
    workers = [p for p in server.children(recursive=True) if "python" in p.name().lower()]
    return server, workers


def sample(server: psutil.Process, url: str, started: float) -> dict[str, Any]:
    api, workers = processes(server)
    text = httpx.get(f"{url}/metrics", timeout=30).text
    restarts = sum(float(v) for v in re.findall(r"^slm_worker_restarts_total\{[^}]*\} (\S+)$", text, re.M))
    return {
        "minute": round((time.monotonic() - started) / 60, 2),
        "api_rss_mb": api.memory_info().rss / 2**20,
        "api_fds": api.num_fds(),
        "worker_rss_mb": sum(w.memory_info().rss for w in workers) / 2**20,
        "worker_fds": sum(w.num_fds() for w in workers),
        "workers": len(workers),
        "worker_restarts": restarts,
    }


def client_loop(url: str, deadline: float, seed: int, tally: Counter[tuple[str, str]]) -> None:
    rng = random.Random(seed)
    kinds = [k for k, _, _ in MIX]
    weights = [w for _, w, _ in MIX]
    send = {k: f for k, _, f in MIX}
    with httpx.Client(base_url=url, timeout=300) as c:
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            try:
                code = send[kind](c, url)
                outcome = "ok" if code in EXPECTED[kind] else f"unexpected {code}"
            except httpx.HTTPError as exc:
                outcome = f"error {type(exc).__name__}"
            tally[(kind, outcome)] += 1


def chart(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    fig, (rss, fds) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    rss.plot(minutes, [s["api_rss_mb"] for s in samples], marker="o", label="API process")
    rss.plot(minutes, [s["worker_rss_mb"] for s in samples], marker="o", label="model worker")
    rss.set_ylabel("RSS (MiB)")
    rss.set_ylim(bottom=0)
    rss.legend()
    fds.plot(minutes, [s["api_fds"] for s in samples], marker="o", label="API process")
    fds.plot(minutes, [s["worker_fds"] for s in samples], marker="o", label="model worker")
    fds.set_ylabel("open file descriptors")
    fds.set_xlabel("minutes at saturation")
    fds.set_ylim(bottom=0)
    fds.legend()
    fig.suptitle("slmkit soak: mixed valid and hostile requests")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from slmkit.store import ModelStore
    from slmkit.store.default import ensure_default_model

    models = Path(tempfile.mkdtemp(prefix="slm-soak-"))
    ensure_default_model(ModelStore(models))
    proc, url = start_server(models, args.threads, SLM_NUM_PARALLEL="4", SLM_KEEP_ALIVE="-1")
    server = psutil.Process(proc.pid)
    tally: Counter[tuple[str, str]] = Counter()
    samples: list[dict[str, Any]] = []
    try:
        chat(httpx.Client(base_url=url, timeout=300))  # load the model
        started = time.monotonic()
        deadline = started + args.minutes * 60
        threads = [
            threading.Thread(target=client_loop, args=(url, deadline, i, tally), daemon=True)
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        samples.append(sample(server, url, started))
        while time.monotonic() < deadline:
            time.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
            samples.append(sample(server, url, started))
            print(json.dumps(samples[-1]), flush=True)
        for t in threads:
            t.join(timeout=600)
        samples.append(sample(server, url, started))
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    OUT.mkdir(parents=True, exist_ok=True)
    base = samples[1] if len(samples) > 2 else samples[0]  # after a minute of warm-up
    last = samples[-1]
    drift = {k: round(last[k] - base[k], 2) for k in ("api_rss_mb", "api_fds", "worker_rss_mb", "worker_fds")}
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, outcome), n in sorted(tally.items()):
        by_kind.setdefault(kind, {})[outcome] = n
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "clients": args.clients,
        "threads": args.threads,
        "requests": sum(tally.values()),
        "unexpected": sum(n for (_, outcome), n in tally.items() if outcome != "ok"),
        "drift_since_minute_1": drift,
        "worker_restarts": last["worker_restarts"] - samples[0]["worker_restarts"],
        "by_kind": by_kind,
        "samples": samples,
    }
    (OUT / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(samples, OUT / "soak.png")
    lines = [
        f"# Soak: {args.minutes:g} minutes, {args.clients} clients, {args.threads} thread(s)",
        "",
        f"{report['requests']} requests, {report['unexpected']} with an unexpected outcome, "
        f"{report['worker_restarts']:g} worker restarts.",
        "",
        "| | first (after warm-up) | last | drift |",
        "|---|---|---|---|",
        *(
            f"| {k} | {base[k]:.1f} | {last[k]:.1f} | {drift[k]:+.1f} |"
            for k in ("api_rss_mb", "api_fds", "worker_rss_mb", "worker_fds")
        ),
        "",
        "| kind | outcomes |",
        "|---|---|",
        *(
            f"| {kind} | {', '.join(f'{o}: {n}' for o, n in outcomes.items())} |"
            for kind, outcomes in by_kind.items()
        ),
        "",
        "![RSS and open file descriptors](soak.png)",
    ]
    (OUT / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
