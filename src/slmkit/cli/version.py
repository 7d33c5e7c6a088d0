"""`slm version`: client and server versions."""

from __future__ import annotations

import argparse

from slmkit import __version__
from slmkit.cli.output import print_json


def arguments(cmd: argparse.ArgumentParser) -> None:
    del cmd  # no arguments beyond --json


def run(args: argparse.Namespace) -> int:
    from slmkit.cli.connect import client
    from slmkit.errors import ServerUnavailable

    try:
        server: str | None = client().version()
    except ServerUnavailable:
        server = None
    if args.json:
        print_json({"client": __version__, "server": server})
    else:
        print(f"slm version {__version__}")
        print(f"server version {server}" if server else "Warning: could not connect to a running server")
    return 0
