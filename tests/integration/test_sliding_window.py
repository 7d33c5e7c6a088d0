"""Gemma 3's sliding-window layers keep only their window (as llama-server does), with the real
model in a real worker: the same perplexity over a prompt longer than the window as with
full-size caches (within 0.5%; single greedy tokens may flip on near-ties, since the two cache
sizes sum attention in another order), a follow-up turn still reuses the cached conversation,
a prompt that diverges before the window is read again from the start (never resumed without
the window it needs), and the worker holds less memory."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import psutil
import pytest

from slmkit.models.memory import MiB
from slmkit.models.runner import WorkerProcess
from slmkit.pipe import EngineRequest, Finished, LoadSpec, SamplingParams

pytestmark = pytest.mark.integration
CORPUS = Path(__file__).parents[2] / "src" / "slmkit" / "optimize" / "data" / "corpus.txt"


async def run(worker: WorkerProcess, request_id: str, prompt: str, score: bool = False) -> Finished:
    sampling = SamplingParams(
        temperature=0, max_tokens=4, ignore_eos=True, prompt_logprobs=0 if score else None
    )
    done = None
    async for event in worker.generate(EngineRequest(request_id, sampling, prompt=prompt)):
        if isinstance(event, Finished):
            done = event
    assert done is not None
    return done


async def session(gguf: Path, swa_full: bool) -> tuple[float, int, int, int]:
    """Perplexity over a long prompt, prompt tokens cached for a follow-up and for a prompt
    that diverges early, and the worker's RSS."""
    spec = LoadSpec(model_path=str(gguf), n_ctx=4096, n_parallel=1, n_threads=1, swa_full=swa_full)
    worker = WorkerProcess(spec, None, {})
    await worker.start(300)
    try:
        text = CORPUS.read_text()
        long = text + "\n\n" + text.upper()  # ~2400 tokens: the window wraps several times
        scored = await run(worker, "scored", long, score=True)
        logprobs = [t.logprob for t in scored.stats.prompt_logprobs[1:]]
        perplexity = math.exp(-sum(logprobs) / len(logprobs))
        first = text + "\nQuestion: what is this text about?\nAnswer:"
        await run(worker, "one", first)
        two = await run(worker, "two", first + " It\nQuestion: and who wrote it?\nAnswer:")  # the next turn
        three = await run(worker, "three", text[: len(text) // 3] + "\nSummary:")  # shares a third
        assert worker.pid is not None
        rss = int(psutil.Process(worker.pid).memory_info().rss)
        return perplexity, two.stats.cached_tokens, three.stats.cached_tokens, rss
    finally:
        await worker.stop()


def test_a_trimmed_window_answers_as_a_full_cache_and_holds_less(gemma_gguf: Path) -> None:
    ppl, follow_up, diverged, rss = asyncio.run(session(gemma_gguf, swa_full=False))
    full_ppl, _, full_diverged, full_rss = asyncio.run(session(gemma_gguf, swa_full=True))
    assert abs(ppl / full_ppl - 1) < 0.005, (ppl, full_ppl)
    assert follow_up > 1000  # the follow-up reused the conversation held in the slot
    assert diverged == 0  # diverged long before the window: read again from the start (one slot)
    assert full_diverged > 300  # (a full cache could reuse that third)
    # 15 of 18 layers hold 1024 cells instead of 4096: 15 x 3072 x 1 KiB = 45 MiB less
    assert full_rss - rss > 30 * MiB, (full_rss >> 20, rss >> 20)
