"""Decode speed and time to first token: slmkit's server vs llama-cpp-python direct.

Three ways to run the same model, prompt, thread count and greedy sampling, interleaved
round by round so that a noisy neighbour hits all of them alike:

  direct    llama_cpp.Llama.create_completion(stream=True) in this process
  inproc    slmkit.load(...) (EngineCore + LlamaBackend in this process)
  server    `slm serve` in a subprocess, streamed over HTTP (/v1/completions, SSE)

Reports medians and each path's ratio to `direct`. Never read one absolute figure alone.

    .venv/bin/python benchmarks/server_vs_direct.py [--rounds 5] [--tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from common import start_server

PROMPT = "Story {n}. Once upon a time, in a small village by the sea, there lived"
# Each round's prompt is new to every path, so TTFT includes a real prompt evaluation
# rather than a KV-cache hit (all three paths reuse a cached prefix).


def measure_direct(llm: object, prompt: str, tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = last = 0.0
    n = 0
    for chunk in llm.create_completion(  # type: ignore[attr-defined]
        prompt, max_tokens=tokens, temperature=0, stream=True
    ):
        now = time.perf_counter()
        if chunk["choices"][0]["text"] or chunk["choices"][0]["finish_reason"] is None:
            n += 1
            first = first or now
            last = now
    return first - started, (n - 1) / (last - first), n


def measure_inproc(model: object, prompt: str, tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = last = 0.0
    done = None
    for chunk in model.generate(prompt, stream=True, temperature=0, max_tokens=tokens):  # type: ignore[attr-defined]
        now = time.perf_counter()
        if chunk.text:
            first = first or now
            last = now
        done = chunk.done or done
    n = done.completion_tokens
    return first - started, (n - 1) / (last - first), n


def measure_server(http: httpx.Client, url: str, prompt: str, tokens: int) -> tuple[float, float, int]:
    body = {
        "model": "smollm2:135m",
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = 0.0
    n = 0
    with http.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            now = time.perf_counter()
            if data.get("usage"):
                n = data["usage"]["completion_tokens"]
            elif data["choices"] and data["choices"][0]["text"]:
                first = first or now
                last = now
    return first - started, (n - 1) / (last - first), n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import llama_cpp

    from slmkit.config import Config
    from slmkit.local import LocalModel
    from slmkit.store import ModelStore
    from slmkit.store.default import ensure_default_model

    models = Path(tempfile.mkdtemp(prefix="slm-bench-"))
    record = ensure_default_model(ModelStore(models))
    llm = llama_cpp.Llama(
        str(record.model_path),
        n_ctx=4096,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    config = Config.from_env({"SLM_MODELS": str(models), "SLM_NUM_THREADS": str(args.threads)})
    local = LocalModel.open("smollm2:135m", config=config)
    proc, url = start_server(models, args.threads)
    http = httpx.Client()  # one keep-alive connection, as a real client would hold
    paths: dict[str, Callable[[str], tuple[float, float, int]]] = {
        "direct": lambda p: measure_direct(llm, p, args.tokens),
        "inproc": lambda p: measure_inproc(local, p, args.tokens),
        "server": lambda p: measure_server(http, url, p, args.tokens),
    }
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in paths}
    try:
        for fn in paths.values():
            fn(PROMPT.format(n="warm-up"))  # page in weights, warm allocators
        for i in range(args.rounds):
            for name, fn in paths.items():
                results[name].append(fn(PROMPT.format(n=i)))
    finally:
        proc.terminate()
        proc.wait(10)
    base_ttft = statistics.median(r[0] for r in results["direct"])
    base_tps = statistics.median(r[1] for r in results["direct"])
    summary = {}
    print(
        f"{'path':8} {'TTFT ms':>9} {'decode tok/s':>13} {'tokens':>7} {'TTFT ratio':>11} {'tok/s ratio':>12}"
    )
    for name, rows in results.items():
        ttft = statistics.median(r[0] for r in rows)
        tps = statistics.median(r[1] for r in rows)
        n = statistics.median(r[2] for r in rows)
        summary[name] = {
            "ttft_ms": ttft * 1000,
            "decode_tok_s": tps,
            "tokens": n,
            "ttft_ratio": ttft / base_ttft,
            "tok_s_ratio": tps / base_tps,
        }
        print(
            f"{name:8} {ttft * 1000:9.1f} {tps:13.1f} {n:7.0f} "
            f"{ttft / base_ttft:11.2f} {tps / base_tps:12.2f}"
        )
    print(
        f"(medians of {args.rounds} interleaved rounds, {args.threads} threads, "
        f"{args.tokens} max tokens, greedy)"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
