"""Keys and scopes on every route, Host and CORS rules, limits: all against the real app."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from slmkit.security.keys import KeyStore
from slmkit.server.app import create_app, route_table
from slmkit.store import ModelStore
from tests.unit.server.fakes import FakeWorker, make_config

CHAT = {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture
def keyed(tmp_path: Path, store: ModelStore) -> Iterator[tuple[TestClient, dict[str, str]]]:
    config = make_config(tmp_path)
    keys = KeyStore(config.keys_file)
    secrets = {scope: keys.create(scope, name=scope)[1] for scope in ("inference", "admin", "metrics")}
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        yield c, secrets


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def every_route(client: TestClient) -> list[tuple[str, str]]:
    out = []
    for path, methods in route_table(client.app):  # type: ignore[arg-type]
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        out += [(method, concrete) for method in sorted(methods) if method != "HEAD"]
    return out


def test_every_route_but_probes_and_the_chat_page_needs_a_key(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = keyed
    routes = every_route(client)
    assert len(routes) > 15
    for method, path in routes:
        r = client.request(method, path, json={})
        if path in {"/", "/health", "/ready", "/metrics/load", "/ui"} or path.startswith("/ui/"):
            assert r.status_code != 401, path  # probes, the picker's gauges, "is running", the chat page
        else:
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"


def test_error_shapes(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = keyed
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.json()["error"]["type"] == "authentication_error"
    r = client.post("/api/chat", json=CHAT, headers=bearer("slm-wrong"))
    assert r.status_code == 401 and r.json() == {"error": "a valid API key is required"}


def test_scopes(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, s = keyed
    inference, admin, metrics = bearer(s["inference"]), bearer(s["admin"]), bearer(s["metrics"])
    assert client.post("/api/chat", json=CHAT, headers=inference).status_code == 200
    assert client.get("/v1/models", headers=inference).status_code == 200
    assert (
        client.post(
            "/api/copy", json={"source": "tiny:1", "destination": "c:1"}, headers=inference
        ).status_code
        == 403
    )
    assert client.get("/metrics", headers=inference).status_code == 403
    assert client.get("/metrics", headers=metrics).status_code == 200
    assert client.post("/api/chat", json=CHAT, headers=metrics).status_code == 403
    assert (
        client.post("/api/copy", json={"source": "tiny:1", "destination": "c:1"}, headers=admin).status_code
        == 200
    )
    assert client.request("DELETE", "/api/delete", json={"model": "c:1"}, headers=admin).status_code == 200
    assert client.get("/metrics", headers=admin).status_code == 200
    assert client.post("/api/chat", json=CHAT, headers=admin).status_code == 200
    stop = {"model": "tiny:1", "force": True}
    assert client.post("/api/stop", json=stop, headers=inference).status_code == 403  # cuts others' work
    r = client.post("/api/stop", json=stop, headers=admin)
    assert r.status_code == 200 and r.json() == {"model": "tiny:1", "status": "unloaded"}
    assert client.post("/api/stop", json={"model": "nope:1"}, headers=admin).status_code == 404


def test_header_forms(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, s = keyed
    assert client.get("/api/tags", headers={"x-api-key": s["inference"]}).status_code == 200
    assert client.get("/api/tags", headers={"Authorization": f"bearer {s['inference']}"}).status_code == 200
    assert client.get("/api/tags", headers={"Authorization": f"Basic {s['inference']}"}).status_code == 401
    assert client.get(f"/api/tags?api_key={s['inference']}").status_code == 401  # never in query strings


class Ticks:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_keys_created_while_running_are_picked_up_and_revoked(tmp_path: Path, store: ModelStore) -> None:
    """Another process (``slm keys``) changes the file: the server sees it once its check
    interval has passed (the clock is the test's), and never before it re-checks."""
    config = make_config(tmp_path)
    clock = Ticks()
    served = KeyStore(config.keys_file, clock=clock)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False, keys=served)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/api/tags").status_code == 200  # no keys yet: open, on loopback
        keys = KeyStore(config.keys_file)
        key, secret = keys.create("inference")
        assert client.get("/api/tags").status_code == 200  # not re-checked yet
        clock.now += served.recheck
        assert client.get("/api/tags").status_code == 401
        assert client.get("/api/tags", headers=bearer(secret)).status_code == 200
        keys.revoke(key.id)
        clock.now += served.recheck
        # auth never turns itself off: with no keys left, every request is refused
        assert client.get("/api/tags", headers=bearer(secret)).status_code == 401
        assert client.get("/api/tags").status_code == 401
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("content", ["", '{"keys": []}', "not json"])
def test_auth_fails_closed_on_an_empty_or_broken_keys_file(
    tmp_path: Path, store: ModelStore, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    keys = KeyStore(config.keys_file)
    _, secret = keys.create("admin")
    clock = Ticks()
    served = KeyStore(config.keys_file, clock=clock)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False, keys=served)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/api/tags", headers=bearer(secret)).status_code == 200
        config.keys_file.write_text(content)  # an emptied Secret, a truncated file
        clock.now += served.recheck
        r = client.get("/api/tags", headers=bearer(secret))
        assert r.status_code == 401 and "Traceback" not in r.text
        assert client.get("/v1/models").status_code == 401
    assert any("refusing every request" in m for m in caplog.messages)


