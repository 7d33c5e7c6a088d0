"""Model cards with measured quality: `slm eval` keeps its figures with the model, the API and
`slm show` report them, they survive a restart; `slm create --max-ppl/--min-mc` refuses a
quantization that lost quality (Q2_K of the default model) and keeps a good build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model
from tests.integration.conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    models = tmp_path_factory.mktemp("cards-models")
    ensure_default_model(ModelStore(models))
    server = start_server(models, tmp_path_factory.mktemp("cards-logs") / "server.log")
    yield server, models
    stop_server(server)


def test_a_card_appears_after_eval_and_survives_a_restart(own: tuple[Server, Path], tmp_path: Path) -> None:
    server, models = own
    assert "quality" not in httpx.post(f"{server.url}/api/show", json={"model": MODEL}).json()
    out = server.cli("eval", MODEL, "--mc", "--chunks", "4", "--suite", "builtin", timeout=600).stdout
    assert "kept in its model card" in out
    card = httpx.post(f"{server.url}/api/show", json={"model": MODEL}).json()["quality"]
    assert card["perplexity"]["ppl"] > 1 and 0 <= card["multiple_choice"]["accuracy"] <= 1
    assert card["golden"]["total"] >= 4 and card["machine"]["cores"] >= 1 and card["measured_at"]
    assert httpx.get(f"{server.url}/v1/models/{MODEL}").json()["quality"] == card
    assert "Quality (slm eval" in server.cli("show", MODEL).stdout
    plan = httpx.post(f"{server.url}/api/plan", json={"model": MODEL}).json()
    assert plan["expected_tokens_per_second"] == card["speed"]["decode_tok_s"] > 0  # measured here
    again = start_server(models, tmp_path / "again.log")  # a restart reads it from the store
    try:
        assert httpx.post(f"{again.url}/api/show", json={"model": MODEL}).json()["quality"] == card
    finally:
        stop_server(again)


def test_create_refuses_a_build_below_the_quality_floor(own: tuple[Server, Path], tmp_path: Path) -> None:
    server, _ = own
    server.cli("quantize", MODEL, "--to", "Q2_K", "--allow-requantize", "--no-eval", timeout=600)
    (tmp_path / "Broken").write_text(f"FROM {MODEL}-q2_k\n")
    (tmp_path / "Fine").write_text(f"FROM {MODEL}\nSYSTEM You answer briefly.\n")
    floors = ["--max-ppl", "40", "--min-mc", "0.8"]  # measured: Q4_1 33.2 / 83%, Q2_K 49.9 / 75%
    broken = server.cli(
        "create", "broken:q2", "-f", str(tmp_path / "Broken"), *floors, check=False, timeout=600
    )
    assert (
        broken.returncode == 1 and "broken:q2 was removed" in broken.stderr and "perplexity" in broken.stderr
    )
    assert httpx.post(f"{server.url}/api/show", json={"model": "broken:q2"}).status_code == 404
    fine = server.cli("create", "fine:1", "-f", str(tmp_path / "Fine"), *floors, timeout=600)
    assert fine.returncode == 0
    card = httpx.post(f"{server.url}/api/show", json={"model": "fine:1"}).json()["quality"]
    assert card["perplexity"]["ppl"] <= 40 and card["multiple_choice"]["accuracy"] >= 0.8
