"""`slm keys create|list|revoke`: manage API keys in the keys file (no server needed)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from slmkit.cli.output import print_json, table
from slmkit.config import Config
from slmkit.security.keys import KeyStore


def arguments(cmd: argparse.ArgumentParser) -> None:
    actions = cmd.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--scope", choices=["inference", "admin", "metrics"], default="inference")
    create.add_argument("--name", help="a label to find the key by")
    create.add_argument("--rpm", type=int, help="requests per minute allowed")
    create.add_argument("--tpm", type=int, help="tokens (prompt + generated) per minute allowed")
    actions.add_parser("list", help="list keys (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("ref", help="key id or name")
    for sub in (create, actions.choices["list"], revoke):
        sub.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    store = KeyStore(Config.from_env().keys_file)
    if args.action == "create":
        key, secret = store.create(args.scope, args.name, args.rpm, args.tpm)
        if args.json:
            print_json({**_public(asdict(key)), "key": secret})
        else:
            print(secret)
            print(
                f"created key {key.id} ({key.name}, scope {key.scope}); it is shown only once",
                file=sys.stderr,
            )
        return 0
    if args.action == "revoke":
        key = store.revoke(args.ref)
        if not args.json:
            print(f"revoked key {key.id} ({key.name})")
        return 0
    keys = store.keys()
    if args.json:
        print_json([_public(asdict(k)) for k in keys])
        return 0
    rows = [
        (
            k.id,
            k.name,
            k.scope,
            str(k.rpm or "-"),
            str(k.tpm or "-"),
            datetime.fromtimestamp(k.created, UTC).strftime("%Y-%m-%d %H:%M"),
        )
        for k in keys
    ]
    table(("ID", "NAME", "SCOPE", "RPM", "TPM", "CREATED"), rows)
    return 0


def _public(entry: dict[str, object]) -> dict[str, object]:
    entry.pop("hash", None)
    return entry
