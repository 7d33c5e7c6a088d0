"""`slm list`: the models in the store."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client
from slmkit.cli.output import ago, human_size, print_json, table


def arguments(cmd: argparse.ArgumentParser) -> None:
    del cmd  # no arguments beyond --json


def run(args: argparse.Namespace) -> int:
    models = client().list()
    if args.json:
        print_json(models)
        return 0
    rows = [(m["name"], m["digest"][:12], human_size(m["size"]), ago(m["modified_at"])) for m in models]
    table(("NAME", "ID", "SIZE", "MODIFIED"), rows)
    return 0
