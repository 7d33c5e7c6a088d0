"""Bring the Compose stack up with podman-compose and watch it (deploy/test-compose.sh).

The files are rendered afresh by `slm deploy compose --init-secrets` into a temporary folder
(the same files as deploy/compose/, which tests/integration/test_deploy.py holds to the
templates), then: slmkit and Prometheus start (a stand-in Prometheus built from Debian's
package where the registry is unreachable); `promtool check config` and `check rules` pass;
Prometheus scrapes slmkit with the metrics key from its secret; after some traffic (chats, a
refused key, a worker killed mid-request) every Grafana dashboard panel's query evaluates
without error against the live Prometheus and returns series for the metrics it names;
stopping slmkit fires SlmTargetDown within its ``for:`` window (read from the alerts API).
Services whose images are not available here (Grafana, Open WebUI) are skipped, saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podman import (
    ROOT,
    CheckFailed,
    Report,
    build_image,
    image_exists,
    podman,
    runtime_ready,
    say,
    standin_base,
    standin_prometheus,
    wait_for,
)

PROJECT = "slmkit-check"
SLMKIT = "http://127.0.0.1:11435"
PROMETHEUS = "http://127.0.0.1:9090"
MODEL = "smollm2:135m"
COMPOSE = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")  # the venv's
METRIC = re.compile(r"\b(slm_[a-z0-9_]+|up)\b(?=\s*[{\[)])")


class Stack:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.compose = yaml.safe_load((folder / "compose.yaml").read_text())
        webui = (folder / "secrets" / "webui.env").read_text().strip()
        self.key = webui.split("=", 1)[1]

    def run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        command = [
            COMPOSE,
            "-p",
            PROJECT,
            "-f",
            "compose.yaml",
            *args,
        ]
        result = subprocess.run(
            command, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise CheckFailed(
                f"podman-compose {' '.join(args)}: {(result.stdout + result.stderr).strip()[-3000:]}"
            )
        return result

    def container(self, service: str) -> str:
        labels = [
            f"label=com.docker.compose.service={service}",
            f"label=com.docker.compose.project={PROJECT}",
        ]
        names = podman(
            "ps", "-a", "--format", "{{.Names}}", "--filter", labels[0], "--filter", labels[1]
        ).stdout.split()
        if not names:
            raise CheckFailed(f"no container for {service}")
        return names[0]

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=10).json()
        if body["status"] != "success":
            raise CheckFailed(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def series(self, metric: str) -> int:
        body = httpx.get(f"{PROMETHEUS}/api/v1/series", params={"match[]": metric}, timeout=10).json()
        return len(body["data"])


def check_promtool(stack: Stack) -> str:
    prom = stack.container("prometheus")
    config = podman(
        "exec", prom, "promtool", "check", "config", "/etc/prometheus/prometheus.yml", check=False
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = podman("exec", prom, "promtool", "check", "rules", "/etc/prometheus/alerts.yml", check=False)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", rules.stdout + rules.stderr)
    return f"config SUCCESS; rules SUCCESS ({found.group(1) if found else '?'} rules)"


def check_scrape(stack: Stack) -> str:
    def up() -> dict[str, Any] | None:
        targets = httpx.get(f"{PROMETHEUS}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        mine = [t for t in targets if t["labels"].get("job") == "slmkit"]
        return mine[0] if mine and mine[0]["health"] == "up" else None

    target = wait_for("Prometheus scrapes slmkit", up, 120, every=1)
    auth = stack.compose["services"]["prometheus"]["secrets"]
    return f"target {target['scrapeUrl']} up (bearer key from secret {auth})"


def traffic(stack: Stack) -> str:
    """Chats (streamed and not), a refused key, and a worker killed under a request: the
    events the dashboard's panels count."""
    import openai

    client = openai.OpenAI(base_url=f"{SLMKIT}/v1", api_key=stack.key, timeout=120)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    # counters are born at their first event: once scraped, the rest of the traffic makes rates
    wait_for(
        "a scrape that has seen a chat",
        lambda: stack.query('slm_requests_total{route="/v1/chat/completions"}'),
        60,
        every=1,
    )
    for i in range(6):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=24
        )
    for _ in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=24, stream=True
    ):
        pass
    client.close()
    refused = httpx.get(f"{SLMKIT}/v1/models", headers={"Authorization": "Bearer slm-wrong"}, timeout=10)
    assert refused.status_code == 401, refused.status_code
    # a worker killed in the middle of an answer: a 5xx and a worker restart
    status: dict[str, int] = {}

    def long_answer() -> None:
        body = {"model": MODEL, "max_tokens": 4000, "ignore_eos": True,
                "messages": [{"role": "user", "content": "Write a long story."}]}  # fmt: skip
        answer = httpx.post(f"{SLMKIT}/v1/chat/completions", json=body, timeout=300,
                            headers={"Authorization": f"Bearer {stack.key}"})  # fmt: skip
        status["code"] = answer.status_code

    thread = threading.Thread(target=long_answer)
    thread.start()
    slmkit = stack.container("slmkit")
    wait_for("the long answer is running", lambda: running(stack) > 0, 60)
    kill = "import psutil; [p.kill() for p in psutil.Process(1).children() if p.name().startswith('python')]"
    podman("exec", slmkit, "python", "-c", kill)
    thread.join(300)
    assert status.get("code", 0) >= 500, f"the request under a killed worker answered {status}"
    wait_for("slmkit ready again", lambda: httpx.get(f"{SLMKIT}/ready", timeout=5).status_code == 200, 120)
    return f"8 chats, one 401, one worker killed mid-answer ({status['code']})"


