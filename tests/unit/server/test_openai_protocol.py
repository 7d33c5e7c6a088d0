"""The pure conversions of the OpenAI adapter, without a server."""

from __future__ import annotations

import pytest

from slmkit.engine.generation import Answer, Done, Text
from slmkit.engine.types import GenerationStats
from slmkit.errors import InvalidRequest
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
    assert engine.messages == ({"role": "system", "content": "be nice"}, {"role": "user", "content": "ab"})
    # only what the request set: the model's PARAMETERs and the defaults fill in the rest
    assert dict(engine.options) == {"num_predict": 9, "stop": ("END",), "seed": 3}


def test_completion_prompt_list_of_one() -> None:
    req = p.CompletionRequest.model_validate({"model": "m", "prompt": ["x"]})
    assert p.from_openai_completion(req, "r").prompt == "x"
    assert p.from_openai_completion(req, "r").options == ()
    with pytest.raises(InvalidRequest, match="prompt"):
        p.from_openai_completion(
            p.CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]}), "r"
        )


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
