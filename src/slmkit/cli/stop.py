"""`slm stop`: unload a running model."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model")


def run(args: argparse.Namespace) -> int:
    client().stop(args.model)
    return 0
