"""One model profile behind every API: a Modelfile model's PARAMETERs, SYSTEM and MESSAGE
history give the same greedy answer through the official openai, anthropic and ollama
clients (same text, same token count, same stop), with the real default model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anthropic
import ollama
import openai
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
QUESTION = "Name three things you can find in a kitchen."
MODELFILE = f"""FROM {MODEL}
SYSTEM \"\"\"You are a helpful assistant who answers in full sentences.\"\"\"
PARAMETER temperature 0
PARAMETER num_predict 16
MESSAGE user What color is the sky?
MESSAGE assistant The sky is blue on a clear day.
"""


@dataclass
class Seen:
    text: str
    tokens: int
    stopped: bool  # ended by a stop sequence or the end of text (not by the length limit)


def ask_all(server: Server, model: str, anthropic_max: int) -> dict[str, Seen]:
    messages = [{"role": "user", "content": QUESTION}]
    out: dict[str, Seen] = {}
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    try:
        chat = oa.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        assert chat.usage is not None
        out["openai"] = Seen(
            chat.choices[0].message.content or "",
            chat.usage.completion_tokens,
            chat.choices[0].finish_reason == "stop",
        )
        resp = oa.responses.create(model=model, input=QUESTION)
        assert resp.usage is not None
        out["responses"] = Seen(resp.output_text, resp.usage.output_tokens, resp.status == "completed")
    finally:
        oa.close()
    an = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    try:
        msg = an.messages.create(model=model, max_tokens=anthropic_max, messages=messages)  # type: ignore[arg-type]
        text = "".join(b.text for b in msg.content if b.type == "text")
        out["anthropic"] = Seen(
            text, msg.usage.output_tokens, msg.stop_reason in {"stop_sequence", "end_turn"}
        )
    finally:
        an.close()
    ol = ollama.Client(host=server.url)
    try:
        reply = ol.chat(model=model, messages=messages)
    finally:
        ol._client.close()
    out["ollama"] = Seen(reply.message.content or "", reply.eval_count or 0, reply.done_reason == "stop")
    return out


def test_a_modelfile_model_answers_the_same_through_every_client(server: Server, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(MODELFILE)
    server.cli("create", "kitchen:1", "-f", str(tmp_path / "Modelfile"))
    try:
        seen = ask_all(server, "kitchen:1", anthropic_max=16)
        # num_predict 16 holds on every route (OpenAI's used to ignore it and run to the context)
        assert {s.tokens for s in seen.values()} == {16}, seen
        assert len({s.text for s in seen.values()}) == 1, seen
        assert not any(s.stopped for s in seen.values())
        text = seen["openai"].text
        words = [w for w in text.split() if len(w) > 3]
        assert len(words) >= 2, text
        stop = words[1]  # a word the greedy answer reaches before its limit
        (tmp_path / "Modelfile").write_text(MODELFILE + f'PARAMETER stop "{stop}"\n')
        server.cli("create", "kitchen:2", "-f", str(tmp_path / "Modelfile"))
        stopped = ask_all(server, "kitchen:2", anthropic_max=100)  # the stop ends it first
        cut = text[: text.index(stop)]
        for client, s in stopped.items():
            assert s.text == cut and s.stopped, (client, s, cut)
        assert len({s.tokens for s in stopped.values()}) == 1, stopped
        assert 0 < stopped["ollama"].tokens < 16
    finally:
        for name in ("kitchen:1", "kitchen:2"):
            server.cli("rm", name, check=False)


def test_request_values_override_the_model_on_every_route(server: Server, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(MODELFILE)
    server.cli("create", "kitchen:3", "-f", str(tmp_path / "Modelfile"))
    try:
        messages = [{"role": "user", "content": QUESTION}]
        oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        try:
            chat = oa.chat.completions.create(model="kitchen:3", messages=messages, max_tokens=4)  # type: ignore[arg-type]
            assert chat.usage is not None and chat.usage.completion_tokens == 4
        finally:
            oa.close()
        ol = ollama.Client(host=server.url)
        try:
            reply = ol.chat(model="kitchen:3", messages=messages, options={"num_predict": 4})
        finally:
            ol._client.close()
        assert reply.eval_count == 4 and reply.message.content == chat.choices[0].message.content
    finally:
        server.cli("rm", "kitchen:3", check=False)
