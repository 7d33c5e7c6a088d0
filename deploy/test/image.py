"""Build slmkit's CPU image and check it end to end (deploy/test-image.sh runs this).

Checks, each printed PASS/FAIL with its time: the image's user and HEALTHCHECK; the container
runs as UID 10001 with a read-only root filesystem, no capabilities and no-new-privileges;
/ready with the embedded model; a chat through the openai client with a key from the mounted
keys file; /metrics with the metrics key (401 without); the HEALTHCHECK passes; the CPU
backend variant llama.cpp loaded is logged; every log line is one JSON object; a model
created in the store volume survives a restart; SIGTERM during a stream ends within the
grace period with the stream finished or cut by a terminal event. The CUDA Dockerfile's build
stage runs on the stand-in base up to llama.cpp's CUDA configure (NVIDIA's images cannot be had).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podman import (
    STANDIN_BASE,
    CheckFailed,
    Report,
    build_image,
    image_exists,
    image_size,
    podman,
    runtime_ready,
    say,
    standin_base,
    wait_for,
)

GRACE = 20  # seconds `podman stop` waits after SIGTERM (Compose: stop_grace_period)
DRAIN = 3  # SLM_SHUTDOWN_TIMEOUT in the container: streams are cut after it
MODEL = "smollm2:135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Container:
    """One slmkit container with its store volume, keys file and port."""

    def __init__(self, image: str, workdir: Path) -> None:
        from slmkit.security.keys import KeyStore

        self.image = image
        self.name = f"slmkit-test-{secrets.token_hex(4)}"
        self.volume = f"{self.name}-models"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keys = KeyStore(workdir / "keys.json")
        _, self.inference = keys.create("inference", name="test")
        _, self.admin = keys.create("admin", name="test-admin")
        _, self.metrics = keys.create("metrics", name="prometheus")
        (workdir / "keys.json").chmod(0o644)  # read by UID 10001 in the container
        self.keys_file = workdir / "keys.json"
        podman("volume", "create", self.volume)

    def run(self) -> None:
        podman(
            "run", "-d", "--name", self.name,
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-v", f"{self.volume}:/models", "-v", f"{self.keys_file}:/run/secrets/slm_keys:ro",
            "-e", "SLM_KEYS_FILE=/run/secrets/slm_keys", "-e", f"SLM_SHUTDOWN_TIMEOUT={DRAIN}s",
            "-e", "SLM_NUM_PARALLEL=2", "-e", "SLM_KEEP_ALIVE=-1",
            "-p", f"127.0.0.1:{self.port}:11435", self.image,
        )  # fmt: skip

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.inference}"}

    def ready(self, seconds: float = 300) -> str:
        wait_for("/ready 200", lambda: httpx.get(f"{self.url}/ready", timeout=5).status_code == 200, seconds)
        return "ready"

    def logs(self) -> list[str]:
        result = podman("logs", self.name)
        return (result.stdout + result.stderr).splitlines()

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)


def check_image(image: str) -> str:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config.get("User") == "10001:10001", f"image user {config.get('User')!r}"
    health = config.get("Healthcheck") or inspected.get("Healthcheck") or {}  # podman: beside Config
    assert health.get("Test"), "no HEALTHCHECK in the image (build with --format docker)"
    return f"user {config['User']}, healthcheck {' '.join(health['Test'])[:60]}..."


def check_hardening(c: Container) -> str:
    status = dict(line.split(":", 1) for line in c.exec("cat", "/proc/1/status").splitlines() if ":" in line)
    uids = status["Uid"].split()
    assert set(uids) == {"10001"}, f"Uid {uids}"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, f"{field} {status[field].strip()}"
    assert status["NoNewPrivs"].strip() == "1", "no-new-privileges is off"
    write = podman("exec", c.name, "sh", "-c", "echo x > /opt/slmkit/probe", check=False)
    assert write.returncode != 0 and "Read-only" in write.stderr, f"root filesystem writable: {write.stderr}"
    podman("exec", c.name, "sh", "-c", "echo x > /models/.probe && rm /models/.probe")
    return "UID 10001, all capability sets 0, NoNewPrivs 1, / read-only, /models writable"


def check_chat(c: Container) -> str:
    import openai

    client = openai.OpenAI(base_url=f"{c.url}/v1", api_key=c.inference, timeout=120)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0
    )
    client.close()
    text = reply.choices[0].message.content or ""
    assert text.strip() and reply.usage and reply.usage.completion_tokens > 0, reply
    anonymous = httpx.post(f"{c.url}/v1/chat/completions", json={"model": MODEL, "messages": []}, timeout=10)
    assert anonymous.status_code == 401, f"without a key: {anonymous.status_code}"
    return f"{reply.usage.completion_tokens} tokens: {text.strip()[:50]!r}; 401 without a key"


def check_metrics(c: Container) -> str:
    scraped = httpx.get(f"{c.url}/metrics", headers=c.headers(c.metrics), timeout=10)
    assert scraped.status_code == 200, scraped.status_code
    assert "slm_requests_total" in scraped.text and "slm_model_loaded" in scraped.text
    bare = httpx.get(f"{c.url}/metrics", timeout=10).status_code
    inference = httpx.get(f"{c.url}/metrics", headers=c.headers(), timeout=10).status_code
    assert bare == 401, f"without a key: {bare}"
    assert inference in (401, 403), f"with an inference key: {inference}"
    lines = len(scraped.text.splitlines())
    return f"200 with the metrics key ({lines} lines), {bare} without, {inference} with an inference key"


def check_healthcheck(c: Container) -> str:
    result = podman("healthcheck", "run", c.name, check=False)
    assert result.returncode == 0, f"unhealthy: {result.stdout} {result.stderr}"
    return "podman healthcheck run: healthy"


def check_cpu_backend(c: Container) -> str:
    for line in c.logs():
        if line.startswith("{") and json.loads(line).get("cpu_backend"):
            record = json.loads(line)
            return f"{record['cpu_backend']} ({record['message']})"
    raise CheckFailed("no log line names the CPU backend")


def check_json_logs(c: Container) -> str:
    lines = c.logs()
    bad = []
    loggers: dict[str, int] = {}
    for line in lines:
        try:
            record = json.loads(line)
            assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= record.keys()
            loggers[record["logger"]] = loggers.get(record["logger"], 0) + 1
        except (ValueError, AssertionError):
            bad.append(line)
    assert not bad, f"{len(bad)} of {len(lines)} lines are not JSON records, e.g. {bad[:3]}"
    access = [json.loads(x) for x in lines if json.loads(x)["logger"] == "slmkit.access"]
    needed = {"request_id", "route", "status", "prompt_tokens", "completion_tokens", "rejected"}
    assert access and all(needed <= a.keys() for a in access), "access records lack fields"
    assert any(a["rejected"] for a in access), "no refusal recorded with its reason"
    return f"{len(lines)} lines, all JSON; by logger {loggers}"


def check_restart_keeps_store(c: Container) -> str:
    made = httpx.post(
        f"{c.url}/api/create",
        headers=c.headers(c.admin),
        json={"model": "kept:1", "from": MODEL, "system": "You answer in French.", "stream": False},
        timeout=120,
    )
    assert made.status_code == 200, made.text
    podman("restart", "-t", str(GRACE), c.name, timeout=GRACE + 60)
    c.ready()
    tags = httpx.get(f"{c.url}/api/tags", headers=c.headers(), timeout=10).json()
    names = [m["name"] for m in tags["models"]]
    assert "kept:1" in names, names
    shown = httpx.post(f"{c.url}/api/show", headers=c.headers(), json={"model": "kept:1"}, timeout=10).json()
    assert "French" in shown.get("system", ""), shown.get("system")
    return f"kept:1 listed after a restart ({len(names)} models)"


def check_sigterm(c: Container) -> str:
    """A long stream is running; `podman stop` sends SIGTERM. The server drains for
    SLM_SHUTDOWN_TIMEOUT, then ends the stream with a terminal error event; the container
    must exit by itself (code 0) well within the grace period."""
    events: list[str] = []
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def stream() -> None:
        body = {
            "model": MODEL, "stream": True, "max_tokens": 4000, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me a very long story."}],
        }  # fmt: skip
        try:
            with httpx.stream(
                "POST", f"{c.url}/v1/chat/completions", json=body, headers=c.headers(), timeout=GRACE + 30
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        started.set()
            outcome["end"] = "closed"
        except httpx.HTTPError as exc:
            outcome["end"] = f"{type(exc).__name__}: {exc}"
        started.set()

    thread = threading.Thread(target=stream)
    thread.start()
    assert started.wait(120), "the stream never started"
    t0 = time.monotonic()
    podman("stop", "-t", str(GRACE), c.name, timeout=GRACE + 60)
    stopped = time.monotonic() - t0
    thread.join(GRACE + 30)
    state = json.loads(podman("inspect", c.name).stdout)[0]["State"]
    chunks = [json.loads(e) for e in events if e.startswith("{")]
    reasons = {ch.get("finish_reason") for f in chunks for ch in f.get("choices", [])} - {None}
    if any("error" in f for f in chunks):
        how = f"cut by a terminal error event ({next(f for f in chunks if 'error' in f)['error']})"
    elif reasons and events[-1] == "[DONE]":
        how = f"finished ({', '.join(sorted(reasons))})"
    else:
        raise CheckFailed(f"the stream broke: {outcome.get('end')}, last event {events[-1:]}")
    assert stopped < GRACE, f"took {stopped:.1f}s, the grace period is {GRACE}s (killed)"
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']}"
    timing = f"stopped in {stopped:.1f}s (grace {GRACE}s, drain {DRAIN}s), exit 0"
    return f"{timing}; stream {how}, {len(events)} events"


def check_router_image(base: str, c: Container) -> str:
    """deploy/docker/Dockerfile.router builds on the base; the router runs read-only as UID
    65532 without capabilities, polls the slmkit container's /ready and routes a chat to it,
    the client's key passed through."""
    tag = "localhost/slmkit-router:check"
    build_image(tag, base, "deploy/docker/Dockerfile.router")
    port, metrics = free_port(), free_port()
    name = f"slmkit-router-{secrets.token_hex(4)}"
    podman(
        "run", "-d", "--name", name, "--network", "host", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", tag, "--host=127.0.0.1", f"--port={port}",
        f"--prometheus-port={metrics}", "--policy=cache_aware", "--health-check-endpoint=/ready",
        "--worker-urls", c.url,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(
            "the router's /readiness",
            lambda: httpx.get(f"{url}/readiness", timeout=5).status_code == 200,
            120,
        )
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=c.headers(), timeout=120)
        assert reply.status_code == 200, reply.text[:200]
        uid = podman("exec", name, "id", "-u").stdout.strip()
        assert uid == "65532", uid
        return f"{image_size(tag) / 2**20:.0f} MiB, UID {uid}, a chat routed with the client's key"
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def check_cuda_build_stage(base: str) -> str:
    """NVIDIA's CUDA images cannot be had here: the CUDA Dockerfile's build stage runs on the
    stand-in base instead, and must get as far as llama.cpp's CUDA configure (apt, the venv,
    the requirements from pyproject.toml, every other wheel), failing only for the toolkit."""
    try:
        build_image(
            "localhost/slmkit-cuda-build-check", base, "deploy/docker/Dockerfile.cuda",
            "--target", "build", "--build-arg", f"BUILD_IMAGE={base}",
        )  # fmt: skip
    except CheckFailed as exc:
        text = str(exc)
        assert "CUDA Toolkit not found" in text, f"failed before llama.cpp's CUDA configure: {text[-600:]}"
        return (
            "stage 1 on the stand-in ran up to llama.cpp's CMake, which stopped at 'CUDA Toolkit not found'"
        )
    raise CheckFailed("the CUDA build stage built without a CUDA toolkit: a cached CPU wheel was reused")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", default="localhost/slmkit:0.1.0", help="the tag to build and check")
    parser.add_argument("--base", help=f"base image (default: the stand-in {STANDIN_BASE}, built if missing)")
    parser.add_argument("--no-build", action="store_true", help="check the image as it is")
    parser.add_argument("--keep", action="store_true", help="leave the container and volume for inspection")
    args = parser.parse_args()

    report = Report()
    base = args.base or standin_base()
    runtime_ready(base)
    if not args.no_build or not image_exists(args.image):
        say(f"building {args.image} on {base} ...")
        seconds = build_image(args.image, base)
        say(f"build: {seconds:.0f}s")
    say(f"image: {args.image}, {image_size(args.image) / 2**20:.0f} MiB\n")
    report.check("image: user 10001, HEALTHCHECK", lambda: check_image(args.image))
    report.check(
        "CUDA Dockerfile: the build stage up to the CUDA toolkit", lambda: check_cuda_build_stage(base)
    )
    with tempfile.TemporaryDirectory() as tmp:
        c = Container(args.image, Path(tmp))
        try:
            started = time.monotonic()
            c.run()
            report.check("starts read-only, /ready 200 with the embedded model", c.ready)
            say(f"      ready {time.monotonic() - started:.1f}s after `podman run`")
            report.check("UID 10001, no capabilities, read-only root", lambda: check_hardening(c))
            report.check(
                "chat through the openai client (key from the mounted keys file)", lambda: check_chat(c)
            )
            report.check("/metrics: 200 with the metrics key, 401 without", lambda: check_metrics(c))
            report.check("HEALTHCHECK passes", lambda: check_healthcheck(c))
            report.check("the CPU backend variant loaded is logged", lambda: check_cpu_backend(c))
            report.check("the model store volume survives a restart", lambda: check_restart_keeps_store(c))
            report.check("the router image routes to this container", lambda: check_router_image(base, c))
            report.check("SIGTERM during a stream: ends within the grace period", lambda: check_sigterm(c))
            report.check("every log line is one JSON object (a whole life)", lambda: check_json_logs(c))
        finally:
            if not args.keep:
                c.remove()
            else:
                say(f"kept: container {c.name}, volume {c.volume}")
    report.exit()


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[2])
    main()
