"""Scoring a served model: the endpoint client against an in-process fake server that speaks
vLLM's /tokenize and completions echo, and the same numbers as scoring logits locally."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from slmkit.errors import ClientError
from slmkit.optimize.endpoint import Endpoint
from slmkit.optimize.evaluate import LogitScorer, QuestionSet, multiple_choice, perplexity, scored_perplexity
from tests.unit.optimize.test_quality import FakeModel


class FakeServer:
    """Serves a FakeModel: /tokenize with its tokenizer, completions echo with its log-softmax."""

    def __init__(self, model: FakeModel, echo: bool = True, status: int = 200) -> None:
        self.scorer = LogitScorer(model)
        self.echo, self.status = echo, status
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body | {"path": request.url.path, "auth": request.headers.get("authorization")})
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "a valid API key is required"}})
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": self.scorer.tokenize(body["prompt"], add_bos=False)})
        (tokens,) = body["prompt"]
        values = [None, *self.scorer.score(tokens).tolist()] if self.echo else []
        return httpx.Response(
            200, json={"choices": [{"index": 0, "text": "", "logprobs": {"token_logprobs": [*values, -1.0]}}]}
        )


def endpoint(server: FakeServer, **kwargs: Any) -> Endpoint:
    return Endpoint(
        "http://model-host:8000/v1",
        "m",
        n_ctx=FakeModel.n_ctx,
        transport=httpx.MockTransport(server),
        **kwargs,
    )


def test_scores_over_http_equal_the_local_ones() -> None:
    model = FakeModel("next", noise=0.3)
    text = "the quick brown fox jumps over the lazy dog " * 4
    with endpoint(FakeServer(model), api_key="slm-k") as served:
        remote = scored_perplexity(served, text)
        questions = QuestionSet.model_validate(
            {"questions": [{"q": "x", "choices": ["BCD", "QQQ"], "answer": 0}]}
        )
        assert multiple_choice(served, questions) == multiple_choice(model, questions)
    local = perplexity(model, text)
    assert remote.tokens == local.tokens and remote.ppl == pytest.approx(local.ppl, rel=1e-12)


def test_the_requests_are_vllm_shaped_and_carry_the_key() -> None:
    server = FakeServer(FakeModel())
    with endpoint(server, api_key="slm-k") as served:
        assert np.allclose(served.score([3, 4, 5]), LogitScorer(FakeModel()).score([3, 4, 5]))
    completion = server.bodies[-1]
    assert completion["path"] == "/v1/completions" and completion["prompt"] == [[3, 4, 5]]
    assert completion["echo"] is True and completion["max_tokens"] == 1 and completion["logprobs"] == 0
    assert server.bodies[0]["path"] == "/tokenize" and completion["auth"] == "Bearer slm-k"


def test_a_server_without_echo_logprobs_or_refusing_the_key_is_a_clear_error() -> None:
    with (
        endpoint(FakeServer(FakeModel(), echo=False)) as served,
        pytest.raises(ClientError, match="no prompt logprobs with echo"),
    ):
        served.score([1, 2, 3])
    with pytest.raises(ClientError, match="answered 401: a valid API key is required"):
        endpoint(FakeServer(FakeModel(), status=401))
