"""A real Redis server (Debian's ``redis-server``) for tests: a private process on a Unix
socket in a temporary folder (no port to race for), nothing saved to disk. Tests that need
it skip where it is not installed, unless SLM_REQUIRE_REDIS is set (``.ci/run`` installs it
and sets it), where they fail instead."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _answers(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(folder: Path, timeout: float = 30) -> Iterator[str]:
    """Start redis-server; yields its URL (``unix:///.../redis.sock``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("SLM_REQUIRE_REDIS"):
            pytest.fail("redis-server is required here (SLM_REQUIRE_REDIS) but not installed")
        pytest.skip("redis-server is not installed (Debian: redis-server; .ci/run installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    short = Path(tempfile.mkdtemp(prefix="slm-redis-"))  # a socket path is at most 107 bytes
    sock = short / "redis.sock"
    argv = [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    with (folder / "redis.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(sock):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start: {(folder / 'redis.log').read_text()}")
            time.sleep(0.02)  # polling a socket for readiness, within the deadline
        yield f"unix://{sock}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(short, ignore_errors=True)
