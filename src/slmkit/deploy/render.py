"""Render the deployment files of one target for one model, deterministically.

Templates live in ``templates/<target>/``: files ending ``.j2`` are rendered with Jinja2
(our own files, so no sandbox), the rest are copied; the monitoring files (alert rules and
the Grafana dashboard) are shared by the Compose and Kubernetes targets. Resources come from
the same estimator as `slm fit`, computed for a conservative x86 node (repacking on) so that
the output does not depend on the machine running `slm deploy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from slmkit import __version__
from slmkit.errors import InvalidRequest, NotFound
from slmkit.models.memory import API_PROCESS, Estimate, MiB, estimate, estimate_shape

TARGETS = ("docker", "compose", "k8s")
K8S_VERSION = "1.31.0"  # the schemas tests/integration/test_deploy.py validates against
DEFAULT_PARALLEL = 4  # slots per replica, as `slm serve` picks when memory allows
ROUTER_VERSION = "0.1.17"  # vllm-router, as tested by tests/integration/test_router.py
EPP_IMAGE = "registry.k8s.io/gateway-api-inference-extension/epp:v1.0.1"
REDIS_IMAGE = "redis:7.4-bookworm"
DRAIN_DELAY = 5  # seconds a pod keeps serving after SIGTERM while the endpoints update
MONITORING = {  # shared file -> where each target wants it
    "compose": {"alerts.yml": "prometheus/alerts.yml", "dashboard.json": "grafana/dashboards/slmkit.json"},
    "k8s": {"dashboard.json": "components/monitoring/dashboard.json"},
}


@dataclass(frozen=True)
class Plan:
    target: str
    model: str
    replicas: int = 1
    context: int = 4096
    parallel: int = DEFAULT_PARALLEL
    threads: int = 2
    image: str = f"slmkit:{__version__}"
    host: str = "slmkit.example.com"
    shutdown_timeout: int = 30
    max_replicas: int | None = None  # default: 4 x replicas (capacity.py sets it from a bench)
    queue_threshold: int = 4  # KEDA: requests waiting per replica before it adds one


def _mib(n: float) -> int:
    return math.ceil(n / MiB)


def size_for(model: str, context: int, parallel: int) -> tuple[Estimate, str]:
    """The memory estimate for ``model`` (a catalog entry, or a model in the local store)."""
    from slmkit.optimize.catalog import load_catalog
    from slmkit.store.default import DEFAULT_NAME

    try:
        entry = load_catalog().get(model)
    except NotFound:
        entry = None
    if entry is not None:
        quant = "Q4_1" if model == DEFAULT_NAME and "Q4_1" in entry.quants else entry.default_quant()
        weights, repacked = entry.weight_bytes(quant)
        est = estimate_shape(entry.shape, weights, repacked, context, parallel)
        return est, f"catalog {entry.id} {quant}"
    from slmkit.config import Config
    from slmkit.store import ModelStore
    from slmkit.store.gguf_info import read_info

    try:
        record = ModelStore(Config.from_env().models).get(model)
    except NotFound:
        raise NotFound(f"model {model!r} is neither in the catalog nor in the local store") from None
    if record.upstream is not None:
        raise InvalidRequest(f"{model} is served by an upstream server: deploy that server instead")
    return estimate(
        read_info(record.model_path), context, parallel, repack=True
    ), f"GGUF {record.name.display}"


def variables(plan: Plan) -> dict[str, Any]:
    if plan.replicas < 1 or plan.parallel < 1 or plan.context < 256 or plan.threads < 1:
        raise InvalidRequest("--replicas, --parallel and --threads must be >= 1, --ctx >= 256")
    if plan.max_replicas is not None and plan.max_replicas < plan.replicas:
        raise InvalidRequest("max replicas must be >= --replicas")
    est, source = size_for(plan.model, plan.context, plan.parallel)
    request = _mib(est.required + API_PROCESS)
    limit = _mib(est.total * 1.25 + API_PROCESS)
    alerts = resources.files("slmkit.deploy").joinpath("templates/monitoring/alerts.yml").read_text()
    alerts = "\n".join(line for line in alerts.splitlines() if not line.startswith("#"))
    return {
        "model": plan.model,
        "version": __version__,
        "image": plan.image,
        "replicas": plan.replicas,
        "max_replicas": plan.max_replicas or max(plan.replicas * 4, plan.replicas + 1),
        "queue_threshold": plan.queue_threshold,
        "context": plan.context,
        "parallel": plan.parallel,
        "threads": plan.threads,
        "cpu_request": str(plan.threads),
        "cpu_limit": str(plan.threads * 2),
        "memory_request": f"{request}Mi",
        "memory_limit": f"{limit}Mi",
        "memory_limit_bytes": limit * MiB,
        "memory_limit_human": f"{limit} MiB",
        "memory_budget": f"{limit - _mib(API_PROCESS)}MiB",
        "fit_note": f"{source}, needs {_mib(est.required)} MiB, expected RSS {_mib(est.total)} MiB",
        "pvc_size": f"{max(5, math.ceil(3 * est.weights / 2**30))}Gi",
        "shutdown_timeout": plan.shutdown_timeout,
        "drain_delay": DRAIN_DELAY,
        "grace": plan.shutdown_timeout + DRAIN_DELAY + 15,
        "router_version": ROUTER_VERSION,
        "router_image": f"slmkit-router:{ROUTER_VERSION}",
        "epp_image": EPP_IMAGE,
        "redis_image": REDIS_IMAGE,
        "redis_memory": "256mb",
        "redis_memory_request": "64Mi",
        "redis_memory_limit": "320Mi",
        "host": plan.host,
        "pull": not _embedded(plan.model),
        "dockerfile_path": "deploy/docker/Dockerfile",
        "alerts": alerts,
        "k8s_version": K8S_VERSION,
    }


def _embedded(model: str) -> bool:
    from slmkit.names import ModelName
    from slmkit.store.default import DEFAULT_NAME

    return not model.startswith("hf.co/") and ModelName.parse(model) == ModelName.parse(DEFAULT_NAME)


def render(plan: Plan) -> dict[str, str]:
    """Relative path -> file contents for ``plan.target``."""
    import jinja2

    if plan.target not in TARGETS:
        raise InvalidRequest(f"target: {plan.target!r} is not one of {', '.join(TARGETS)}")
    values = variables(plan)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    root = resources.files("slmkit.deploy").joinpath("templates")
    files: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            elif rel.endswith(".j2"):
                files[rel.removesuffix(".j2")] = env.from_string(child.read_text()).render(values)
            else:
                files[rel] = child.read_text()

    walk(root.joinpath(plan.target), "")
    for name, where in MONITORING.get(plan.target, {}).items():
        files[where] = root.joinpath("monitoring", name).read_text()
    if plan.target == "compose":
        files[".gitignore"] = "secrets/\n"
    return dict(sorted(files.items()))


def write(files: dict[str, str], out: Path) -> list[Path]:
    """Write (atomically, file by file) and return the paths."""
    import os
    import tempfile

    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".deploy-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
    return written


def init_secrets(out: Path) -> list[Path]:
    """Compose secrets under ``out/secrets`` (kept when present): an inference key for Open
    WebUI, a metrics key for Prometheus, a Grafana admin password, an empty HF token.

    Compose bind-mounts secret files with their host permissions and the containers run as
    other users (slmkit 10001, Prometheus 65534, Grafana 472): the files are readable (0644)
    inside a folder only the owner may enter (0700)."""
    import secrets as token

    from slmkit.security.keys import KeyStore

    folder = out / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    made = []
    keys = KeyStore(folder / "keys.json")
    plain: dict[str, str] = {}
    if not (folder / "keys.json").exists():
        _, plain["webui.env"] = keys.create("inference", name="open-webui")
        _, plain["metrics_key"] = keys.create("metrics", name="prometheus")
        plain["webui.env"] = f"OPENAI_API_KEY={plain['webui.env']}\n"
        made.append(folder / "keys.json")
    plain.setdefault("grafana_admin_password", token.token_urlsafe(24))
    plain.setdefault("hf_token", "")
    for name, value in plain.items():
        path = folder / name
        if path.exists():
            continue
        path.write_text(value)
        path.chmod(0o644)
        made.append(path)
    (folder / "keys.json").chmod(0o644)
    return made
