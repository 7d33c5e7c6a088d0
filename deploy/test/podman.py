"""podman for the image and Compose checks: the runtime settings a sandbox needs, the
stand-in base images built from Debian's packages, and small helpers.

Image registries may be unreachable (they are on slmkit's build machines) while Debian's
package mirror is not: the stand-in for ``python:3.11-slim-bookworm`` is a debootstrap of
bookworm (whose python3 is 3.11) with venv and pip, imported with ``podman import``; the
stand-in Prometheus is Debian's ``prometheus`` package on that base. Each is built once and
kept (``podman rmi`` it to rebuild). Where the registries are reachable, pass the real images
instead (``--base python:3.11-slim-bookworm``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONF = HERE / "containers.conf"
STANDIN_BASE = "localhost/slmkit-standin/python:3.11-slim-bookworm"
STANDIN_PROMETHEUS = "localhost/slmkit-standin/prometheus:bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # the machine's trust store, for builds


class CheckFailed(Exception):
    pass


def say(text: str) -> None:
    print(text, flush=True)


def podman(
    *args: str, check: bool = True, timeout: float | None = 600, **kw: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args[:3])} ... failed: {result.stderr.strip()[-2000:]}")
    return result


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def image_size(name: str) -> int:
    return int(json.loads(podman("image", "inspect", name).stdout)[0]["Size"])


def runtime_ready(image: str) -> None:
    """podman runs containers here, with containers.conf next to this file where the defaults
    fail (sandboxes that cannot raise resource limits: crun and the default ulimits)."""
    if shutil.which("podman") is None:
        raise CheckFailed("podman is not installed (Debian: apt-get install podman)")
    if podman("run", "--rm", image, "true", check=False).returncode == 0:
        return
    os.environ["CONTAINERS_CONF"] = str(CONF)
    result = podman("run", "--rm", image, "true", check=False)
    if result.returncode != 0:
        raise CheckFailed(f"podman cannot run a container here: {result.stderr.strip()}")
    say(f"  (podman needs {CONF.relative_to(ROOT)} here: runtime runc, no default ulimits)")


def standin_base() -> str:
    """The stand-in for python:3.11-slim-bookworm (built once, needs root and debootstrap)."""
    if image_exists(STANDIN_BASE):
        return STANDIN_BASE
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise CheckFailed(
            "building the stand-in base needs root and debootstrap (apt-get install debootstrap)"
        )
    say(f"building {STANDIN_BASE} with debootstrap from {MIRROR} ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        packages = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(root), MIRROR],
            check=True, capture_output=True,
        )  # fmt: skip
        # as the official image: pip may install into the system Python, apt sources as Debian's
        (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        (root / "etc/apt/sources.list").write_text(
            f"deb {MIRROR} bookworm main\ndeb {MIRROR} bookworm-updates main\n"
            f"deb {MIRROR}-security bookworm-security main\n"
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["podman", "import", "--change=ENV LANG=C.UTF-8", '--change=CMD ["python3"]', "-", STANDIN_BASE],
            stdin=tar.stdout, check=True, capture_output=True,
        )  # fmt: skip
        tar.wait()
    say(f"  built in {time.monotonic() - started:.0f}s")
    return STANDIN_BASE


def standin_prometheus(base: str) -> str:
    """Debian's Prometheus on the stand-in base, laid out like prom/prometheus (user nobody,
    config in /etc/prometheus, data in /prometheus)."""
    if image_exists(STANDIN_PROMETHEUS):
        return STANDIN_PROMETHEUS
    say(f"building {STANDIN_PROMETHEUS} ...")
    podman(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "-f", str(HERE / "prometheus.Containerfile"), "-t", STANDIN_PROMETHEUS, str(HERE),
        timeout=1200,
    )  # fmt: skip
    return STANDIN_PROMETHEUS


def build_image(tag: str, base: str, dockerfile: str = "deploy/docker/Dockerfile", *extra: str) -> float:
    """Build slmkit's image from the source tree; returns the seconds it took. The machine's CA
    bundle goes in as the ``ca_bundle`` build secret (proxies that inspect TLS)."""
    args = ["build", "--format", "docker", "--network", "host", "-f", dockerfile, "-t", tag, *extra]
    args += ["--build-arg", f"BASE_IMAGE={base}"]
    if Path(CA_BUNDLE).is_file():
        args += ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"]
    started = time.monotonic()
    process = subprocess.Popen(
        ["podman", *args, str(ROOT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-40:], line.rstrip()]
        if "STEP " in line or "Building wheel for" in line:
            say(f"  {line.rstrip()[:150]}")
    if process.wait() != 0:
        raise CheckFailed("the image build failed:\n" + "\n".join(tail))
    return time.monotonic() - started


def wait_for(what: str, probe: Callable[[], Any], seconds: float, every: float = 0.5) -> Any:
    """``probe()`` until it returns something true (exceptions count as not yet)."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(every)  # polling a container for a state, within a deadline
    raise CheckFailed(f"{what}: not within {seconds:g}s" + (f" (last: {last})" if last else ""))


class Report:
    """Prints each check as it ends; ``failed`` counts the failures."""

    def __init__(self) -> None:
        self.failed = 0
        self.rows: list[tuple[str, bool, str]] = []

    def check(self, name: str, run: Callable[[], str | None]) -> None:
        started = time.monotonic()
        try:
            detail = run() or ""
            ok = True
        except (CheckFailed, AssertionError, subprocess.SubprocessError, OSError) as exc:
            detail, ok = str(exc) or type(exc).__name__, False
            self.failed += 1
        seconds = time.monotonic() - started
        self.rows.append((name, ok, detail))
        say(f"{'PASS' if ok else 'FAIL'}  {name}  ({seconds:.1f}s)" + (f"\n      {detail}" if detail else ""))

    def exit(self) -> None:
        say(f"\n{len(self.rows) - self.failed}/{len(self.rows)} checks passed")
        sys.exit(1 if self.failed else 0)
