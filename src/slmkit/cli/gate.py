"""`slm create` and `slm pull` with a quality floor: measure the new model as `slm eval`
does (its card is kept), and remove it again when it is below any floor asked for, so a
build that lost what matters (a quantization that broke tool calling) never serves."""

from __future__ import annotations

import argparse
from typing import Any

from slmkit.errors import QualityGateFailed

FLOORS = {  # flag: (what it checks, result path, "min" or "max")
    "min_mc": ("multiple-choice accuracy", ("multiple_choice", "accuracy"), "min"),
    "max_ppl": ("perplexity", ("perplexity", "ppl"), "max"),
    "min_golden": ("golden pass rate", ("golden", "pass_rate"), "min"),
    "min_json": ("JSON-schema validity", ("json_schema", "valid_rate"), "min"),
    "min_tools": ("tool-call conformance", ("tool_calls", "conformance_rate"), "min"),
}


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    group = cmd.add_argument_group(
        "quality floor (measured locally after it is made; below: removed, exit 1)"
    )
    group.add_argument(
        "--min-mc", type=float, metavar="RATE", help="built-in multiple-choice accuracy, e.g. 0.6"
    )
    group.add_argument("--max-ppl", type=float, metavar="PPL", help="perplexity on the built-in corpus")
    group.add_argument("--min-golden", type=float, metavar="RATE", help="built-in golden tests' pass rate")
    group.add_argument("--min-json", type=float, metavar="RATE", help="JSON-schema validity rate")
    group.add_argument("--min-tools", type=float, metavar="RATE", help="tool-call conformance rate")


def wanted(args: argparse.Namespace) -> bool:
    return any(getattr(args, flag, None) is not None for flag in FLOORS)


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The eval the floors need, of stored model ``name`` (kept in its card)."""
    from slmkit.cli import eval as eval_command
    from slmkit.cli.main import build_parser

    argv = ["eval", name]
    if args.max_ppl is not None:
        argv += ["--chunks", "8"]
    if args.min_mc is not None:
        argv += ["--mc"]
    if args.min_golden is not None:
        argv += ["--suite", "builtin"]
    if args.min_json is not None or args.min_tools is not None:
        argv += ["--conformance"]
    eval_args = build_parser("eval").parse_args(argv)
    return eval_command._local(name, eval_args)


def check(name: str, args: argparse.Namespace, remove: Any) -> dict[str, Any]:
    """Measure ``name``; below a floor: ``remove()`` it and raise QualityGateFailed."""
    result = measure(name, args)
    failures = []
    for flag, (label, (part, key), kind) in FLOORS.items():
        floor = getattr(args, flag, None)
        if floor is None:
            continue
        value = (result.get(part) or {}).get(key)
        if value is None or (value < floor if kind == "min" else value > floor):
            shown = "not measured" if value is None else f"{value:.3g}"
            failures.append(f"{label} {shown} ({'below' if kind == 'min' else 'above'} {floor:g})")
    if failures:
        remove()
        raise QualityGateFailed(f"{name} was removed: {'; '.join(failures)}")
    return result
