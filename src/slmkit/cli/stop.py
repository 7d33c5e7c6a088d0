"""`slm stop`: unload a running model after its requests in flight (``--force``: now)."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model")
    cmd.add_argument(
        "--force", action="store_true", help="unload now, ending requests in flight with an error (admin key)"
    )


def run(args: argparse.Namespace) -> int:
    client().stop(args.model, force=args.force)
    return 0
