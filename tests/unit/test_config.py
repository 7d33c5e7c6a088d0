from __future__ import annotations

import re
from pathlib import Path

import pytest

from slmkit.config import SETTINGS, Config, describe, parse_duration
from slmkit.errors import InvalidRequest


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        ("30", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("-1", -1.0),
        (-1, -1.0),
        ("-1m", -60.0),
        ("1.5s", 1.5),
    ],
)
def test_parse_duration(value: str | int, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "abc", "5x", "m", "5m3", True])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(InvalidRequest, match="keep_alive"):
        parse_duration(value)  # type: ignore[arg-type]


def test_defaults() -> None:
    config = Config.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 11435)
    assert config.keep_alive == 300.0
    assert config.models == Path.home() / ".slmkit" / "models"


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("0.0.0.0", "0.0.0.0", 11435),
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("http://localhost:9000/", "localhost", 9000),
        ("[::1]:7000", "::1", 7000),
        (":7001", "127.0.0.1", 7001),
    ],
)
def test_host(value: str, host: str, port: int) -> None:
    config = Config.from_env({"SLM_HOST": value})
    assert (config.host, config.port) == (host, port)


def test_base_url_never_uses_wildcard() -> None:
    assert Config.from_env({"SLM_HOST": "0.0.0.0:1234"}).base_url == "http://127.0.0.1:1234"


def test_describe_lists_every_setting() -> None:
    names = [row[0] for row in describe({})]
    assert names == [s.name for s in SETTINGS]
    assert all(row[2] for row in describe({}))


def test_urls_are_redacted() -> None:
    from slmkit.security.redact import redact_url, redact_urls

    assert redact_url("https://user:tok@vllm:8000/v1?key=abc") == "https://***@vllm:8000/v1?***"
    assert redact_url("http://vllm:8000/v1") == "http://vllm:8000/v1"
    text = "upstream at https://a:b@h/v1 failed; see http://x/y?token=1"
    assert redact_urls(text) == "upstream at https://***@h/v1 failed; see http://x/y?***"


def test_flash_attention_and_kv_cache_type() -> None:
    c = Config.from_env({})
    assert (c.flash_attention, c.kv_cache_type) == ("auto", "f16")
    c = Config.from_env({"SLM_FLASH_ATTENTION": "1", "SLM_KV_CACHE_TYPE": "Q8_0"})
    assert (c.flash_attention, c.kv_cache_type) == ("on", "q8_0")
    with pytest.raises(InvalidRequest, match="SLM_KV_CACHE_TYPE: 'q2_k' is not one of f16, q8_0, q4_0"):
        Config.from_env({"SLM_KV_CACHE_TYPE": "q2_k"})
    with pytest.raises(InvalidRequest, match="SLM_FLASH_ATTENTION"):
        Config.from_env({"SLM_FLASH_ATTENTION": "maybe"})
    with pytest.raises(InvalidRequest, match="q4_0 needs flash attention"):
        Config.from_env({"SLM_FLASH_ATTENTION": "off", "SLM_KV_CACHE_TYPE": "q4_0"})
    assert not c.kv_unified and Config.from_env({"SLM_KV_UNIFIED": "1"}).kv_unified
    assert c.kv_pool == 0 and Config.from_env({"SLM_KV_POOL": "16384"}).kv_pool == 16384


def test_draft_tokens_are_bounded() -> None:
    assert Config.from_env({}).draft_tokens == 0
    assert Config.from_env({"SLM_DRAFT_TOKENS": "8"}).draft_tokens == 8
    for bad in ("-1", "33"):
        with pytest.raises(InvalidRequest, match="SLM_DRAFT_TOKENS"):
            Config.from_env({"SLM_DRAFT_TOKENS": bad})


def test_every_field_is_declared_with_its_setting() -> None:
    """One declaration per setting (name, type, default, bounds, help): Config's fields are
    parsed from it, `slm config` lists it, and nothing is written twice."""
    import dataclasses

    declared = [f for f in dataclasses.fields(Config) if "setting" in f.metadata]
    derived = [f.name for f in dataclasses.fields(Config) if "part_of" in f.metadata]
    assert len(declared) + len(derived) == len(dataclasses.fields(Config))
    assert derived == ["port", "scheme"]
    assert [f.metadata["setting"] for f in declared] == list(SETTINGS)
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SLM_MAX_QUEUE", "many", "SLM_MAX_QUEUE: 'many' is not a number"),
        ("SLM_MAX_QUEUE", "0", "SLM_MAX_QUEUE: '0' must be at least 1"),
        ("SLM_DRAFT_TOKENS", "33", "SLM_DRAFT_TOKENS: '33' must be at least 0 and at most 32"),
        ("SLM_TEMPLATE_TIMEOUT", "nan", "SLM_TEMPLATE_TIMEOUT"),
        ("SLM_LOAD_TIMEOUT", "0s", "SLM_LOAD_TIMEOUT: '0s' must be at least 1"),
        ("SLM_FILE_MAX_BYTES", "lots", "SLM_FILE_MAX_BYTES: invalid size"),
        ("SLM_LOG_FORMAT", "xml", "SLM_LOG_FORMAT: 'xml' is not one of text, json"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        Config.from_env({name: value})


def test_shared_state_settings_take_redis_urls_and_never_show_a_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from slmkit.cli.main import main

    c = Config.from_env({"SLM_RESPONSES_STORE": "redis://:pw@h:6379/0", "SLM_BATCH_LEASES": " "})
    assert c.responses_store == "redis://:pw@h:6379/0" and c.batch_leases == ""
    assert Config.from_env({}).responses_store == "memory"
    for bad in ("http://:pw@h:6379", ":pw@h:6379", "redis://"):
        with pytest.raises(InvalidRequest, match="SLM_RESPONSES_STORE") as caught:
            Config.from_env({"SLM_RESPONSES_STORE": bad})
        assert "pw" not in str(caught.value)  # a mistyped URL still holds the password
    import os

    os.environ["SLM_RESPONSES_STORE"] = "redis://:hunter2@h:6379/0"
    try:
        assert main(["config"]) == 0
    finally:
        del os.environ["SLM_RESPONSES_STORE"]
    shown = capsys.readouterr().out
    assert "hunter2" not in shown and "redis://***@h:6379/0" in shown
