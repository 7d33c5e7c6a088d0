"""`slm bench TARGET...` and `slm bench compare A.json B.json ...`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from slmkit.cli.output import print_json
from slmkit.errors import InvalidRequest


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidRequest(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise InvalidRequest(f"expected positive integers, got {text!r}")
    return values


async def _measure(targets: list[Any], plan: Any, console: Any) -> dict[str, object]:
    from slmkit.bench.runner import run as run_bench

    try:
        with console.status("benchmarking") as status:
            return await run_bench(targets, plan, lambda s: status.update(s))
    finally:
        for target in targets:
            await target.close()


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "targets", nargs="*", help="slm://MODEL, an OpenAI or Ollama base URL; or: compare FILES"
    )
    cmd.add_argument("--model", help="model name for URL targets")
    cmd.add_argument("--api", choices=["auto", "openai", "ollama"], default="auto")
    cmd.add_argument("--api-key", help="key for URL targets")
    cmd.add_argument("--concurrency", default="1", help="comma-separated levels, e.g. 1,2,4,8")
    cmd.add_argument("--num-requests", type=int, default=8, help="per target and level")
    cmd.add_argument("--output-tokens", type=int, default=64)
    cmd.add_argument("--input-tokens", help="fixed prompt lengths, e.g. 128,512 (default: chat prompts)")
    cmd.add_argument("--rate", type=float, help="open loop: Poisson arrivals per second")
    cmd.add_argument(
        "--turns", type=int, default=1, help="multi-turn chats of this many turns (shared prefixes)"
    )
    cmd.add_argument("--duration", type=float, help="seconds per target and level, instead of --num-requests")
    cmd.add_argument("--slo-ttft", type=float, help="goodput: TTFT limit in seconds")
    cmd.add_argument("--slo-itl", type=float, help="goodput: inter-token latency limit in seconds")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--out", default="bench-results", help="folder for JSON, Markdown and PNG charts")


def _results(path: Path) -> dict[str, Any]:
    from slmkit.bench import report

    return report.read(path, "compare", "slm bench writes bench-results/results.json")


def run(args: argparse.Namespace) -> int:
    from slmkit.bench import report

    if args.targets and args.targets[0] == "compare":
        files = [Path(p) for p in args.targets[1:]]
        if len(files) < 2:
            raise InvalidRequest("compare needs two or more results.json files")
        results = [_results(p) for p in files]
        print(report.compare(results, [p.parent.name or p.stem for p in files]), end="")
        return 0
    if not args.targets:
        raise InvalidRequest("give at least one target: slm://MODEL or a server URL")
    from rich.console import Console

    from slmkit.bench.runner import Plan
    from slmkit.bench.targets import make_target

    inputs = _ints(args.input_tokens) if args.input_tokens else [0]
    console = Console(stderr=True)
    out = Path(args.out)
    for n_input in inputs:
        plan = Plan(
            concurrency=_ints(args.concurrency),
            num_requests=args.num_requests,
            output_tokens=args.output_tokens,
            input_tokens=n_input or None,
            turns=args.turns,
            duration=args.duration,
            seed=args.seed,
            rate=args.rate,
            slo_ttft=args.slo_ttft,
            slo_itl=args.slo_itl,
        )
        targets = [make_target(t, model=args.model, api=args.api, api_key=args.api_key) for t in args.targets]
        result = asyncio.run(_measure(targets, plan, console))
        folder = out / f"input-{n_input}" if len(inputs) > 1 else out
        paths = report.write(result, folder)
        if args.json:
            print_json(result)
        else:
            print(report.markdown(result))
            console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0
