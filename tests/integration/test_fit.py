"""`slm fit` against the real worker: the estimate is within +-10% of the measured RSS for
both shipped models at three context sizes, from the GGUF header and from the catalog."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from slmkit.hardware import probe
from slmkit.models.memory import estimate
from slmkit.models.runner import WorkerProcess
from slmkit.optimize.catalog import load_catalog
from slmkit.optimize.sizing import fit_catalog
from slmkit.pipe import EngineRequest, LoadSpec, SamplingParams
from slmkit.store.gguf_info import read_info
from tests.integration.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.integration
TOLERANCE = 0.10


async def measured_rss(path: Path, n_ctx: int) -> int:
    """The worker's RSS after loading and running one full batch (a ~480-token prompt)."""
    worker = WorkerProcess(LoadSpec(model_path=str(path), n_ctx=n_ctx, n_parallel=1, n_threads=1), None, {})
    await worker.start(120)
    try:
        request = EngineRequest(
            "fit", SamplingParams(temperature=0, max_tokens=4), prompt="hello world " * 240
        )
        async for _ in worker.generate(request):
            pass
        assert worker.pid is not None
        return int(psutil.Process(worker.pid).memory_info().rss)
    finally:
        await worker.stop()


@pytest.mark.parametrize("n_ctx", [512, 2048, 8192])
@pytest.mark.parametrize(
    ("which", "catalog_id", "quant"),
    [("smollm2", "smollm2-135m", "Q4_1"), ("gemma", "gemma3-270m", "Q4_K_M")],
)
def test_estimate_within_ten_percent_of_the_worker_rss(
    which: str, catalog_id: str, quant: str, n_ctx: int, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(f"{which}_gguf")
    rss = asyncio.run(measured_rss(path, n_ctx))
    from_gguf = estimate(read_info(path), n_ctx, 1).total
    from_catalog = fit_catalog(
        load_catalog().get(catalog_id), probe(), quant=quant, n_ctx=n_ctx
    ).estimate.total
    for label, value in (("gguf", from_gguf), ("catalog", from_catalog)):
        error = value / rss - 1
        print(f"{which} ctx={n_ctx} {label}: estimate {value >> 20} MiB, RSS {rss >> 20} MiB ({error:+.1%})")
        assert abs(error) <= TOLERANCE, (label, value, rss)


def test_fit_cli_json_for_a_gguf_and_a_catalog_model(smollm2_gguf: Path) -> None:
    def fit(*args: str) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-m", "slmkit", "fit", *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode in (0, 2), out.stderr
        data: dict[str, object] = json.loads(out.stdout)
        return data

    local = fit(str(smollm2_gguf), "--ctx", "2048", "--parallel", "2")
    parts = local["bytes"]
    assert isinstance(parts, dict) and local["source"] == "gguf" and local["quant"] == "Q4_1"
    assert parts["kv_cache"] == 2 * 30 * 3 * 128 * 2048 * 2
    assert local["fits_ram"] is True
    catalog = fit("qwen3-30b-a3b", "--quant", "Q8_0", "--ctx", "4096", "--kv-type", "q8_0")
    assert catalog["source"] == "catalog" and catalog["quant"] == "Q8_0"
    bad = subprocess.run([sys.executable, "-m", "slmkit", "fit", "nope-9b"], capture_output=True, text=True)
    assert bad.returncode == 1 and "neither in the catalog nor in the local store" in bad.stderr


def test_catalog_and_recommend_cli(tmp_path: Path) -> None:
    def slm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    micro = json.loads(slm("catalog", "--tier", "micro", "--json").stdout)
    assert micro and all(m["tier"] == "micro" for m in micro)
    assert {"smollm2-135m", "gemma3-270m", "qwen3-0.6b"} <= {m["id"] for m in micro}
    assert all(m["fit"]["total"] > m["fit"]["weights"] > 0 for m in micro)
    table = slm("catalog")
    assert table.returncode == 0 and "qwen3-30b-a3b" in table.stdout.replace("\n", "")
    found = json.loads(slm("recommend", "--parallel", "4", "--ctx", "2048", "--json").stdout)
    assert found["speed_calibration"] == "default" and found["candidates"]
    assert all(c["tok_s_per_user"] >= 10 for c in found["candidates"])
    none = slm("recommend", "--min-tok-s", "100000")
    assert none.returncode == 2 and "Nothing in the catalog fits" in none.stdout
    # a results file in the current folder is pointed out, never used unasked
    (tmp_path / "bench-results").mkdir()
    (tmp_path / "bench-results" / "results.json").write_text("{}")
    here = slm("recommend", "--json")
    assert json.loads(here.stdout)["speed_calibration"] == "default"
    assert "pass --bench bench-results/results.json" in here.stderr


def test_fit_of_a_stored_name_sizes_the_stored_file(models_dir: Path) -> None:
    import os

    env = {**os.environ, "SLM_MODELS": str(models_dir)}

    def fit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "slmkit", "fit", *args], capture_output=True, text=True,
                              timeout=60, env=env)  # fmt: skip

    stored = json.loads(fit("smollm2:135m", "--json").stdout)
    assert stored["source"] == "store" and stored["quant"] == "Q4_1"  # the file here, not the catalog's
    assert stored["budget_bytes"] == int(0.9 * stored["machine"]["memory_for_models"])
    catalog = json.loads(fit("smollm2:135m", "--quant", "Q4_K_M", "--json").stdout)
    assert catalog["source"] == "catalog" and catalog["quant"] == "Q4_K_M"
    text = fit("smollm2:135m").stdout
    assert "from the store" in text and "usable (90% of the" in text


