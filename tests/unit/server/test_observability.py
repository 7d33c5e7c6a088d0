"""/metrics after a known workload (parsed with prometheus_client), the access log, request ids."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from slmkit.store import ModelStore
from tests.unit.server.fakes import FakeWorkers

CHAT = {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_and_histograms_match_a_known_workload(client: TestClient) -> None:
    completions = []
    for _ in range(3):
        completions.append(client.post("/api/chat", json=CHAT).json()["eval_count"])
    streamed = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert streamed.status_code == 200
    assert client.post("/api/chat", json={**CHAT, "model": "nope"}).status_code == 404
    m = scrape(client)
    model = (("model", "tiny:1"),)
    assert m[("slm_requests_total", (("route", "/api/chat"), ("status", "200")))] == 3
    assert m[("slm_requests_total", (("route", "/api/chat"), ("status", "404")))] == 1
    assert m[("slm_requests_total", (("route", "/v1/chat/completions"), ("status", "200")))] == 1
    assert m[("slm_generation_tokens_total", model)] == sum(completions) + 12
    assert m[("slm_time_to_first_token_seconds_count", model)] == 4
    assert m[("slm_queue_wait_seconds_count", model)] == 4
    assert m[("slm_inter_token_latency_seconds_count", model)] == 4 * 11  # 12 tokens, 11 gaps each
    assert m[("slm_request_duration_seconds_count", (("route", "/api/chat"),))] == 4
    # a loaded model's restart counter exists from 0: increase() and the alert see the first death
    assert m[("slm_worker_restarts_total", model)] == 0
    assert m[("slm_preemptions_total", model)] == 0  # one slot each time, nobody waited for another
    # the endpoint picker's names (Gateway API Inference Extension) beside slmkit's own
    picker = (("model_name", "tiny:1"),)
    assert m[("vllm:num_requests_waiting", picker)] == m[("slm_requests_waiting", model)] == 0
    assert m[("vllm:num_requests_running", picker)] == m[("slm_requests_running", model)] == 0
    assert m[("vllm:kv_cache_usage_perc", picker)] == m[("slm_kv_cache_usage_ratio", model)]
    assert m[("slm_model_loaded", model)] == 1
    assert m[("slm_requests_running", model)] == 0
    assert 0 < m[("slm_kv_cache_usage_ratio", model)] <= 1
    assert m[("slm_rejections_total", (("reason", "queue_full"),))] == 0
    assert ("slm_prompt_tokens_total", model) in m


def test_rejections_are_counted_by_reason(client: TestClient) -> None:
    client.get("/api/tags", headers={"Host": "evil.example"})
    client.post("/api/chat", content=b"x" * 5000)
    m = scrape(client)
    assert m[("slm_rejections_total", (("reason", "bad_host"),))] == 1
    assert m[("slm_rejections_total", (("reason", "too_large"),))] == 1


def test_no_prompt_or_key_in_labels(client: TestClient) -> None:
    client.post("/api/chat", json={**CHAT, "messages": [{"role": "user", "content": "SECRET-PROMPT-XYZ"}]})
    assert "SECRET-PROMPT-XYZ" not in client.get("/metrics").text


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert client.get("/api/tags", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/api/tags", headers={"X-Request-Id": "bad id\nwith newline"}).headers["x-request-id"]
    assert len(made) == 32 and made.isalnum()


def test_access_log_is_structured_and_private(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    state = client.app.state.slm  # type: ignore[attr-defined]
    state.config = dataclasses.replace(state.config, log_format="json")
    with caplog.at_level(logging.INFO, logger="slmkit.access"):
        client.post(
            "/api/chat",
            json={**CHAT, "messages": [{"role": "user", "content": "TOP-SECRET-PROMPT"}]},
            headers={"X-Request-Id": "req-1", "Authorization": "Bearer slm-not-a-real-key"},
        )
    lines = [r.fields for r in caplog.records if r.name == "slmkit.access"]
    (line,) = [x for x in lines if x["request_id"] == "req-1"]
    assert line["status"] == 200 and line["model"] == "tiny:1" and line["completion_tokens"] == 12
    assert line["path"] == "/api/chat" and line["duration_ms"] > 0
    text = caplog.text
    assert "TOP-SECRET-PROMPT" not in text and "slm-not-a-real-key" not in text


def test_the_load_gauges_need_no_key_and_carry_nothing_else(tmp_path: Path, store: ModelStore) -> None:
    """/metrics/load: what the inference gateway's endpoint picker scrapes (it sends no key)."""
    from slmkit.security.keys import KeyStore
    from slmkit.server.app import create_app
    from tests.unit.server.fakes import FakeWorkers, make_config

    config = make_config(tmp_path, default_model="tiny:1")
    keys = KeyStore(config.keys_file)
    _, secret = keys.create("inference", name="app")
    app = create_app(config, store=store, worker_factory=FakeWorkers(), preload=False)
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/metrics").status_code == 401  # the full set needs a metrics key
        chat = c.post("/api/chat", json=CHAT, headers={"Authorization": f"Bearer {secret}"})
        assert chat.status_code == 200
        load = c.get("/metrics/load")
        assert load.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(load.text)}
        assert set(families) == {"vllm:num_requests_waiting", "vllm:num_requests_running",
                                 "vllm:kv_cache_usage_perc"}  # fmt: skip
        assert families["vllm:num_requests_waiting"].samples[0].labels == {"model_name": "tiny:1"}


def test_collected_answers_reach_the_worker_unpaced_and_streams_paced(
    client: TestClient, workers: FakeWorkers
) -> None:
    """The scheduler keeps an even pace only for answers read as they come (engine/scheduler.py)."""
    openai = {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for route, body in (
        ("/api/chat", CHAT),
        ("/api/chat", {**CHAT, "stream": True}),
        ("/v1/chat/completions", openai),
        ("/v1/chat/completions", {**openai, "stream": True}),
    ):
        assert client.post(route, json=body).status_code == 200
    seen = [r.streamed for w in workers.instances for r in w.requests]
    assert seen == [False, True, False, True]
