"""Refusals the framework or a duration used to answer in their own shape: every one is in
the caller's dialect, and no value one caller sets makes another caller's request fail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing", 404),
        ("POST", "/v1/chat/completion", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/files", 405),
    ],
)
def test_unknown_routes_and_methods_answer_in_openais_shape(
    client: TestClient, method: str, path: str, status: int
) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" if status == 405 else "not_found_error"
    assert path in error["message"] and "detail" not in r.json()


def test_unknown_ollama_route_answers_in_ollamas_shape(client: TestClient) -> None:
    r = client.post("/api/nothing", json={})
    assert r.status_code == 404 and set(r.json()) == {"error"} and "/api/nothing" in r.json()["error"]


@pytest.mark.parametrize(
    "files",
    [
        {"file": ("a.jsonl", b"{}\n"), "file2": ("b.jsonl", b"{}\n")},  # two files: over max_files
        None,  # no multipart body at all
    ],
)
def test_malformed_file_uploads_answer_in_openais_shape(client: TestClient, files: object) -> None:
    if files is None:
        bad = {"Content-Type": "multipart/form-data"}
        r = client.post("/v1/files", content=b"--x\r\nbroken", headers=bad)
    else:
        r = client.post("/v1/files", data={"purpose": "batch"}, files=files)  # type: ignore[arg-type]
    assert 400 <= r.status_code < 500, r.text
    assert "error" in r.json() and "detail" not in r.json(), r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", 1e400, "9" * 400])
def test_a_duration_that_is_not_a_number_is_a_400(client: TestClient, value: object) -> None:
    body = f'{{"model": "tiny:1", "keep_alive": {value if isinstance(value, float) else repr(value)}}}'
    body = body.replace("'", '"').replace("inf", "Infinity" if isinstance(value, float) else "inf")
    r = client.post("/api/generate", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "keep_alive" in r.json()["error"], r.text
    assert client.get("/api/ps").status_code == 200


@pytest.mark.parametrize("value", [1e308, "1e308", "100000000h", 10**30])
def test_a_huge_duration_is_clamped_and_ps_still_answers(client: TestClient, value: object) -> None:
    r = client.post("/api/generate", json={"model": "tiny:1", "keep_alive": value})
    assert r.status_code == 200, r.text
    ps = client.get("/api/ps")
    assert ps.status_code == 200
    (model,) = ps.json()["models"]
    expires = datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00"))
    assert 360 < (expires - datetime.now(UTC)).days <= 365  # clamped to a year (config.MAX_DURATION)