@pytest.fixture(scope="module")
def one_model_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that keeps one model loaded at a time: its one worker is the one measured."""
    log = tmp_path_factory.mktemp("plan") / "server.log"
    server = start_server(models_dir, log, SLM_MAX_LOADED_MODELS="1")
    yield server
    stop_server(server)


def _worker_rss(server: Server) -> int:
    workers = [p for p in psutil.Process(server.process.pid).children(recursive=True) if p.is_running()]
    return max(int(p.memory_info().rss) for p in workers)  # the model's worker is the big one


@pytest.mark.parametrize(("n_ctx", "n_parallel"), [(512, 1), (2048, 2), (8192, 1)])
def test_the_load_plan_is_the_load(one_model_server: Server, n_ctx: int, n_parallel: int) -> None:
    import httpx

    server = one_model_server
    name = f"plan-{n_ctx}-{n_parallel}:latest"
    made = httpx.post(f"{server.url}/api/create", timeout=120, json={
        "model": name, "from": "smollm2:135m", "stream": False,
        "parameters": {"num_ctx": n_ctx, "num_parallel": n_parallel},
    })  # fmt: skip
    assert made.status_code == 200, made.text
    plan = httpx.post(f"{server.url}/api/plan", json={"model": name}).json()
    assert (plan["context"], plan["parallel"], plan["loaded"]) == (n_ctx, n_parallel, False)
    answer = httpx.post(f"{server.url}/api/generate", timeout=300, json={
        "model": name, "prompt": "hello world " * 240, "stream": False, "options": {"num_predict": 4},
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    running = next(m for m in httpx.get(f"{server.url}/api/ps").json()["models"] if m["name"] == name)
    assert (running["context_length"], running["num_parallel"]) == (plan["context"], plan["parallel"])
    rss = _worker_rss(server)
    total = plan["bytes"]["total"]
    print(f"{name}: plan {total >> 20} MiB, worker RSS {rss >> 20} MiB ({rss / total - 1:+.1%})")
    assert abs(rss / total - 1) <= TOLERANCE, (plan, rss)
    assert httpx.post(f"{server.url}/api/plan", json={"model": name}).json()["loaded"] is True
