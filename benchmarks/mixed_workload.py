"""A realistic mixed workload, open loop, slmkit and llama-server side by side in one run.

    .venv/bin/python benchmarks/mixed_workload.py [--model smollm2] [--rates 0.5,1,2,3]
        [--seconds 60] [--slo 5]

Requests arrive at a fixed mean rate (Poisson, seeded: both servers get the very same
arrivals), whatever the servers' speed (open loop), a third each of:

- **chat**: multi-turn conversations sharing one long system prompt (~450 tokens); turn t of a
  conversation repeats turns 1..t-1 (their answers fixed), so every turn extends the last;
- **rag**: a question over one of four documents (~350 tokens each), the document first;
- **json**: extract fields from a sentence under a JSON schema (response_format json_schema).

Both servers: the same GGUF, 8 slots x 2048 tokens, 2 threads (benchmarks/versus_llama_server.py's
setup; llama-server from the same vendored llama.cpp). Per server and rate: completed and
failed requests, latency p50/p90, requests/s served, and tokens computed vs served (prompt
tokens the server evaluated, not from its cache, plus answer tokens, over all prompt and
answer tokens). The result: the highest rate each server sustains with p90 latency within
--slo seconds (requests/s at equal p90 latency) and their ratio. Writes
benchmarks/results/mixed-workload-{model}.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import llama_server
from serving import model_file
from versus_llama_server import llama_cpp_server, slmkit

RESULTS = Path(__file__).parent / "results"
WORDS = [
    *("valve", "pump", "filter", "sensor", "gauge", "panel", "cable", "relay", "switch", "motor"),
    *("bearing", "gasket", "nozzle", "hose", "clamp", "bracket", "fuse", "circuit", "module"),
    *("display", "battery", "charger", "adapter", "housing", "lever", "spring"),
]


def text(seed: int, words: int) -> str:
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        a, b, c = rng.sample(WORDS, 3)
        sentences.append(f"The {a} connects to the {b} and must be checked before the {c} is replaced.")
    return " ".join(sentences)


SYSTEM = "You are the support assistant for the X200 water system. Manual:\n" + text(1, 330)
DOCS = [f"Document {d}.\n" + text(100 + d, 260) for d in range(4)]
QUESTIONS = [
    "What must be checked before the pump is replaced?",
    "Which part connects to the sensor?",
    "Summarise the document in one sentence.",
    "What is the first step of maintenance?",
]
TURNS = [
    ("My system makes a noise.", "It may be the pump bearing; check it first."),
    ("How do I check the bearing?", "Switch the motor off and turn the shaft by hand."),
    ("It turns roughly.", "Replace the bearing and the gasket beside it."),
    ("Which tools do I need?", "A clamp, a spanner and a new gasket."),
]
PEOPLE = ["Ana", "Bo", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana"]
CITIES = ["Lisbon", "Oslo", "Lima", "Pune", "Kyoto", "Accra", "Quito", "Riga"]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}},
    "required": ["name", "age", "city"],
}


def request(i: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    kind = rng.choice(["chat", "rag", "json"])
    if kind == "chat":
        turn = rng.randrange(len(TURNS))
        messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
        for user, assistant in TURNS[:turn]:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": TURNS[turn][0]})
        return kind, {"messages": messages, "max_tokens": 48}
    if kind == "rag":
        doc, question = rng.randrange(len(DOCS)), rng.choice(QUESTIONS)
        content = f"{DOCS[doc]}\n\nAnswer from the document above. {question}"
        return kind, {"messages": [{"role": "user", "content": content}], "max_tokens": 32}
    person = f"{PEOPLE[i % 8]} is {20 + i % 50} years old and lives in {CITIES[(i // 8) % 8]}."
    return kind, {
        "messages": [{"role": "user", "content": f"Extract name, age and city as JSON: {person}"}],
        "max_tokens": 64,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}},
    }


def arrivals(rate: float, seconds: float, seed: int) -> list[tuple[float, str, dict[str, Any]]]:
    rng = random.Random(seed)
    out, now, i = [], 0.0, 0
    while True:
        now += rng.expovariate(rate)
        if now >= seconds:
            return out
        kind, body = request(i, rng)
        out.append((now, kind, body))
        i += 1


def cached_of(reply: dict[str, Any]) -> int:
    """Prompt tokens the server took from its cache: OpenAI's usage field (slmkit), else
    llama-server's timings (cache_n)."""
    details = (reply.get("usage") or {}).get("prompt_tokens_details") or {}
    if "cached_tokens" in details:
        return int(details["cached_tokens"])
    return int((reply.get("timings") or {}).get("cache_n", 0))


