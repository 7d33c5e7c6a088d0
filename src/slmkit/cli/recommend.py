"""`slm recommend`: what fits this machine, best first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmkit.cli.choose import add_context, add_slots, context_tokens
from slmkit.cli.output import print_json, table
from slmkit.errors import NotFound
from slmkit.units import human

LOCAL_BENCH = "bench-results/results.json"  # where `slm bench` writes by default


def arguments(cmd: argparse.ArgumentParser) -> None:
    add_context(cmd)
    add_slots(cmd)
    cmd.add_argument("--min-tok-s", type=float, default=10.0, help="decode speed each user needs")
    cmd.add_argument("--bench", metavar="RESULTS", help="calibrate speeds from an `slm bench` results.json")
    cmd.add_argument("--limit", type=int, default=15, help="how many to show")
    cmd.add_argument(
        "--format",
        choices=["any", "gguf", "onnx"],
        default="any",
        help="GGUF (llama.cpp) or ONNX (ONNX Runtime) builds",
    )


def run(args: argparse.Namespace) -> int:
    from slmkit.hardware import probe
    from slmkit.optimize.catalog import RUNTIMES, load_catalog, params_label
    from slmkit.optimize.recommend import WHY, default_speed, recommend, speed_from_bench

    machine = probe()
    speed = default_speed(machine)
    if args.bench:  # only when asked: a results file lying in this folder changes nothing
        speed = speed_from_bench(Path(args.bench), _bench_weights, machine)
    elif Path(LOCAL_BENCH).is_file():
        hint = f"({LOCAL_BENCH} is here: pass --bench {LOCAL_BENCH} to calibrate speeds from it)"
        print(hint, file=sys.stderr)
    found = recommend(
        load_catalog(),
        machine,
        speed,
        n_ctx=context_tokens(args),
        parallel=args.parallel,
        min_tok_s=args.min_tok_s,
        kv_type=args.kv_type,
        formats=("gguf", "onnx") if args.format == "any" else (args.format,),
    )[: args.limit]
    if args.json:
        print_json({"speed_calibration": speed.calibrated_from, "candidates": [c.to_json() for c in found]})
        return 0
    if not found:
        print("Nothing in the catalog fits with these settings; try a smaller --ctx or --min-tok-s.")
        return 2
    rows = [
        [
            c.model.id,
            c.fit.quant,
            params_label(c.model.params),
            human(c.fit.estimate.required),
            f"{c.tok_s_per_user:.0f}" + ("" if c.gain_measured or args.parallel == 1 else "*"),
            f"{c.tok_s_total:.0f}",
            RUNTIMES[c.fit.fmt],
            c.model.pull_ref(c.fit.fmt, c.fit.quant),
        ]
        for c in found
    ]
    table(["MODEL", "QUANT", "PARAMS", "MEMORY", "TOK/S PER USER", "TOK/S TOTAL", "RUNTIME", "PULL"], rows)
    print(f"\nSpeeds are estimates (calibration: {speed.calibrated_from}); * = batching gain assumed.")
    print(f"Runtime: at equal quality GGUF is ranked first. {WHY['gguf']}. {WHY['onnx']}.")
    return 0


def _bench_weights(label: str) -> int | None:
    """Bytes of weights of a `slm bench` target labelled slm://NAME, when NAME is local."""
    from slmkit.config import Config
    from slmkit.formats import format_of
    from slmkit.store import ModelStore

    name = label.removeprefix("slm://")
    try:
        record = ModelStore(Config.from_env().models).get(name)
    except (NotFound, ValueError):
        return None
    return format_of(record).weights_bytes(record)
