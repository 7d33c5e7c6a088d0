"""The examples under examples/, run as a user would run them against a real `slm serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_ci_quality_gate_passes_and_fails_on_a_regression(server: Server, tmp_path: Path) -> None:
    gate = EXAMPLES / "ci-quality-gate" / "gate.sh"
    slm = Path(sys.executable).with_name("slm")
    env = {
        **server.env,
        "SLM_URL": server.url,
        "MODEL": MODEL,
        "SLM": str(slm),
        "OUT": str(tmp_path / "quality"),
    }
    passed = subprocess.run([str(gate)], env=env, capture_output=True, text=True, timeout=600)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    (result,) = [json.loads((tmp_path / "quality" / "eval.json").read_text())]
    assert result["golden"]["pass_rate"] >= 0.75 and result["multiple_choice"]["questions"] == 4
    assert result["model"].startswith(f"{MODEL} @ ")
    regressed = tmp_path / "suite.yaml"  # a deployment that stopped knowing the capital of France
    suite = yaml.safe_load((EXAMPLES / "ci-quality-gate" / "suite.yaml").read_text())
    suite["tests"][0]["contains"] = "Lyon"
    regressed.write_text(yaml.safe_dump(suite))
    failed = subprocess.run(
        [str(gate)],
        env={**env, "SUITE": str(regressed), "MIN_PASS": "1.0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert failed.returncode == 1 and "FAIL capital" in failed.stdout and "below --min-pass" in failed.stderr
    workflow = yaml.safe_load((EXAMPLES / "ci-quality-gate" / "quality-gate.yml").read_text())
    steps = workflow["jobs"]["quality"]["steps"]
    assert any("gate.sh" in str(step.get("run", "")) for step in steps)
    assert os.access(gate, os.X_OK)
