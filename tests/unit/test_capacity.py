"""`slm deploy k8s --target-rps`: replicas, autoscaling bounds and the queue threshold from
`slm bench` results (deploy/capacity.py), and the CLI that renders them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slmkit.deploy.capacity import UTILISATION, pick_target, plan_capacity
from slmkit.errors import InvalidRequest


def level(c: int, completed: int, duration: float, tok_s: float, ttft_p90: float) -> dict[str, Any]:
    return {"concurrency": c, "targets": {"m-q4": {
        "requests": 16, "completed": completed, "duration_s": duration, "output_tok_s": tok_s,
        "ttft_s": {"p90": ttft_p90}}}}  # fmt: skip


RESULTS = {
    "when": "2026-12-07T00:00:00Z",
    "machine": {"cpus": 2},
    "targets": ["m-q4"],
    "levels": [level(1, 16, 16.0, 100.0, 0.15), level(4, 16, 8.0, 200.0, 0.5), level(8, 15, 6.0, 300.0, 1.0)],
}


def test_the_best_complete_level_sets_replicas_bounds_and_queue() -> None:
    cap = plan_capacity(RESULTS, "m-q4", rps=5, parallel=2, threads=2)
    assert cap.concurrency == 4 and cap.per_replica == 2.0  # level 8 lost a request: not a point
    assert cap.replicas == -(-5 // (2.0 * UTILISATION)) == 4 and cap.max_replicas == 8
    assert cap.queue_threshold == 2  # 4 concurrent on 2 slots
    assert any("ceil(5 / (2 x 0.75)) = 4" in line for line in cap.reasoning)


def test_a_ttft_slo_moves_the_operating_point_down() -> None:
    cap = plan_capacity(RESULTS, "m-q4", rps=5, parallel=4, threads=2, slo_ttft=0.2)
    assert cap.concurrency == 1 and cap.per_replica == 1.0 and cap.replicas == 7
    assert cap.queue_threshold == 1  # never below one
    with pytest.raises(InvalidRequest, match=r"TTFT within 0\.01"):
        plan_capacity(RESULTS, "m-q4", rps=5, parallel=4, threads=2, slo_ttft=0.01)


def test_tokens_per_second_and_a_different_machine_say_so() -> None:
    cap = plan_capacity(RESULTS, "m-q4", tps=1000, parallel=4, threads=8)
    assert cap.unit == "tokens/s" and cap.per_replica == 200.0 and cap.replicas == 7
    assert any("bench on the nodes' hardware class" in line for line in cap.reasoning)


@pytest.mark.parametrize("bad", [{"rps": 0}, {"rps": -1}, {"rps": float("nan")}, {}, {"rps": 1, "tps": 1}])
def test_bad_targets_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidRequest, match="target"):
        plan_capacity(RESULTS, "m-q4", parallel=4, threads=2, **bad)


def test_the_target_is_found_by_name() -> None:
    two = {**RESULTS, "targets": ["smollm2-135m-q4_1", "gemma3-270m-q4_k_m"]}
    assert pick_target(two, "smollm2:135m", None) == "smollm2-135m-q4_1"
    assert pick_target(two, "x", "gemma3-270m-q4_k_m") == "gemma3-270m-q4_k_m"
    with pytest.raises(InvalidRequest, match="name the one"):
        pick_target(two, "qwen3:4b", None)
    with pytest.raises(InvalidRequest, match="not one of"):
        pick_target(two, "x", "nope")
    with pytest.raises(InvalidRequest, match="no targets"):
        pick_target({}, "x", None)


def test_slm_deploy_renders_and_prints_the_capacity(tmp_path: Path) -> None:
    bench = tmp_path / "results.json"
    bench.write_text(json.dumps({**RESULTS, "targets": ["smollm2-135m-q4_1"], "levels": [
        {"concurrency": lv["concurrency"], "targets": {"smollm2-135m-q4_1": lv["targets"]["m-q4"]}}
        for lv in RESULTS["levels"]]}))  # fmt: skip
    out = tmp_path / "k8s"
    run = subprocess.run(
        [sys.executable, "-m", "slmkit", "deploy", "k8s", "--out", str(out), "--target-rps", "5",
         "--parallel", "2", "--bench", str(bench)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "replicas = ceil(5 / (2 x 0.75)) = 4" in run.stdout and "queue threshold" in run.stdout
    scaled = yaml.safe_load((out / "components/keda/scaledobject.yaml").read_text())
    assert scaled["spec"]["minReplicaCount"] == 4 and scaled["spec"]["maxReplicaCount"] == 8
    assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == "2"
    assert yaml.safe_load((out / "base/deployment.yaml").read_text())["spec"]["replicas"] == 4
    missing = subprocess.run(
        [sys.executable, "-m", "slmkit", "deploy", "k8s", "--out", str(out), "--target-rps", "5",
         "--bench", str(tmp_path / "none.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode != 0 and "slm bench" in missing.stderr and "Traceback" not in missing.stderr
