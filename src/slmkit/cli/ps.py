"""`slm ps`: the models loaded now."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client
from slmkit.cli.output import human_size, print_json, table


def arguments(cmd: argparse.ArgumentParser) -> None:
    del cmd  # no arguments beyond --json


def run(args: argparse.Namespace) -> int:
    models = client().ps()
    if args.json:
        print_json(models)
        return 0
    rows = [
        (
            m["name"],
            m["digest"][:12],
            human_size(m["size"]),
            "100% CPU",
            str(m.get("context_length", "")),
            str(m.get("num_parallel", "")),
            str(m.get("threads", "")),
            _until(m["expires_at"]),
        )
        for m in models
    ]
    table(("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "PARALLEL", "THREADS", "UNTIL"), rows)
    return 0


def _until(stamp: str) -> str:
    from datetime import UTC, datetime

    if stamp.startswith("9999"):
        return "Forever"
    try:
        seconds = (datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    except ValueError:
        return stamp
    return (
        f"{int(seconds // 60)} minutes from now"
        if seconds >= 60
        else f"{max(0, int(seconds))} seconds from now"
    )
