"""The deployment files, validated for real: Kubernetes schemas (kubernetes-validate, strict),
a policy scanner (checkov) on the manifests and Dockerfiles, hadolint, promtool, and a real
Prometheus that scrapes a running slmkit and evaluates every PromQL expression of the
dashboard and the alert rules. No Docker engine and no cluster are needed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slmkit.deploy.render import K8S_VERSION, Plan, render, write
from tests.integration.conftest import MODEL, Server, require_prometheus, third_party_server, wait_until

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
CRDS = {  # kinds whose schemas kubernetes-validate does not ship: checked for their key fields
    "ServiceMonitor": ["spec.selector.matchLabels", "spec.endpoints"],
    "PrometheusRule": ["spec.groups"],
}
SCHEMAS = Path(__file__).parents[1] / "data" / "crds"
CRD_SCHEMAS = {  # the published CRDs' schemas, vendored (tests/data/crds/README.md)
    "InferencePool": "inferencepool-v1.json",
    "HTTPRoute": "httproute-v1.json",
    "ScaledObject": "scaledobject-v1alpha1.json",
}
OVERLAYS = ("base", "overlays/production", "overlays/vllm", "overlays/gateway", "overlays/router")


def crd_validator(kind: str) -> Any:
    import jsonschema

    schema = json.loads((SCHEMAS / CRD_SCHEMAS[kind]).read_text())
    return jsonschema.Draft202012Validator(schema)


def tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.fail(f"{name} is required for this test (see the Makefile's setup)")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy")
    for target in ("docker", "compose", "k8s"):
        write(render(Plan(target, "qwen3-4b", replicas=2)), out / target)
    return out


def kustomize(folder: Path) -> list[dict[str, Any]]:
    text = subprocess.run(
        [tool("kubectl"), "kustomize", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered: Path) -> None:
    import kubernetes_validate

    seen: set[str] = set()
    for overlay in OVERLAYS:
        for doc in kustomize(rendered / "k8s" / overlay):
            kind = doc["kind"]
            seen.add(kind)
            assert doc["metadata"].get("namespace", "slmkit") == "slmkit" or kind == "Namespace", doc[
                "metadata"
            ]
            if kind in CRD_SCHEMAS:
                errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                          for e in crd_validator(kind).iter_errors(doc)]  # fmt: skip
                assert not errors, (overlay, kind, errors)
                continue
            if kind in CRDS:
                for path in CRDS[kind]:
                    node: Any = doc
                    for part in path.split("."):
                        node = node[part]
                    assert node, (kind, path)
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    expected = {"Deployment", "Service", "PersistentVolumeClaim", "HorizontalPodAutoscaler", "Ingress",
                "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "ScaledObject",
                "PrometheusRule", "InferencePool", "HTTPRoute", "Role", "RoleBinding"}  # fmt: skip
    assert expected <= seen


def test_pod_security_and_probes(rendered: Path) -> None:
    docs = kustomize(rendered / "k8s" / "overlays" / "production")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["containers"] + pod["initContainers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
    (server,) = pod["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert (
        server["livenessProbe"]["httpGet"]["path"] == server["startupProbe"]["httpGet"]["path"] == "/health"
    )
    assert pod["initContainers"][0]["args"] == ["pull", "--local", "qwen3-4b"]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "slmkit")["data"]
    shutdown = int(config["SLM_SHUTDOWN_TIMEOUT"].removesuffix("s"))
    assert pod["terminationGracePeriodSeconds"] > shutdown
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs}  # KEDA owns scaling here
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "slmkit")
    blocked = policy["spec"]["egress"][1]["to"][0]["ipBlock"]["except"]
    assert "169.254.0.0/16" in blocked


def test_policy_scanner_and_hadolint(rendered: Path, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for overlay in OVERLAYS:
        docs = kustomize(rendered / "k8s" / overlay)
        (manifests / f"{overlay.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(docs))
    for framework, folder in (("kubernetes", manifests), ("dockerfile", rendered / "docker")):
        done = subprocess.run(
            [
                tool("checkov"),
                "-d",
                str(folder),
                "--framework",
                framework,
                "--skip-download",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        report = json.loads(done.stdout)
        results = report["results"] if isinstance(report, dict) else report[0]["results"]
        assert results["failed_checks"] == [], [c["check_id"] for c in results["failed_checks"]]
        assert results["passed_checks"]
        for skipped in results.get("skipped_checks", []):
            reason = skipped["check_result"].get("suppress_comment", "")
            assert len(reason) > 20, skipped["check_id"]  # every waiver says why
    for dockerfile in ("Dockerfile", "Dockerfile.cuda", "Dockerfile.router"):
        lint = subprocess.run(
            [tool("hadolint"), str(rendered / "docker" / dockerfile)], capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout
    text = (rendered / "docker" / "Dockerfile").read_text()
    assert "USER 10001:10001" in text and "HEALTHCHECK" in text and "GGML_NATIVE=OFF" in text


def test_promtool_checks_config_and_rules(rendered: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package: prometheus)")
    compose = rendered / "compose" / "prometheus"
    rules = subprocess.run(
        [promtool, "check", "rules", str(compose / "alerts.yml")], capture_output=True, text=True
    )
    assert rules.returncode == 0 and "6 rules found" in rules.stdout, rules.stdout + rules.stderr
    # the Compose paths, moved under this test's folder
    (tmp_path / "metrics_key").write_text("slm-x")
    shutil.copy(compose / "alerts.yml", tmp_path / "alerts.yml")
    config = (compose / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    config = config.replace("/run/secrets/metrics_key", str(tmp_path / "metrics_key"))
    (tmp_path / "prometheus.yml").write_text(config)
    check = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_real_prometheus_evaluates_every_dashboard_and_alert_expression(
    server: Server, rendered: Path, tmp_path: Path
) -> None:
    binary = require_prometheus()
    for i in range(3):
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": f"Hi {i}"}], "max_tokens": 4},
            timeout=60,
        )
        assert r.status_code == 200
    shutil.copy(rendered / "compose" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    target = server.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{tmp_path / 'alerts.yml'}']\n"
        f"scrape_configs:\n  - job_name: slmkit\n    static_configs:\n      - targets: ['{target}']\n"
    )
    with third_party_server(
        lambda port: [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                      f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        "/-/ready",
        tmp_path / "prometheus.log",
    ) as prom:  # fmt: skip
        api = f"{prom}/api/v1"

        def query(expr: str) -> list[Any]:
            data = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
            assert data["status"] == "success", (expr, data)
            result: list[Any] = data["data"]["result"]
            return result

        def sampled() -> bool:  # rates need a few samples
            try:
                samples = query('count_over_time(up{job="slmkit"}[1m])')
            except (httpx.TransportError, ValueError):
                return False
            return bool(samples) and float(samples[0]["value"][1]) >= 4

        wait_until(sampled, 60, "Prometheus never scraped slmkit four times")
        httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Again"}], "max_tokens": 4},
            timeout=60,
        )
        dashboard = json.loads((rendered / "compose" / "grafana" / "dashboards" / "slmkit.json").read_text())
        panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
        rules = yaml.safe_load((tmp_path / "alerts.yml").read_text())["groups"][0]["rules"]
        core = ["Generated tokens/s", "Requests/s by status", "Time to first token", "Loaded models",
                "Targets up", "Model memory", "KV cache usage", "Queue: waiting and running"]  # fmt: skip

        def every_panel() -> dict[str, list[Any]] | None:
            found = {expr: query(expr) for exprs in panels.values() for expr in exprs}
            found |= {r["expr"]: query(str(r["expr"])) for r in rules}
            return found if all(any(found[e] for e in panels[t]) for t in core) else None

        try:  # the last request's samples arrive with the next scrapes
            results = wait_until(every_panel, 30, "the core panels never all had data")
        except AssertionError:
            results = {expr: query(expr) for exprs in panels.values() for expr in exprs}
        for title in core:
            assert any(results[e] for e in panels[title]), f"panel {title!r} returned no data"
        loaded = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"][0]["rules"]
        assert len(loaded) == len(rules) and all(r["health"] == "ok" for r in loaded), loaded
