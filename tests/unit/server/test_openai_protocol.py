"""The pure conversions of the OpenAI adapter, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from slmkit.answer.generation import Answer, Done, Text
from slmkit.pipe import EngineRequest, GenerationStats, TokenLogprob
from slmkit.server.openai import protocol as p

DONE = Done("m:1", "length", GenerationStats(5, 3, 0.1, 0.2, cached_tokens=2), 0.0, 0.3)


def test_chat_request_to_engine() -> None:
    req = p.ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be nice"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
            "max_completion_tokens": 9,
            "stop": "END",
            "seed": 3,
        }
    )
    engine = p.from_openai_chat(req, "rid")
    # text parts join with a newline, as llama.cpp's server and vLLM join them
    assert engine.messages == ({"role": "system", "content": "be nice"}, {"role": "user", "content": "a\nb"})
    # only what the request set: the model's PARAMETERs and the defaults fill in the rest
    assert dict(engine.options) == {"num_predict": 9, "stop": ("END",), "seed": 3}


def test_completion_prompts_text_tokens_and_lists() -> None:
    def requests(prompt: object, **fields: object) -> list[EngineRequest]:
        req = p.CompletionRequest.model_validate({"model": "m", "prompt": prompt, **fields})
        return p.from_openai_completion(req, "r")

    (one,) = requests(["x"])
    assert one.prompt == "x" and one.options == () and one.request_id == "r"
    two = requests(["a", "b"])
    assert [r.prompt for r in two] == ["a", "b"] and [r.request_id for r in two] == ["r-p0", "r-p1"]
    (ids,) = requests([5, 6, 7])
    assert ids.prompt == "" and ids.context == (5, 6, 7)  # used as they are: no BOS
    assert [r.context for r in requests([[1, 2], [3]])] == [(1, 2), (3,)]
    (scored,) = requests("x", echo=True, logprobs=2, max_tokens=0)
    assert scored.sampling.prompt_logprobs == 2 and dict(scored.options)["num_predict"] == 1
    (echo,) = requests("x", echo=True)
    assert echo.sampling.prompt_logprobs == 0 and echo.sampling.logprobs is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": []}, "prompt: must be a non-empty"),
        ({"prompt": ["a", ""]}, "prompt: must be a non-empty"),
        ({"prompt": [[1], []]}, "prompt: must be a non-empty"),
        ({"prompt": ["a"] * 65}, "65 prompts times n=1 is more than the limit of 64"),
        ({"prompt": ["a"] * 9, "n": 8}, "9 prompts times n=8"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens: 0 needs echo"),
        ({"prompt": "a", "echo": True, "stream": True}, "echo: not supported with stream"),
        ({"prompt": "a", "max_tokens": -1}, "max_tokens"),
        ({"prompt": [1, "a"]}, "prompt"),
    ],
)
def test_bad_completion_prompts_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        p.CompletionRequest.model_validate({"model": "m", **fields})


def test_an_echoed_answer_starts_with_its_prompt_and_the_first_token_has_no_logprob() -> None:
    def lp(text: str, value: float) -> TokenLogprob:
        return TokenLogprob(
            text, tuple(text.encode()), value, (TokenLogprob(text, tuple(text.encode()), value),)
        )

    stats = GenerationStats(3, 1, 0.1, 0.1, prompt_logprobs=(lp("a", 0.0), lp("b", -1.5), lp("c", -0.5)))
    done = Done("m:1", "length", stats, logprobs=(lp("!", -2.0),))
    answer = Answer("!", "", (), done)
    out = p.Responder(False, "r", "m", logprobs=True)
    choice = out.full([p.echoed(answer, [1, 2, 3], stats.prompt_logprobs, generate=True)])["choices"][0]
    assert choice["text"] == "abc!"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == ["a", "b", "c", "!"] and logprobs["text_offset"] == [0, 1, 2, 3]
    assert logprobs["token_logprobs"] == [None, -1.5, -0.5, -2.0]
    assert logprobs["top_logprobs"][0] is None and logprobs["top_logprobs"][1] == {"b": -1.5}
    only = out.full([p.echoed(answer, "typed prompt", stats.prompt_logprobs, generate=False)])
    assert only["choices"][0]["text"] == "typed prompt" and only["usage"]["completion_tokens"] == 0
    assert only["choices"][0]["logprobs"]["token_logprobs"] == [None, -1.5, -0.5]


def test_responder_full_chat() -> None:
    out = p.Responder(True, "rid", "m").full([Answer("hi", "", (), DONE)])
    assert out["id"] == "chatcmpl-rid" and out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_responder_chat_stream_shape() -> None:
    r = p.Responder(True, "rid", "m", include_usage=True)
    (first,) = r.start()
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None
    assert r.event(Text("x"))[0]["choices"][0]["delta"] == {"content": "x"}
    (finish,) = r.event(DONE)
    (usage,) = r.usage_chunk([DONE])
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 8


def test_responder_text_completion() -> None:
    r = p.Responder(False, "rid", "m")
    assert r.start() == []
    assert r.event(Text("x"))[0]["choices"][0]["text"] == "x"
    assert r.event(Text("x"))[0]["object"] == "text_completion"
    (finish,) = r.event(DONE)
    assert r.usage_chunk([DONE]) == []
    assert finish["choices"][0] == {"index": 0, "text": "", "finish_reason": "length", "logprobs": None}
    assert "usage" not in finish


def test_base64_embedding_round_trips() -> None:
    import base64
    import struct

    encoded = p.encode_embedding([1.0, -0.5], "base64")
    assert isinstance(encoded, str)
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, -0.5)


# What vllm-router 0.1.17 sends for a plain chat and a plain completion (captured from it).
ROUTER_EXTRAS = {
    "logprobs": False, "no_stop_trim": False, "ignore_eos": False, "continue_final_message": False,
    "skip_special_tokens": True, "separate_reasoning": True, "stream_reasoning": True,
    "return_hidden_states": False, "include_reasoning": True,
}  # fmt: skip


def test_the_fields_vllms_router_adds_are_accepted_at_their_defaults() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, **ROUTER_EXTRAS}
    assert p.ChatCompletionRequest.model_validate(chat).max_tokens == 5
    completion = {"model": "m", "prompt": "hello", "max_tokens": 5, "echo": False}
    completion |= {k: v for k, v in ROUTER_EXTRAS.items() if k not in ("logprobs", "continue_final_message")}
    assert p.CompletionRequest.model_validate(completion).prompt == "hello"


@pytest.mark.parametrize(
    "field, value",
    [("no_stop_trim", True), ("skip_special_tokens", False), ("return_hidden_states", True),
     ("continue_final_message", True), ("separate_reasoning", False)],
)  # fmt: skip
def test_the_routers_fields_with_other_values_are_refused_by_name(field: str, value: Any) -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value}
    with pytest.raises(ValidationError, match=f"{field}: this field is not supported yet"):
        p.ChatCompletionRequest.model_validate(chat)