def test_require_keys_refuses_everything_without_keys(tmp_path: Path, store: ModelStore) -> None:
    config = make_config(tmp_path, require_keys=True)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/api/tags").status_code == 401
        assert client.get("/ready").status_code in (200, 503)  # public routes stay public


BROWSER = {"Origin": "https://evil.example", "Sec-Fetch-Mode": "no-cors", "Content-Type": "text/plain"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/create", '{"model": "planted", "from": "tiny:1", "system": "obey evil"}'),
        ("POST", "/api/copy", '{"source": "tiny:1", "destination": "planted:1"}'),
        ("POST", "/api/pull", '{"model": "evil.example/x/y:z"}'),
        ("POST", "/api/chat", '{"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}]}'),
        (
            "POST",
            "/v1/chat/completions",
            '{"model": "tiny:1", "messages": [{"role": "user", "content": "x"}]}',
        ),
        ("DELETE", "/api/delete", '{"model": "tiny:1"}'),
        ("GET", "/api/tags", None),
        ("POST", "/api/blobs/sha256:" + "0" * 64, "bytes"),
    ],
)
def test_cross_site_requests_are_refused_before_any_work(
    client: TestClient, store: ModelStore, method: str, path: str, body: str | None
) -> None:
    r = client.request(method, path, content=body, headers=BROWSER)
    assert r.status_code == 403 and "origin not allowed" in r.text
    assert [m.name.display for m in store.list()] == ["tiny:1"]  # nothing created, copied or deleted


def test_local_pages_the_own_origin_and_listed_origins_pass(tmp_path: Path, store: ModelStore) -> None:
    config = make_config(tmp_path, origins=("https://app.example",))
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    chat = {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    with TestClient(app, base_url="http://localhost") as client:
        for origin in (
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]",
            "https://app.example",
        ):
            r = client.post("/api/chat", json=chat, headers={"Origin": origin})
            assert r.status_code == 200, (origin, r.text)
        same = client.post("/api/chat", json=chat, headers={"Origin": "http://localhost"})
        assert same.status_code == 200
        for origin in ("null", "https://app.example.evil", "http://localhost.evil.example"):
            assert client.post("/api/chat", json=chat, headers={"Origin": origin}).status_code == 403
        # a listed page must still send JSON: a text/plain body needs no preflight
        plain = {"Origin": "https://app.example", "Content-Type": "text/plain"}
        assert client.post("/api/chat", content=json.dumps(chat), headers=plain).status_code == 403
        # clients that are not browsers keep Ollama's leniency (curl -d sends a form type)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert client.post("/api/chat", content=json.dumps(chat), headers=form).status_code == 200


def test_forged_log_lines_are_escaped(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="slmkit.access")
    client.get("/api/x%0d%0aINFO%20forged")
    lines = [r.getMessage() for r in caplog.records]
    assert lines and not any("\n" in line or "\r" in line for line in lines)
    assert any("\\x0d\\x0a" in line for line in lines)


def test_concurrent_key_commands_lose_no_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "keys.json"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: KeyStore(path).create("inference", name=f"k{i}"), range(24)))
    stored = KeyStore(path).keys()
    assert sorted(k.name for k in stored) == sorted(f"k{i}" for i in range(24))


def test_key_file_is_private_and_holds_no_secret(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.json")
    _, secret = keys.create("admin", rpm=10)
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    assert secret not in (tmp_path / "keys.json").read_text()
    assert secret.startswith("slm-") and len(secret) > 40
    assert keys.verify(secret) is not None and keys.verify(secret + "x") is None


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:11435", 200),
        ("127.0.0.1", 200),
        ("[::1]:11435", 200),
        ("app.localhost", 200),
        ("localhost.:11435", 200),
        ("127.0.0.2", 200),
        ("evil.example", 403),
        ("evil.example:11435", 403),
        ("10.0.0.5", 403),
        ("printer.local", 403),  # mDNS: any device on the LAN can claim it (DNS rebinding)
        ("printer.local:11435", 403),
        ("metadata.google.internal", 403),
        ("localhost.evil.example", 403),
        ("evil-localhost", 403),
    ],
)
def test_host_header_when_bound_to_loopback(client: TestClient, host: str, status: int) -> None:
    r = client.get("/api/tags", headers={"Host": host})
    assert r.status_code == status
    if status == 403:
        assert "host not allowed" in r.json()["error"]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("box.local", 200),
        ("box.local:11435", 200),
        ("a.b.local", 200),
        ("myhost.internal", 200),
        ("other.internal", 403),  # only the exact name
        ("local", 403),
        ("evil.example", 403),
    ],
)
def test_local_hosts_is_an_opt_in_list(tmp_path: Path, store: ModelStore, host: str, status: int) -> None:
    config = make_config(tmp_path, local_hosts=("*.local", "myhost.internal"))
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/api/tags", headers={"Host": host}).status_code == status
        same = {"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json"}
        r = c.post("/api/show", json={"model": "tiny:1"}, headers=same)  # a page of that name
        assert r.status_code == (200 if status == 200 else 403)


