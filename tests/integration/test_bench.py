"""`slm bench` against a real server over both API styles, and in-process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import MODEL, Server


def test_bench_both_api_styles_and_in_process(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "run"
    server.cli(
        "bench",
        f"slm://{MODEL}",
        f"openai+{server.url}",
        f"ollama+{server.url}",
        "--model",
        MODEL,
        "--concurrency",
        "1,2",
        "--num-requests",
        "2",
        "--output-tokens",
        "8",
        "--out",
        str(out),
        timeout=300,
    )
    result = json.loads((out / "results.json").read_text())
    assert len(result["targets"]) == 3 and [lv["concurrency"] for lv in result["levels"]] == [1, 2]
    for level in result["levels"]:
        for label, agg in level["targets"].items():
            assert agg["completed"] == 2 and agg["errors"] == {}, label
            assert agg["output_tokens"] > 0 and agg["ttft_s"]["p50"] > 0
    assert result["resources"][f"slm://{MODEL}"]["peak_rss_bytes"] > 0
    assert {p.name for p in out.iterdir()} >= {
        "results.json",
        "report.md",
        "throughput.png",
        "latency.png",
        "ttft.png",
    }
    assert "| 2 |" in (out / "report.md").read_text()


def test_bench_openai_style_and_failures_are_errors(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "fail"
    result = server.cli(
        "bench",
        server.url,
        "--api",
        "openai",
        "--model",
        "no-such-model",
        "--num-requests",
        "2",
        "--output-tokens",
        "4",
        "--out",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0
    data = json.loads((out / "results.json").read_text())
    assert data["levels"][0]["targets"][next(iter(data["levels"][0]["targets"]))]["errors"] == {"http_404": 2}
    compare = server.cli("bench", "compare", str(out / "results.json"), str(out / "results.json"))
    assert "| 1 |" in compare.stdout
