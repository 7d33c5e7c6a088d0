"""Scoring a served model: the endpoint client against an in-process fake server that speaks
vLLM's /tokenize and completions echo, and the same numbers as scoring logits locally."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from slmkit.errors import ClientError, InvalidRequest
from slmkit.optimize.endpoint import Endpoint
from slmkit.optimize.evaluate import LogitScorer, QuestionSet, multiple_choice, perplexity, scored_perplexity
from tests.unit.optimize.test_quality import FakeModel


class FakeServer:
    """Serves a FakeModel: /tokenize with its tokenizer, completions echo with its log-softmax."""

    def __init__(
        self, model: FakeModel, echo: bool = True, status: int = 200, llama_shape: bool = False
    ) -> None:
        self.scorer = LogitScorer(model)
        self.echo, self.status, self.llama_shape = echo, status, llama_shape
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body | {"path": request.url.path, "auth": request.headers.get("authorization")})
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "a valid API key is required"}})
        if request.url.path == "/tokenize":  # llama.cpp's server reads "content", and ignores "prompt"
            text = body.get("content", "") if self.llama_shape else body["prompt"]
            return httpx.Response(200, json={"tokens": self.scorer.tokenize(text, add_bos=False)})
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
    assert completion["auth"] == "Bearer slm-k"
    with endpoint(server) as served:
        assert not served.add_bos and served.bos == -1  # asked of the server's tokenizer, once
        assert served.bos == -1 and [b["path"] for b in server.bodies].count("/tokenize") == 1


def test_a_server_without_echo_logprobs_or_refusing_the_key_is_a_clear_error() -> None:
    with (
        endpoint(FakeServer(FakeModel(), echo=False)) as served,
        pytest.raises(ClientError, match="no prompt logprobs with echo"),
    ):
        served.score([1, 2, 3])
    with (
        endpoint(FakeServer(FakeModel(), status=401)) as refused,
        pytest.raises(ClientError, match="answered 401: a valid API key is required"),
    ):
        refused.tokenize("x")


def test_a_chat_only_server_still_runs_golden_suites(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server without /tokenize or echo logprobs (llama.cpp's server, many proxies): no
    perplexity or multiple choice, said plainly; the golden suite still gates."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class ChatOnly(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            chat = self.path == "/v1/chat/completions"
            body = json.dumps({"choices": [{"message": {"content": "Paris."}}]} if chat else {"error": "no"})
            self.send_response(200 if chat else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatOnly)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    suite = tmp_path / "suite.yaml"
    suite.write_text("tests:\n  - {name: capital, prompt: 'Capital of France?', contains: Paris}\n")
    from slmkit.cli import eval as eval_command
    from slmkit.cli.main import build_parser

    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        args = build_parser("eval").parse_args(
            ["eval", "--endpoint", url, "--model", "m", "--mc", "--suite", str(suite)]
        )
        assert eval_command.run(args) == 0
        shown = capsys.readouterr().out
        assert "no perplexity or multiple choice" in shown and "answered 404" in shown
        assert "golden 1/1 passed" in shown
        gated = build_parser("eval").parse_args(
            ["eval", "--endpoint", url, "--model", "m", "--compare", url, "--max-ppl-increase", "0.1"]
        )
        with pytest.raises(InvalidRequest, match="gives no perplexity"):
            eval_command.run(gated)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_llama_cpp_servers_tokenize_shape_is_tried_when_the_vllm_one_gives_nothing() -> None:
    with endpoint(FakeServer(FakeModel(), llama_shape=True)) as served:
        assert served.tokenize("abc") == LogitScorer(FakeModel()).tokenize("abc", add_bos=False)
        assert served.tokenize("") == []