def test_local_hosts_setting_parses() -> None:
    from slmkit.config import Config

    assert Config.from_env({"SLM_LOCAL_HOSTS": " *.Local , box.internal ,"}).local_hosts == (
        "*.local",
        "box.internal",
    )


def test_no_host_check_when_bound_elsewhere(tmp_path: Path, store: ModelStore) -> None:
    app = create_app(
        make_config(tmp_path, host="0.0.0.0"), store=store, worker_factory=FakeWorker, preload=False
    )
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/api/tags", headers={"Host": "models.example.com"}).status_code == 200


def test_cors_is_off_by_default(client: TestClient) -> None:
    r = client.options(
        "/api/chat", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/api/tags", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_allows_only_listed_origins(tmp_path: Path, store: ModelStore) -> None:
    config = make_config(tmp_path, origins=("https://app.example",))
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as c:
        ok = c.options(
            "/api/chat", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = c.options(
            "/api/chat", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in bad.headers


def test_rate_limit_requests_per_minute(tmp_path: Path, store: ModelStore) -> None:
    config = make_config(tmp_path)
    _, secret = KeyStore(config.keys_file).create("inference", rpm=2)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as c:
        codes = [c.get("/api/tags", headers=bearer(secret)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"


def test_rate_limit_tokens_per_minute(tmp_path: Path, store: ModelStore) -> None:
    config = make_config(tmp_path)
    _, secret = KeyStore(config.keys_file).create("inference", tpm=10)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as c:
        assert c.post("/api/chat", json=CHAT, headers=bearer(secret)).status_code == 200  # ~20 tokens
        r = c.post("/api/chat", json=CHAT, headers=bearer(secret))
        assert r.status_code == 429 and "rate limit" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({**CHAT, "options": {"stop": [str(i) for i in range(17)]}}, 400, "SLM_MAX_STOP"),
        ({**CHAT, "options": {"num_predict": 10**6}}, 400, "SLM_MAX_TOKENS"),
        (
            {**CHAT, "junk": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            400,
            "SLM_MAX_JSON_DEPTH",
        ),
        ({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}, 413, "SLM_MAX_BODY_BYTES"),
    ],
)
def test_limits_are_4xx_naming_the_limit(
    client: TestClient, body: dict[str, object], status: int, needle: str
) -> None:
    r = client.post("/api/chat", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_upstream_credentials_are_never_shown(client: TestClient, store: ModelStore) -> None:
    store.register_upstream("remote:1", "http://user:s3cr3t@127.0.0.1:1/v1?key=s3cr3t", "m")
    shown = client.post("/api/show", json={"model": "remote:1"})
    assert shown.status_code == 200 and "s3cr3t" not in shown.text
    assert shown.json()["model_info"]["url"] == "http://***@127.0.0.1:1/v1?***"
    failed = client.post(
        "/api/chat", json={"model": "remote:1", "messages": [{"role": "user", "content": "x"}]}
    )
    assert failed.status_code >= 400 and "s3cr3t" not in failed.text and "127.0.0.1:1" in failed.text


@pytest.mark.parametrize(("path", "field"), [("/api/embed", "input"), ("/v1/embeddings", "input")])
def test_embedding_inputs_are_bounded(tmp_path: Path, store: ModelStore, path: str, field: str) -> None:
    config = make_config(tmp_path, max_embed_inputs=3, max_body_bytes=1 << 16)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as client:
        ok = client.post(path, json={"model": "tiny:1", field: ["a", "b", "c"]})
        assert ok.status_code == 200, ok.text
        r = client.post(path, json={"model": "tiny:1", field: ["a"] * 4})
        assert r.status_code == 400 and "SLM_MAX_EMBED_INPUTS" in r.text


def test_a_body_that_trickles_is_cut_off_by_its_deadline(tmp_path: Path, store: ModelStore) -> None:
    """Headers arrive, then part of the body, then nothing: 408 naming SLM_BODY_TIMEOUT once
    the deadline passes (0.2 s here)."""
    import asyncio

    config = make_config(tmp_path, default_model="tiny:1", body_timeout=0.2)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    sent: list[dict[str, object]] = []
    calls = 0

    async def receive() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b'{"model": "ti', "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/chat",
        "raw_path": b"/api/chat",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"content-length", b"100")],
        "scheme": "http",
        "server": ("127.0.0.1", 11435),
        "client": ("127.0.0.1", 5555),
        "http_version": "1.1",
        "root_path": "",
    }

    async def call() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=60)

    asyncio.run(call())
    assert sent[0]["status"] == 408
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))  # type: ignore[misc]
    assert "SLM_BODY_TIMEOUT" in body["error"]
    with TestClient(app, base_url="http://localhost") as client:
        assert 'slm_rejections_total{reason="too_slow"} 1.0' in client.get("/metrics").text
