"""Schemathesis against the server's own OpenAPI document: no request shape gives a 500.

Runs on the real app with the in-process fake worker, so thousands of odd bodies cost
seconds; the same request models guard the real engine.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from slmkit.server.app import create_app
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.server.fakes import FakeWorker, make_config

_tmp = Path(__import__("tempfile").mkdtemp(prefix="slm-fuzz-"))
_store = ModelStore(_tmp / "models")
_store.import_gguf("tiny:1", write_tiny_gguf(_tmp / "tiny.gguf"))
# Bound "elsewhere" so that schemathesis's own Host header ("testserver") is accepted.
config = make_config(_tmp, default_model="tiny:1", host="0.0.0.0")
app = create_app(config, store=_store, worker_factory=FakeWorker, preload=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_shape_gives_a_server_error(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code != 500, (
        case.method,
        case.path,
        case.body,
        response.text,
    )  # 503/504/507 are answers


def test_schema_covers_both_dialects() -> None:
    paths = set(schema.raw_schema["paths"])
    assert {"/v1/chat/completions", "/api/chat", "/api/generate", "/v1/embeddings"} <= paths
