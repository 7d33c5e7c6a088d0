"""`slm cp`: copy a model under a new name."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("source")
    cmd.add_argument("destination")


def run(args: argparse.Namespace) -> int:
    client().copy(args.source, args.destination)
    if not args.json:
        print(f"copied '{args.source}' to '{args.destination}'")
    return 0
