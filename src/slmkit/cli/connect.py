"""Reaching the server from the CLI, starting one in the background for `slm run`."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

from slmkit.config import Config
from slmkit.errors import ServerUnavailable

if TYPE_CHECKING:
    from slmkit.client import Client


def client() -> Client:
    from slmkit.client import Client

    return Client(Config.from_env().base_url)


def ensure_server(timeout: float = 60.0) -> Client:
    """A client for a running server; start `slm serve` in the background if none answers."""
    c = client()
    if c.health():
        return c
    config = Config.from_env()
    log_dir = config.models.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "slmkit", "serve"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    print(
        f"Started an slmkit server in the background at {c.base_url} (pid {process.pid}); "
        f"it keeps running after this command. Log: {log_path}. Stop it with: kill {process.pid}",
        file=sys.stderr,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.health():
            return c
        if process.poll() is not None:
            raise ServerUnavailable(f"the server exited at start (code {process.returncode}); see {log_path}")
        time.sleep(0.2)
    raise ServerUnavailable(f"started a server but it did not answer at {c.base_url}; see {log_path}")
