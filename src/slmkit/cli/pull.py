"""`slm pull MODEL`: download through the server, with progress bars (bytes, rate, ETA)."""

from __future__ import annotations

import argparse

from slmkit.cli import gate
from slmkit.cli.connect import ensure_server


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model", help="e.g. smollm2:135m, host/ns/model:tag, hf.co/org/repo:Q4_K_M")
    cmd.add_argument("--insecure", action="store_true", help="use plain http to the registry")
    cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    cmd.add_argument(
        "--local",
        action="store_true",
        help="pull straight into SLM_MODELS without a server (init containers)",
    )
    gate.add_arguments(cmd)


def run(args: argparse.Namespace) -> int:
    code = _pull(args)
    if code == 0 and gate.wanted(args):  # measured here; below a floor the pulled model goes
        from slmkit.cli.connect import client

        gate.check(args.model, args, lambda: client().delete(args.model))
    return code


def _pull(args: argparse.Namespace) -> int:
    if args.local:
        return _local(args)
    client = ensure_server()
    events = client.pull(args.model, insecure=args.insecure)
    if args.quiet or args.json:
        last: dict[str, object] = {}
        for event in events:
            last = event
        if args.json:
            from slmkit.cli.output import print_json

            print_json(last)
        return 0
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bars: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        for event in events:
            digest = event.get("digest")
            if digest and event.get("total"):
                if digest not in bars:
                    bars[digest] = progress.add_task(str(event["status"]), total=int(event["total"]))
                progress.update(bars[digest], completed=int(event.get("completed", 0)))
            else:
                progress.console.print(str(event.get("status", "")))
    return 0


def _local(args: argparse.Namespace) -> int:
    """Pull straight into the store, no server (an init container that fills a volume). The
    embedded default model is imported from its package instead of downloaded."""
    from slmkit.config import Config
    from slmkit.errors import ModelNotFound
    from slmkit.names import ModelName
    from slmkit.store import ModelStore
    from slmkit.store.default import DEFAULT_NAME, ensure_default_model
    from slmkit.store.pulling import pull_client, run_pull
    from slmkit.store.registry import Progress, RegistryClient

    config = Config.from_env()
    store = ModelStore(config.models)
    if not args.model.startswith("hf.co/") and ModelName.parse(args.model) == ModelName.parse(DEFAULT_NAME):
        try:
            record = ensure_default_model(store)
            print(f"{record.name.display}: embedded model ready ({record.digest[:19]})")
            return 0
        except ModelNotFound:
            pass  # the model package is not installed: download it like any other

    def report(progress: Progress) -> None:
        if not args.quiet and progress.status and not progress.total:
            print(progress.status, flush=True)

    client = pull_client(store, config, args.model)
    try:
        run_pull(client, config, args.model, insecure=args.insecure, progress=report)
    finally:
        if isinstance(client, RegistryClient):
            client.close()
    print(f"{args.model}: success")
    return 0
