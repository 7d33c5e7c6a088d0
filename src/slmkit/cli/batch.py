"""`slm batch IN.jsonl -o OUT.jsonl`: answer a file of requests, resumably.

The target is a server URL (default: this machine's ``slm serve``, SLM_HOST) or
``slm://MODEL``: the server's app inside this process, no server needed (the same
validation, engine and errors). Run the same command again to finish an interrupted run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidRequest


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("input", help="JSONL file: one {custom_id, method, url, body} request per line")
    cmd.add_argument("-o", "--output", required=True, help="results, appended (OpenAI's batch output format)")
    cmd.add_argument("--target", help="server URL, or slm://MODEL to run in this process (default: SLM_HOST)")
    cmd.add_argument("--model", help="model for every line (replaces each body's model)")
    cmd.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    cmd.add_argument("--api-key", help="key for the server (default: SLM_API_KEY)")


def run(args: argparse.Namespace) -> int:
    source, output = Path(args.input), Path(args.output)
    if not source.is_file():
        raise InvalidRequest(f"input: no such file: {args.input}")
    if source.resolve() == output.resolve():
        raise InvalidRequest("--output must not be the input file")
    if args.concurrency < 1 or args.concurrency > 256:
        raise InvalidRequest("--concurrency: between 1 and 256")
    return asyncio.run(_run(args, source, output))


async def _run(args: argparse.Namespace, source: Path, output: Path) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from slmkit.batch.lines import Limits
    from slmkit.batch.pipeline import Summary, run_file
    from slmkit.cli.output import print_json
    from slmkit.config import Config

    config = Config.from_env()
    limits = Limits(10_000_000, config.max_body_bytes, config.max_json_depth)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=args.json, disable=args.json) as progress:
        task = progress.add_task(source.name, total=None)

        def show(s: Summary) -> None:
            progress.update(task, total=s.total, completed=s.skipped + s.completed + s.failed + s.left)

        async with _sender(args, config) as send:
            summary = await run_file(source, output, send, limits, args.concurrency, args.model, show)
    if args.json:
        print_json(dataclasses.asdict(summary))
    else:
        print(
            f"{summary.completed} answered, {summary.failed} failed, {summary.skipped} already done"
            f" (of {summary.total}) -> {output}"
        )
        if summary.left:
            print(f"{summary.left} could not be answered now: run the same command again to retry them")
    return 1 if summary.left else 0


@contextlib.asynccontextmanager
async def _sender(args: argparse.Namespace, config: Any) -> AsyncIterator[Any]:
    """A ``send(path, body)`` for the target: HTTP to a URL, or the app in this process."""
    import httpx

    from slmkit.errors import ServerUnavailable

    target = args.target or config.base_url
    local = target.startswith("slm://")
    key = config.api_key if args.api_key is None else args.api_key
    with tempfile.TemporaryDirectory(prefix="slm-batch-") as scratch:
        if local:
            from slmkit.server.app import create_app

            if not args.model:
                args.model = target.removeprefix("slm://")
            # the caller is this process: no keys (its own empty keys file), no preloading
            own = dataclasses.replace(config, keys_file=Path(scratch) / "keys.json", require_keys=False)
            app = create_app(own, preload=False)
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=None
            )
        else:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            http = httpx.AsyncClient(base_url=target, headers=headers, timeout=config.request_timeout or None)

        async def send(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            try:
                response = await http.post(path, json=body)
            except httpx.TransportError as exc:
                raise ServerUnavailable(f"no server answers at {target} ({type(exc).__name__})") from exc
            try:
                data = response.json()
            except ValueError:
                data = {"error": {"message": response.text[:500]}}
            return response.status_code, data if isinstance(data, dict) else {"data": data}

        try:
            yield send
        finally:
            await http.aclose()
            if local:
                await app.state.slm.manager.close()
