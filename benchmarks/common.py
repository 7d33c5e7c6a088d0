"""What the benchmarks share: starting `slm serve` on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def start_server(
    models: Path, threads: int, preexec: Callable[[], None] | None = None, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`slm serve` on its own store; returns once /ready answers 200. ``preexec`` runs in the
    child before it starts (to join a cgroup, say)."""
    port = free_port()
    env = {
        **os.environ,
        "SLM_MODELS": str(models),
        "SLM_HOST": f"127.0.0.1:{port}",
        "SLM_NUM_THREADS": str(threads),
        "SLM_KEEP_ALIVE": "-1",
        **settings,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "slmkit", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=preexec,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{url}/ready")
    return proc, url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], probe: str, seconds: float = 120) -> None:
    """Until ``probe`` answers 200; kills ``proc`` and exits when it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(probe, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{probe} never answered")
