"""A server with keys, TLS and a real Prometheus scraping it, driven by the official clients."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from slmkit.security.keys import KeyStore
from tests.gguf_corpus import write_corpus
from tests.integration.conftest import (
    MODEL,
    Server,
    require_prometheus,
    start_server,
    stop_server,
    third_party_server,
    wait_until,
)


@pytest.fixture(scope="module")
def secured(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("secure")
    keys = KeyStore(tmp / "keys.json")
    secrets = {scope: keys.create(scope, name=scope)[1] for scope in ("inference", "admin", "metrics")}
    server = start_server(
        models_dir, tmp / "server.log", SLM_KEYS_FILE=str(tmp / "keys.json"), SLM_LOG_FORMAT="json"
    )
    yield server, secrets
    stop_server(server)


def test_official_clients_with_keys(secured: tuple[Server, dict[str, str]]) -> None:
    server, secrets = secured
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="slm-wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=secrets["inference"], max_retries=0) as good:
        r = good.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5
        )
        assert r.choices[0].message.content
    client = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {secrets['inference']}"})
    assert MODEL in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("nothing:1")
    assert info.value.status_code == 403
    client._client.close()


def test_cli_uses_slm_api_key(secured: tuple[Server, dict[str, str]]) -> None:
    server, secrets = secured
    denied = server.cli("list", check=False)
    assert denied.returncode == 1 and "API key" in denied.stderr
    env_cli = Server(
        server.url,
        {**server.env, "SLM_API_KEY": secrets["inference"]},
        server.process,
        server.store,
        server.log,
    )
    assert MODEL in env_cli.cli("list").stdout
    assert "(set, hidden)" in env_cli.cli("config").stdout


def test_access_log_lines_are_json_without_secrets(secured: tuple[Server, dict[str, str]]) -> None:
    server, secrets = secured
    httpx.post(
        f"{server.url}/api/generate",
        json={"model": MODEL, "prompt": "PROMPT-CANARY", "stream": False, "options": {"num_predict": 2}},
        headers={"Authorization": f"Bearer {secrets['inference']}", "X-Request-Id": "canary-req"},
        timeout=60,
    )
    log = wait_until(
        lambda: (text := server.log.read_text()) * ("canary-req" in text),
        30,
        "the access log never showed the request",
    )
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    lines = [r for r in records if r["logger"] == "slmkit.access"]
    (entry,) = [x for x in lines if x["request_id"] == "canary-req"]
    assert entry["status"] == 200 and entry["completion_tokens"] == 2 and entry["key"]
    assert "PROMPT-CANARY" not in log and secrets["inference"] not in log


def test_malformed_gguf_corpus_is_refused_and_the_server_lives(
    secured: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, secrets = secured
    admin = Server(
        server.url, {**server.env, "SLM_API_KEY": secrets["admin"]}, server.process, server.store, server.log
    )
    for path in write_corpus(tmp_path / "corpus")[::4]:
        result = admin.cli("import", "evil:1", str(path), check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, path.name
    assert "evil:1" not in admin.cli("list").stdout
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_real_prometheus_scrapes_with_a_bearer_key(
    secured: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    binary = require_prometheus()
    server, secrets = secured
    headers = {"Authorization": f"Bearer {secrets['inference']}"}
    before = _request_count(server, secrets)
    for _ in range(3):
        r = httpx.post(
            f"{server.url}/api/generate",
            json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200
    target = server.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: slmkit\n"
        f"    authorization:\n      credentials: {secrets['metrics']}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    with third_party_server(
        lambda port: [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        "/-/ready",
        tmp_path / "prometheus.log",
    ) as prom:
        query = 'slm_requests_total{route="/api/generate",status="200"}'

        def scraped() -> float | None:
            try:
                data = httpx.get(f"{prom}/api/v1/query", params={"query": query}, timeout=5).json()
            except (httpx.TransportError, ValueError):
                return None
            if data.get("status") == "success" and data["data"]["result"]:
                value = float(data["data"]["result"][0]["value"][1])
                return value if value >= before + 3 else None
            return None

        value = wait_until(scraped, 60, "Prometheus never scraped the three requests")
        assert value == before + 3
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()
        assert targets["data"]["activeTargets"][0]["health"] == "up"


def _request_count(server: Server, secrets: dict[str, str]) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {secrets['metrics']}"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "slm_requests_total" and sample.labels == {
                "route": "/api/generate",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_tls(models_dir: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    server = start_server(
        models_dir,
        tmp_path / "server.log",
        ready=False,
        scheme="https",
        verify=trust,
        SLM_TLS_CERT=str(cert),
        SLM_TLS_KEY=str(key),
    )
    port = int(server.url.rpartition(":")[2])
    try:
        with httpx.Client(verify=trust) as http:
            assert http.get(f"https://127.0.0.1:{port}/health").json() == {"status": "ok"}
            with openai.OpenAI(
                base_url=f"https://127.0.0.1:{port}/v1", api_key="x", http_client=http
            ) as client:
                assert MODEL in [m.id for m in client.models.list()]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)  # no plain http on the TLS port
        with socket.create_connection(("127.0.0.1", port)):
            pass
        # the CLI, told https by SLM_HOST: an untrusted certificate is said as such (not "no server"),
        # and SSL_CERT_FILE is the fix it names
        env = {k: v for k, v in server.env.items() if k not in {"SLM_TLS_CERT", "SSL_CERT_FILE"}}
        env["SLM_HOST"] = f"https://127.0.0.1:{port}"
        untrusted = subprocess.run(
            [sys.executable, "-m", "slmkit", "ps"], env=env, capture_output=True, text=True
        )
        assert untrusted.returncode == 1 and "Traceback" not in untrusted.stderr
        assert "does not trust" in untrusted.stderr and "SSL_CERT_FILE" in untrusted.stderr
        env["SSL_CERT_FILE"] = str(cert)
        trusted = subprocess.run(
            [sys.executable, "-m", "slmkit", "ps"], env=env, capture_output=True, text=True
        )
        assert trusted.returncode == 0, trusted.stderr
    finally:
        stop_server(server)
