"""`slm deploy`: deterministic output equal to the checked-in files, and its invariants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slmkit.deploy.render import TARGETS, Plan, init_secrets, render, variables
from slmkit.errors import InvalidRequest, NotFound
from slmkit.security.keys import KeyStore

DEPLOY = Path(__file__).parents[2] / "deploy"


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_default_matches_the_checked_in_files(target: str) -> None:
    files = render(Plan(target, "smollm2:135m"))
    assert files == render(Plan(target, "smollm2:135m"))  # deterministic
    checked = {
        str(p.relative_to(DEPLOY / target)): p.read_text()
        for p in (DEPLOY / target).rglob("*")
        if p.is_file() and "secrets" not in p.parts
    }
    assert checked == files, "deploy/ is stale: run `slm deploy TARGET --out deploy/TARGET`"


def test_resources_follow_the_model_and_settings() -> None:
    small = variables(Plan("k8s", "smollm2:135m"))
    big = variables(Plan("k8s", "qwen3-8b", replicas=3, context=8192))
    mib = lambda text: int(text.removesuffix("Mi"))  # noqa: E731
    assert mib(big["memory_request"]) > 10 * mib(small["memory_request"])
    assert mib(small["memory_limit"]) > mib(small["memory_request"])
    assert big["max_replicas"] == 12 and big["replicas"] == 3
    assert small["pull"] is False and big["pull"] is True  # the default model is baked in
    assert small["grace"] > small["shutdown_timeout"]
    with pytest.raises(NotFound, match="neither in the catalog"):
        variables(Plan("k8s", "nothing-like-this:1b"))
    with pytest.raises(InvalidRequest, match="replicas"):
        variables(Plan("k8s", "smollm2:135m", replicas=0))
    with pytest.raises(InvalidRequest, match="target"):
        render(Plan("helm", "smollm2:135m"))


def test_compose_stack_is_hardened_and_consistent() -> None:
    compose = yaml.safe_load(render(Plan("compose", "qwen3-4b"))["compose.yaml"])
    services = compose["services"]
    assert set(services) == {"pull", "slmkit", "prometheus", "grafana", "open-webui"}
    for name, svc in services.items():
        assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", [])), name
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"]
        if name != "open-webui":
            assert svc["read_only"] is True
        for secret in svc.get("secrets", []):
            assert secret in compose["secrets"]
    assert services["pull"]["command"] == ["pull", "qwen3-4b"]
    assert services["slmkit"]["depends_on"]["pull"]["condition"] == "service_completed_successfully"
    assert services["open-webui"]["environment"]["OPENAI_API_BASE_URL"] == "http://slmkit:11435/v1"
    # the model loads under the container's limit: the budget is the limit less the API process
    limit = services["slmkit"]["mem_limit"] / 2**20
    assert services["slmkit"]["environment"]["SLM_MAX_MEMORY"] == f"{round(limit) - 256}MiB"
    assert services["slmkit"]["build"]["args"]["BASE_IMAGE"].endswith(":-python:3.11-slim-bookworm}")


def test_dockerfiles_take_a_base_image_and_an_optional_ca_bundle() -> None:
    files = render(Plan("docker", "smollm2:135m"))
    for name, arg in (("Dockerfile", "BASE_IMAGE"), ("Dockerfile.cuda", "BUILD_IMAGE")):
        text = files[name]
        assert f"ARG {arg}=" in text and f"FROM ${{{arg}}} AS build" in text, name
        assert "--mount=type=secret,id=ca_bundle" in text and "PIP_CERT" in text, name
        # the bundle is used in the build stage only, never copied into the image
        runtime = text.rsplit("\nFROM ", 1)[1]
        assert "ca_bundle" not in runtime and "libgomp1" in runtime, name


def test_init_secrets_creates_usable_keys_once(tmp_path: Path) -> None:
    made = init_secrets(tmp_path)
    folder = tmp_path / "secrets"
    assert {p.name for p in made} == {
        "keys.json",
        "webui.env",
        "metrics_key",
        "grafana_admin_password",
        "hf_token",
    }
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    keys = KeyStore(folder / "keys.json")
    assert keys.verify((folder / "metrics_key").read_text()).scope == "metrics"  # type: ignore[union-attr]
    webui = (folder / "webui.env").read_text().strip().removeprefix("OPENAI_API_KEY=")
    assert keys.verify(webui).scope == "inference"  # type: ignore[union-attr]
    assert init_secrets(tmp_path) == []  # kept, never overwritten


def test_dashboard_and_alerts_use_only_slmkit_metrics() -> None:
    files = render(Plan("compose", "smollm2:135m"))
    dashboard = json.loads(files["grafana/dashboards/slmkit.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load(files["prometheus/alerts.yml"])["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "SlmTimeToFirstTokenHigh",
        "SlmQueueNearFull",
        "SlmHighErrorRate",
        "SlmWorkerRestarts",
        "SlmTargetDown",
    } <= names
    for expr in exprs + [r["expr"] for r in rules]:
        assert "slm_" in expr or "up{" in expr, expr


CRDS = Path(__file__).parents[1] / "data" / "crds"
CRD_FILES = {"InferencePool": "inferencepool-v1.json", "HTTPRoute": "httproute-v1.json",
             "ScaledObject": "scaledobject-v1alpha1.json"}  # fmt: skip


def crd_errors(doc: dict[str, object]) -> list[str]:
    import jsonschema

    schema = json.loads((CRDS / CRD_FILES[str(doc["kind"])]).read_text())
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]


def test_gateway_router_and_keda_objects_match_the_published_crd_schemas() -> None:
    files = render(Plan("k8s", "smollm2:135m"))
    docs = [
        d for name, text in files.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d
    ]
    custom = [d for d in docs if d.get("kind") in CRD_FILES]
    assert {d["kind"] for d in custom} == set(CRD_FILES)
    for doc in custom:
        assert crd_errors(doc) == [], doc["kind"]
    pool = next(d for d in custom if d["kind"] == "InferencePool")
    assert pool["spec"]["targetPorts"] == [{"number": 11435}]
    bad = {**pool, "spec": {**pool["spec"], "extensionRef": {"name": "old-field"}}}  # pre-v1 name
    assert any("extensionRef" in e for e in crd_errors(bad))  # the schemas are not vacuous
    route = next(d for d in custom if d["kind"] == "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                    "name": "slmkit"}]  # fmt: skip
    slow = {**route, "spec": {**route["spec"], "rules": [{**rule, "timeouts": {"request": "ten minutes"}}]}}
    assert crd_errors(slow)


def test_the_picker_and_the_router_read_what_slmkit_serves() -> None:
    files = render(Plan("k8s", "smollm2:135m"))
    epp = [d for d in yaml.safe_load_all(files["components/inference-gateway/epp.yaml"]) if d]
    picker = next(d for d in epp if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--model-server-metrics-path=/metrics/load" in picker["args"]  # public: no key needed
    router = [d for d in yaml.safe_load_all(files["components/router/router.yaml"]) if d]
    args = next(d for d in router if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--health-check-endpoint=/ready" in args and "--service-discovery-port=11435" in args
    config = yaml.safe_load(files["base/configmap.yaml"])["data"]
    assert config["SLM_DRAIN_DELAY"] == "5s"  # serving while the endpoints and the router catch up
