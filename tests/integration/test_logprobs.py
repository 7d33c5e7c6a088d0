"""Logprobs from the real engine: sums and ordering are sane, and the numbers match the
model's own logits computed independently (engine/backends/llama_offline.py's Scorer)."""

from __future__ import annotations

import math

import numpy as np
import ollama
import openai
import pytest

from slmkit.engine.backends.llama_offline import Scorer
from slmkit.optimize.evaluate import log_softmax
from slmkit.store.default import packaged_path
from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
PROMPT = "The capital of France is"


def test_completion_logprobs_match_the_models_own_logits(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=5)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    with Scorer(packaged_path(), n_ctx=64, threads=1) as scorer:
        tokens = scorer.tokenize(PROMPT)
        for token_text, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
            row = log_softmax(scorer.logits(tokens))[-1]
            best = int(np.argmax(row))
            piece = scorer.model.token_to_piece(best, special=False).rstrip(b"\x00")
            assert piece.decode("utf-8", "replace") == token_text
            assert logprob == pytest.approx(float(row[best]), abs=0.05)
            alternatives = sorted(top.values(), reverse=True)
            expected = np.sort(row)[::-1][: len(alternatives)]
            assert np.allclose(alternatives, expected, atol=0.05)
            tokens.append(best)


def test_chat_logprobs_are_sane_in_both_apis(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        r = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say something."}],
            max_tokens=10,
            temperature=0.8,
            seed=1,
            logprobs=True,
            top_logprobs=5,
        )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == r.usage.completion_tokens  # type: ignore[union-attr]
    # a token may be part of a character (emoji): its bytes, joined, spell the answer
    joined = b"".join(bytes(t.bytes or []) for t in content).decode("utf-8", errors="replace")
    assert joined.startswith(r.choices[0].message.content or "")
    for t in content:
        tops = [a.logprob for a in t.top_logprobs]
        assert tops == sorted(tops, reverse=True) and len(tops) == 5
        assert t.logprob <= 0 and sum(math.exp(x) for x in tops) <= 1 + 1e-6
        assert t.logprob <= tops[0] + 1e-9  # sampled with temperature: at most the best
    client2 = ollama.Client(host=server.url)
    try:
        out = client2.generate(
            model=MODEL,
            prompt=PROMPT,
            options={"num_predict": 4, "temperature": 0},
            logprobs=True,
            top_logprobs=3,
        )  # type: ignore[call-arg]
        entries = out.logprobs  # type: ignore[attr-defined]
        assert entries and all(e.logprob == e.top_logprobs[0].logprob for e in entries)  # greedy: the best
    finally:
        client2._client.close()
