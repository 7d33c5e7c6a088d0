"""`slm config`: every SLM_* setting, its value and meaning."""

from __future__ import annotations

import argparse

from slmkit.cli.output import print_json, table


def arguments(cmd: argparse.ArgumentParser) -> None:
    del cmd  # no arguments beyond --json


def run(args: argparse.Namespace) -> int:
    from slmkit.config import describe
    from slmkit.security.redact import redact_urls

    rows = [(n, redact_urls(v), d) for n, v, d in describe()]  # a Redis URL may hold a password
    if args.json:
        print_json([{"name": n, "value": v, "description": d} for n, v, d in rows])
    else:
        table(("SETTING", "VALUE", "MEANING"), rows)
    return 0