def run(url: str, plan: list[tuple[float, str, dict[str, Any]]], timeout: float) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=256))

    def one(body: dict[str, Any], kind: str) -> None:
        sent = time.perf_counter()
        row: dict[str, Any] = {"kind": kind}
        try:
            payload = {"model": "bench", "temperature": 0, **body}
            reply = client.post(f"{url}/v1/chat/completions", json=payload)
            row["latency_s"] = time.perf_counter() - sent
            row["ok"] = reply.status_code == 200
            if row["ok"]:
                data = reply.json()
                usage = data["usage"]
                row |= {
                    "prompt": usage["prompt_tokens"],
                    "answer": usage["completion_tokens"],
                    "cached": cached_of(data),
                }
                if kind == "json":
                    row["valid_json"] = _valid(data["choices"][0]["message"]["content"])
        except httpx.HTTPError:
            row |= {"ok": False, "latency_s": time.perf_counter() - sent}
        with lock:
            results.append(row)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=256) as pool:
        for at, kind, body in plan:
            delay = started + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, body, kind)
    wall = time.perf_counter() - started
    client.close()
    ok = [r for r in results if r["ok"]]
    latencies = sorted(r["latency_s"] for r in results)  # failures count at the time they took
    served = sum(r["prompt"] + r["answer"] for r in ok)
    computed = sum(r["prompt"] - r["cached"] + r["answer"] for r in ok)
    return {
        "sent": len(plan),
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "served_rps": len(ok) / wall,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p90_s": latencies[int(0.9 * (len(latencies) - 1))] if latencies else None,
        "computed_over_served": computed / served if served else None,
        "json_valid": sum(r.get("valid_json", False) for r in ok if r["kind"] == "json"),
        "json_total": sum(1 for r in ok if r["kind"] == "json"),
    }


def _valid(content: str) -> bool:
    try:
        data = json.loads(content)
    except ValueError:
        return False
    return isinstance(data, dict) and {"name", "age", "city"} <= data.keys()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--rates", default="0.5,1,2,3", help="mean arrivals per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="arrivals per rate")
    parser.add_argument("--slo", type=float, default=5.0, help="p90 latency bound (seconds)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gguf = model_file(args.model)
    exe = llama_server.binary()
    servers: dict[str, Callable[[], AbstractContextManager[str]]] = {
        "slmkit": lambda: slmkit(gguf, args.threads),
        "llama-server": lambda: llama_cpp_server(exe, gguf, args.threads),
    }
    rates = [float(r) for r in args.rates.split(",")]
    rows: list[dict[str, Any]] = []
    for k, rate in enumerate(rates):
        plan = arrivals(rate, args.seconds, seed=7 + k)
        order = list(servers) if k % 2 == 0 else list(reversed(servers))  # neither always goes first
        for name in order:
            with servers[name]() as url:
                warm = {"model": "bench", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
                httpx.post(f"{url}/v1/chat/completions", json=warm, timeout=300).raise_for_status()
                row = {"server": name, "rate": rate, **run(url, plan, timeout=max(60.0, 4 * args.slo))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    best = {
        name: max([r["rate"] for r in rows if r["server"] == name and _meets(r, args.slo)], default=0.0)
        for name in servers
    }
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "threads": args.threads,
        "seconds_per_rate": args.seconds,
        "slo_p90_s": args.slo,
        "rows": rows,
        "sustained_rps": best,
        "ratio": best["slmkit"] / best["llama-server"] if best["llama-server"] else None,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"mixed-workload-{args.model}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"{report['date']}, {args.model}, {args.threads} threads, 8 slots each; Poisson arrivals for "
        f"{args.seconds:.0f} s per rate (a third each chat turns over a shared system prompt, RAG over "
        f"4 documents, JSON schema extraction); the same arrivals for both servers",
        "",
        "| rate req/s | server | completed / sent | failed | served req/s | latency p50 / p90 s "
        "| computed / served tokens | valid JSON |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rate']:g} | {r['server']} | {r['completed']} / {r['sent']} | {r['failed']} "
            f"| {r['served_rps']:.2f} | {r['latency_p50_s']:.2f} / {r['latency_p90_s']:.2f} "
            f"| {r['computed_over_served'] or 0:.2f} | {r['json_valid']} / {r['json_total']} |"
        )
    ratio = f"{report['ratio']:.2f}x" if report["ratio"] else "-"
    lines += [
        "",
        f"Highest rate with p90 latency <= {args.slo:g} s and nothing failed: slmkit {best['slmkit']:g} "
        f"req/s, llama-server {best['llama-server']:g} req/s ({ratio}).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    chart(rows, args.slo, out.with_suffix(".png"))


def _meets(row: dict[str, Any], slo: float) -> bool:
    return row["failed"] == 0 and row["latency_p90_s"] is not None and row["latency_p90_s"] <= slo


def chart(rows: list[dict[str, Any]], slo: float, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("slmkit", "llama-server"):
        mine = sorted((r["rate"], r["latency_p90_s"]) for r in rows if r["server"] == name)
        ax.plot([m[0] for m in mine], [m[1] for m in mine], marker="o", label=name)
    ax.axhline(slo, color="grey", linestyle="--", label=f"p90 bound {slo:g} s")
    ax.set_xlabel("arrivals per second (open loop)")
    ax.set_ylabel("latency p90 (s)")
    ax.set_yscale("log")
    ax.set_title("Mixed workload: chat turns, RAG, JSON extraction")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
