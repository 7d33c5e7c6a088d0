"""`slm rm`: remove models from the store."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("models", nargs="+")


def run(args: argparse.Namespace) -> int:
    c = client()
    for name in args.models:
        c.delete(name)
        if not args.json:
            print(f"deleted '{name}'")
    return 0
