"""`slm pull MODEL`: download through the server, with progress bars (bytes, rate, ETA)."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import ensure_server


def run(args: argparse.Namespace) -> int:
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
