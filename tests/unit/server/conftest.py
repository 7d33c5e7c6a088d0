from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from slmkit.server.app import create_app
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.server.fakes import FakeWorkers, make_config


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    s = ModelStore(tmp_path / "models")
    s.import_gguf("tiny:1", write_tiny_gguf(tmp_path / "tiny.gguf"))
    return s


@pytest.fixture
def workers() -> FakeWorkers:
    """This test's fake workers: set ``script`` / ``n_ctx`` before the first request loads one."""
    return FakeWorkers()


@pytest.fixture
def client(tmp_path: Path, store: ModelStore, workers: FakeWorkers) -> Iterator[TestClient]:
    config = make_config(tmp_path, default_model="tiny:1", max_body_bytes=4096)
    app = create_app(config, store=store, worker_factory=workers, preload=False)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        yield c
