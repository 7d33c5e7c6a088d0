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
