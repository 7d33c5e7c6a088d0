"""slmkit replicas behind vLLM's router: prefix-cache hits by routing policy, a replica killed
under load, a rolling restart under load.

    .venv/bin/python benchmarks/replicas.py [--replicas 3] [--conversations 4] [--turns 4]

Each phase starts fresh replicas (one thread, two slots each, one shared store) and a fresh
`vllm-router` in front:
  1. per policy (cache_aware, round_robin): --conversations chats run side by side for --turns
     turns each; the share of each turn's prompt found in the replica's prompt cache;
  2. cache_aware under steady load (4 clients): one replica killed (SIGKILL); failed requests;
  3. the same load while every replica in turn gets SIGTERM, leaves (SLM_DRAIN_DELAY: /ready
     says 503 while it still serves, so the router, polling /ready every second, stops
     sending), drains, exits and starts again on its port; the next replica goes only once
     the router counts the restarted one healthy again (its /workers); failed requests.
Prints the tables and writes benchmarks/results/replicas.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from common import free_port, wait_ready

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model

RESULTS = Path(__file__).parent / "results"
ROUTER = Path(sys.executable).parent / "vllm-router"
MODEL = "smollm2:135m"
# the router polls /ready (503 from SIGTERM on) every second and acts on one answer
ROUTER_HEALTH = ["--health-check-endpoint", "/ready", "--health-check-interval-secs", "1",
                 "--health-failure-threshold", "1", "--health-success-threshold", "1"]  # fmt: skip
TOPICS = ("sailing boats", "baking bread", "mountain birds", "old clocks", "city trains", "garden roses")


class Replica:
    def __init__(self, store: Path, port: int) -> None:
        self.store, self.port = store, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "SLM_MODELS": str(self.store), "SLM_HOST": f"127.0.0.1:{self.port}",
               "SLM_NUM_THREADS": "1", "SLM_NUM_PARALLEL": "2", "SLM_KEEP_ALIVE": "-1",
               "SLM_SHUTDOWN_TIMEOUT": "20s", "SLM_DRAIN_DELAY": "3s"}  # fmt: skip
        self.proc = subprocess.Popen([sys.executable, "-m", "slmkit", "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_ready(self.proc, f"{self.url}/ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


class Cluster:
    def __init__(self, store: Path, replicas: int, policy: str) -> None:
        self.replicas = [Replica(store, free_port()) for _ in range(replicas)]
        for r in self.replicas:
            r.start()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.router = subprocess.Popen(
            [str(ROUTER), "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
             "--prometheus-port", str(free_port()), *ROUTER_HEALTH,
             "--worker-urls", *[r.url for r in self.replicas]],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_ready(self.router, f"{self.url}/health")
        assert self.router.poll() is None, "the router exited"

    def healthy(self, replica: Replica) -> bool:
        workers = httpx.get(f"{self.url}/workers", timeout=10).json()["workers"]
        return any(w["url"] == replica.url and w["is_healthy"] for w in workers)

    def wait_health(self, replica: Replica, healthy: bool, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.healthy(replica) != healthy:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the router never counted {replica.url} {'' if healthy else 'un'}healthy")
            time.sleep(0.1)

    def restart(self, replica: Replica) -> None:
        """SIGTERM; the router sees /ready fail and stops sending; drain, exit, start again,
        and wait until the router sends to it again."""
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGTERM)
        self.wait_health(replica, False)
        replica.proc.wait(60)
        replica.start()
        self.wait_health(replica, True)

    def close(self) -> None:
        self.router.terminate()
        self.router.wait(30)
        for r in self.replicas:
            r.stop()


def chat(url: str, messages: list[dict[str, str]], tokens: int = 8) -> dict[str, Any]:
    body = {"model": MODEL, "messages": messages, "max_tokens": tokens, "temperature": 0}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def prefix_hits(url: str, conversations: int, turns: int) -> list[list[float]]:
    """Per turn, each conversation's cached share of its prompt."""
    shares: list[list[float]] = [[] for _ in range(turns)]

    def talk(topic: str) -> None:
        messages = [{"role": "system", "content": f"{topic.capitalize()} is the only subject here. " * 10}]
        for turn in range(turns):
            messages.append({"role": "user", "content": f"Turn {turn}: say one thing about {topic}."})
            answer = chat(url, messages)
            usage = answer["usage"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            shares[turn].append(cached / usage["prompt_tokens"])
            messages.append({"role": "assistant", "content": answer["choices"][0]["message"]["content"]})

    threads = [threading.Thread(target=talk, args=(TOPICS[i % len(TOPICS)],)) for i in range(conversations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return shares


def under_load(url: str, disturb: Any, clients: int = 4) -> dict[str, Any]:
    """``clients`` send short chats until ``disturb()`` has returned; counts what failed, and why."""
    done = threading.Event()
    counts: dict[str, Any] = {"ok": 0, "failed": 0, "why": {}}
    lock = threading.Lock()

    def client(i: int) -> None:
        while not done.is_set():
            why = None
            try:
                chat(url, [{"role": "user", "content": f"Client {i}: one word, please."}], tokens=16)
            except httpx.HTTPStatusError as exc:
                why = f"{exc.response.status_code} {exc.response.text[:80]}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            with lock:
                counts["ok" if why is None else "failed"] += 1
                if why is not None:
                    counts["why"][why] = counts["why"].get(why, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(3)  # load established (a benchmark, not a test)
    disturb()
    time.sleep(3)
    done.set()
    for t in threads:
        t.join()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "models"
        ensure_default_model(ModelStore(store))
        report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "replicas": args.replicas}
        for policy in ("cache_aware", "round_robin"):
            cluster = Cluster(store, args.replicas, policy)
            try:
                shares = prefix_hits(cluster.url, args.conversations, args.turns)
            finally:
                cluster.close()
            report[policy] = [round(statistics.mean(s), 3) for s in shares]
        print("cached share of the prompt, mean over conversations, per turn")
        print("| turn | cache_aware | round_robin |\n|---|---|---|")
        for turn in range(args.turns):
            print(f"| {turn + 1} | {report['cache_aware'][turn]:.0%} | {report['round_robin'][turn]:.0%} |")

        cluster = Cluster(store, args.replicas, "cache_aware")
        try:
            report["kill"] = under_load(cluster.url, lambda: cluster.replicas[0].stop(signal.SIGKILL))
            print(f"one replica killed under load: {report['kill']}")
        finally:
            cluster.close()

        cluster = Cluster(store, args.replicas, "cache_aware")

        def rolling() -> None:
            for r in cluster.replicas:
                cluster.restart(r)

        try:
            report["rolling_restart"] = under_load(cluster.url, rolling)
            print(f"rolling restart of all replicas under load: {report['rolling_restart']}")
        finally:
            cluster.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replicas.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