def running(stack: Stack) -> float:
    text = httpx.get(
        f"{SLMKIT}/metrics", headers={"Authorization": f"Bearer {metrics_key(stack)}"}, timeout=5
    ).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("slm_requests_running")
    )


def metrics_key(stack: Stack) -> str:
    return (stack.folder / "secrets" / "metrics_key").read_text().strip()


def panels(stack: Stack) -> list[tuple[str, str]]:
    dashboard = json.loads((stack.folder / "grafana" / "dashboards" / "slmkit.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def check_panels(stack: Stack) -> str:
    """Every panel query succeeds; each returns series once its metrics have two scrapes."""
    wait_for(
        "two scrapes after the traffic",
        lambda: (
            stack.query('increase(slm_requests_total{route="/v1/chat/completions"}[1m]) > 0')
            and stack.query("increase(slm_worker_restarts_total[2m]) > 0")
        ),
        120,
        every=2,
    )
    rows, empty, failed = [], [], []
    for title, expr in panels(stack):
        try:
            result = stack.query(expr)
        except CheckFailed as exc:
            failed.append(f"{title}: {exc}")
            rows.append((title, expr, "error", 0, ""))
            continue
        names = sorted(set(METRIC.findall(expr)))
        present = ", ".join(f"{n}:{stack.series(n)}" for n in names)
        top = sorted((float(r["value"][1]) for r in result), reverse=True)[:3]
        values = ", ".join(f"{v:.4g}" for v in top)
        rows.append((title, expr, "ok", len(result), f"{values} | {present}"))
        if not result:
            empty.append(title)
    say("\n| panel | query | status | series | values | series per metric named |\n|---|---|---|---|---|---|")
    for title, expr, state, count, present in rows:
        say(f"| {title} | `{expr}` | {state} | {count} | {present} |")
    say("")
    assert not failed, "; ".join(failed)
    assert not empty, f"no series for: {', '.join(empty)}"
    return f"{len(rows)} queries of {len({r[0] for r in rows})} panels: all evaluate and return series"


def check_alert(stack: Stack) -> str:
    rules = yaml.safe_load((stack.folder / "prometheus" / "alerts.yml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "SlmTargetDown")
    window = parse_duration(rule["for"])
    config = yaml.safe_load((stack.folder / "prometheus" / "prometheus.yml").read_text())["global"]
    slack = parse_duration(config["scrape_interval"]) + 2 * parse_duration(config["evaluation_interval"])
    stopped = time.monotonic()
    stack.run("stop", "slmkit", timeout=120)

    def firing() -> dict[str, Any] | None:
        alerts = httpx.get(f"{PROMETHEUS}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        hits = [a for a in alerts if a["labels"]["alertname"] == "SlmTargetDown" and a["state"] == "firing"]
        return hits[0] if hits else None

    alert = wait_for("SlmTargetDown firing", firing, window + slack + 30, every=1)
    took = time.monotonic() - stopped
    assert took <= window + slack + 5, (
        f"fired after {took:.0f}s, for: {rule['for']} + {slack:.0f}s of intervals"
    )
    return (
        f"SlmTargetDown firing {took:.0f}s after slmkit stopped (for: {rule['for']}, scrape and evaluation "
        f"intervals add up to {slack:.0f}s): {alert['annotations']['summary']}"
    )


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", text))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--no-build", action="store_true", help="use localhost/slmkit:0.1.0 as it is")
    args = parser.parse_args()
    report = Report()
    base = standin_base()
    runtime_ready(base)
    prometheus = standin_prometheus(base)
    if not args.no_build or not image_exists("localhost/slmkit:0.1.0"):
        say(f"build: {build_image('localhost/slmkit:0.1.0', base):.0f}s (layers cached by earlier builds)")
    folder = Path(tempfile.mkdtemp(prefix="slmkit-compose-"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "slmkit",
            "deploy",
            "compose",
            f"--model={MODEL}",
            f"--out={folder}",
            "--init-secrets",
        ],
        check=True,
        capture_output=True,
    )
    env = {
        **os.environ,
        "SLMKIT_SOURCE": str(ROOT),
        "SLMKIT_BASE_IMAGE": base,
        "PROMETHEUS_IMAGE": prometheus,
    }
    stack = Stack(folder, env)
    services = ["slmkit", "prometheus"]
    for name in ("grafana", "open-webui"):
        image = stack.compose["services"][name]["image"]
        if image_exists(image):
            services.append(name)
        else:
            say(f"SKIP  {name}: image {image} is not available here (image registries unreachable)")
    try:
        checks(stack, services, report)
    finally:
        if args.keep:
            say(f"kept: project {PROJECT} in {folder} (podman-compose -p {PROJECT} down -v)")
        else:
            subprocess.run([COMPOSE, "-p", PROJECT, "-f", "compose.yaml", "down", "-v"],
                           cwd=folder, env=env, capture_output=True, timeout=300)  # fmt: skip
            shutil.rmtree(folder, ignore_errors=True)
    report.exit()


def checks(stack: Stack, services: list[str], report: Report) -> None:
    def ready() -> str:
        wait_for("/ready", lambda: httpx.get(f"{SLMKIT}/ready", timeout=5).status_code == 200, 300)
        return "200"

    report.check(f"podman-compose up {' '.join(services)}", lambda: stack.run("up", "-d", *services) and "up")
    report.check("slmkit /ready", ready)
    report.check("promtool check config and rules", lambda: check_promtool(stack))
    report.check("Prometheus scrapes slmkit with the metrics key", lambda: check_scrape(stack))
    report.check("traffic for the dashboard", lambda: traffic(stack))
    report.check("every Grafana panel query evaluates and returns series", lambda: check_panels(stack))
    report.check("stopping slmkit fires SlmTargetDown", lambda: check_alert(stack))


if __name__ == "__main__":
    main()
