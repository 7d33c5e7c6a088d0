"""Stand-in worker entry points for runner tests (module level, so spawn can import them)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def never_ready(conn: Any, *args: Any) -> None:
    time.sleep(60)


def crash_while_loading(conn: Any, *args: Any) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def exit_while_loading(conn: Any, *args: Any) -> None:
    os._exit(3)


def exit_with_secret_count(conn: Any, *args: Any) -> None:
    """Exit code 10 + how many variables with secret-looking names the worker inherited."""
    from slmkit.config import secret_name

    os._exit(10 + sum(1 for name in os.environ if secret_name(name)))


def chatter_then_crash(conn: Any, *args: Any) -> None:
    """Native-style output (written to fd 2 directly, as llama.cpp does), a line without a
    newline at the end, then a crash."""
    os.write(2, b"ggml: something native\nsecond line\n")
    os.write(1, b"on stdout\n")
    os.write(2, b"last words")
    os.kill(os.getpid(), signal.SIGSEGV)
