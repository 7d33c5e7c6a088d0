"""`slm version` and `slm config`."""

from __future__ import annotations

import argparse

from slmkit import __version__
from slmkit.cli.output import print_json, table


def run(args: argparse.Namespace) -> int:
    if args.command == "version":
        return _version(args)
    return _config(args)


def _version(args: argparse.Namespace) -> int:
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


def _config(args: argparse.Namespace) -> int:
    from slmkit.config import describe

    rows = describe()
    if args.json:
        print_json([{"name": n, "value": v, "description": d} for n, v, d in rows])
    else:
        table(("SETTING", "VALUE", "MEANING"), rows)
    return 0
