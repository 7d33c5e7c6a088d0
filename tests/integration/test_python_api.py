"""slmkit.load (in-process) and slmkit.Client (HTTP) give the same greedy answer."""

from __future__ import annotations

from pathlib import Path

import slmkit
from slmkit.config import Config
from tests.integration.conftest import MODEL, Server

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


def test_in_process_and_server_agree(server: Server, models_dir: Path) -> None:
    config = Config.from_env({"SLM_MODELS": str(models_dir), "SLM_NUM_THREADS": "1"})
    with slmkit.LocalModel.open(MODEL, config=config) as local:
        mine = local.chat(MESSAGES, temperature=0, max_tokens=20)
        streamed = "".join(c.text for c in local.chat(MESSAGES, stream=True, temperature=0, max_tokens=20))
        vectors = local.embed(["hello"])
    with slmkit.Client(server.url) as client:
        theirs = client.chat(MODEL, MESSAGES, options={"temperature": 0, "num_predict": 20})
        pieces = list(
            client.chat(MODEL, MESSAGES, stream=True, options={"temperature": 0, "num_predict": 20})
        )
    assert mine.text == theirs.text == streamed
    assert "".join(p.text for p in pieces) == theirs.text
    assert pieces[-1].done is not None and pieces[-1].done.completion_tokens == theirs.completion_tokens
    assert mine.completion_tokens == theirs.completion_tokens
    assert len(vectors[0]) == 576


def test_in_process_refuses_invalid_text_as_the_server_does(models_dir: Path) -> None:
    import pytest

    from slmkit.errors import InvalidText

    config = Config.from_env({"SLM_MODELS": str(models_dir), "SLM_NUM_THREADS": "1"})
    with slmkit.LocalModel.open(MODEL, config=config) as local:
        with pytest.raises(InvalidText, match=r"messages\.0\.content"):
            local.chat([{"role": "user", "content": "a\ud800"}], max_tokens=2)
        with pytest.raises(InvalidText, match=r"texts\.0"):
            local.embed(["a\ud800"])
        with pytest.raises(InvalidText, match=r"options\.stop\.0"):
            local.generate("hi", stop=["\udfff"], max_tokens=2)
        assert local.generate("a\x00b\u202e", max_tokens=2, temperature=0).completion_tokens > 0
