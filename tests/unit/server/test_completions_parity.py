"""vLLM-compatible completions and tokenizer endpoints through the routes (FakeWorker: bytes
are tokens, every answer is "Hello world", prompt tokens score -0.25)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.server.fakes import FakeWorkers


@pytest.fixture
def tall(workers: FakeWorkers) -> None:
    workers.n_ctx = 512


def test_many_prompts_and_token_prompts_answer_one_choice_each(client: TestClient, tall: None) -> None:
    body = {"model": "tiny:1", "prompt": ["ab", "cde"], "max_tokens": 3, "n": 2}
    r = client.post("/v1/completions", json=body).json()
    assert [c["index"] for c in r["choices"]] == [0, 1, 2, 3]
    assert all(c["text"] == "Hel" and c["finish_reason"] == "length" for c in r["choices"])
    assert r["usage"]["prompt_tokens"] == 2 + 3 and r["usage"]["completion_tokens"] == 12  # each prompt once
    ids = client.post(
        "/v1/completions", json={"model": "tiny:1", "prompt": [[98, 99], [100]], "max_tokens": 1}
    )
    assert ids.status_code == 200 and ids.json()["usage"]["prompt_tokens"] == 3
    bad = client.post("/v1/completions", json={"model": "tiny:1", "prompt": [[1, 999]], "max_tokens": 1})
    assert bad.status_code == 400 and "token id 999" in bad.json()["error"]["message"]
    streamed = client.post(
        "/v1/completions",
        json={"model": "tiny:1", "prompt": ["ab", "cd"], "max_tokens": 2, "stream": True,
              "stream_options": {"include_usage": True}},
    )  # fmt: skip
    lines = [line for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert {'"index":0', '"index":1'} <= {
        part for line in lines for part in ('"index":0', '"index":1') if part in line
    }
    assert '"prompt_tokens":4' in lines[-1]


def test_echo_scores_the_prompt_with_and_without_generating(client: TestClient, tall: None) -> None:
    body = {
        "model": "tiny:1",
        "prompt": "abc",
        "echo": True,
        "logprobs": 1,
        "max_tokens": 1,
        "temperature": 0,
    }
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    assert choice["text"] == "abcH"
    lp = choice["logprobs"]
    assert lp["tokens"] == ["a", "b", "c", "H"] and lp["text_offset"] == [0, 1, 2, 3]
    assert lp["token_logprobs"][:3] == [None, -0.25, -0.25] and lp["top_logprobs"][0] is None
    scored = client.post("/v1/completions", json={**body, "prompt": [[98, 99, 100]], "max_tokens": 0}).json()
    (only,) = scored["choices"]
    assert only["text"] == "abc" and only["logprobs"]["token_logprobs"] == [None, -0.25, -0.25]
    assert scored["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 0,
        "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    # with n, every choice echoes the prompt's scores, and only the first answer reads them
    two = client.post("/v1/completions", json={**body, "n": 2}).json()["choices"]
    assert [c["logprobs"]["token_logprobs"][:3] for c in two] == [[None, -0.25, -0.25]] * 2
    (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
    scored = [c.request_id for plan in loaded.worker.backend.plans for c in plan.prefill if c.targets]
    assert len([r for r in scored if r.endswith("-0")]) >= 1 and not [r for r in scored if r.endswith("-1")]
    # the prompt is read again, never from the cache: every position needs its logits
    again = client.post("/v1/completions", json={**body, "max_tokens": 0}).json()
    assert again["choices"][0]["logprobs"]["token_logprobs"] == [None, -0.25, -0.25]


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_tokenizer_endpoints(client: TestClient, tall: None, prefix: str) -> None:
    r = client.post(f"{prefix}/tokenize", json={"prompt": "hi", "add_special_tokens": False}).json()
    assert r == {"count": 2, "max_model_len": 512, "tokens": [105, 106], "token_strs": None}
    assert client.post(f"{prefix}/detokenize", json={"tokens": [105, 106]}).json() == {"prompt": "hi"}
    info = client.get(f"{prefix}/tokenizer_info").json()
    assert info["model"] == "tiny:1" and "eos_token" in info and info["model_max_length"] == 512
    assert info["tokenizer_class"] == "llama.cpp"  # the format's runtime (formats/)
    named = client.post(f"{prefix}/tokenize", json={"model": "tiny:1", "prompt": "x"})
    assert named.json()["tokens"] == [121]
    bad = client.post(f"{prefix}/detokenize", json={"tokens": [5, 100000]})
    assert bad.status_code == 400 and "token id 100000" in bad.text
    missing = client.post(f"{prefix}/tokenize", json={"model": "nope:1", "prompt": "x"})
    assert missing.status_code == 404
    extra = client.post(f"{prefix}/tokenize", json={"prompt": "x", "messages": []})
    assert extra.status_code == 400 and "messages" in extra.text
