"""`slm verify`: re-hash models' files and report corruption."""

from __future__ import annotations

import argparse

from slmkit.cli.output import print_json


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("models", nargs="*", help="models to check (default: all)")


def run(args: argparse.Namespace) -> int:
    """Re-hash blobs in the store directly (no server needed)."""
    from slmkit.config import Config
    from slmkit.store import ModelStore

    store = ModelStore(Config.from_env().models)
    names = args.models or [r.name.display for r in store.list()]
    report = {name: store.verify(name) for name in names}
    bad = {name: [p for _, p in rows if p] for name, rows in report.items()}
    if args.json:
        print_json([{"model": n, "ok": not bad[n], "problems": bad[n]} for n in names])
    else:
        for name in names:
            print(f"{name}: {'ok' if not bad[name] else 'CORRUPT - ' + '; '.join(bad[name])}")
    return 1 if any(bad.values()) else 0
