"""`slm quantize`: shrink a model (or sweep types), measure it, store it if it passes."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slmkit import progress
from slmkit.cli.quality import add_measure_arguments, corpus_text, measure, open_store, report


def arguments(cmd: argparse.ArgumentParser) -> None:
    add_measure_arguments(cmd, "model in the store")
    cmd.add_argument("--to", required=True, help="type, or comma-separated types to sweep (Q4_K_M,Q8_0)")
    cmd.add_argument("--name", help="name of the new model (default: NAME:TAG-TYPE)")
    cmd.add_argument("--imatrix", help="importance matrix from llama-imatrix (.gguf or .dat)")
    cmd.add_argument("--allow-requantize", action="store_true", help="quantize an already quantized source")
    cmd.add_argument("--max-ppl-increase", help="refuse to store beyond this perplexity rise, e.g. 5%%")
    cmd.add_argument("--no-eval", action="store_true", help="skip measuring (no quality gate)")


def run(args: argparse.Namespace) -> int:
    from slmkit.cli.progress import on_terminal

    with on_terminal():  # progress on stderr when it is a terminal
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from slmkit.errors import InvalidRequest, QualityGateFailed
    from slmkit.optimize.quantize import (
        gate,
        parse_budget,
        quantize_record,
        scratch_dir,
        store_quantized,
        target_name,
    )
    from slmkit.optimize.report import HEADERS, row, sweep_chart, write_json

    store = open_store()
    record = store.get(args.model)
    targets = [t.strip().upper() for t in args.to.split(",") if t.strip()]
    if not targets:
        raise InvalidRequest("--to: name at least one quantization type")
    if args.name and len(targets) > 1:
        raise InvalidRequest("--name: only with a single --to type")
    budget = parse_budget(args.max_ppl_increase) if args.max_ppl_increase else None
    if budget is not None and args.no_eval:
        raise InvalidRequest("--max-ppl-increase needs the evaluation that --no-eval skips")
    text = "" if args.no_eval else corpus_text(args)
    results: list[dict[str, Any]] = []
    failed = 0
    with ExitStack() as stack:
        source_scorer = None
        if not args.no_eval:
            source, source_scorer = measure(record.model_path, record.name.display, args, text)
            stack.callback(source_scorer.close)
            results.append(source | {"status": "source"})
        for target in targets:
            name = target_name(record.name, target) if not args.name else _parse_name(args.name)
            with scratch_dir(store) as scratch:
                progress.current().task(f"quantizing {record.name.display} to {target}")
                made = quantize_record(
                    record,
                    target,
                    Path(scratch),
                    threads=args.threads,
                    allow_requantize=args.allow_requantize,
                    imatrix=Path(args.imatrix) if args.imatrix else None,
                )
                result: dict[str, Any] = {
                    "model": name.display,
                    "type": target,
                    "source": record.name.display,
                }
                if not args.no_eval:
                    measured, scorer = measure(made.path, name.display, args, text, reference=source_scorer)
                    scorer.close()
                    result |= measured | {"type": target}
                    made.provenance["quality"] = {
                        k: measured["perplexity"].get(k)
                        for k in ("ppl", "ppl_ratio", "kld", "top1_agreement")
                    } | {"text": (args.file and Path(args.file).name) or "builtin corpus", "ctx": args.ctx}
                try:
                    if not args.no_eval:
                        gate(result["perplexity"]["ppl_ratio"], budget, target)
                except QualityGateFailed as exc:
                    failed += 1
                    results.append(result | {"status": "refused", "reason": str(exc)})
                    if len(targets) == 1:
                        report(results, args, HEADERS, row, write_json)
                        raise
                    continue
                progress.current().task(f"storing {name.display}")
                stored = store_quantized(store, record, made, name)
                result |= {
                    "size": stored.manifest.model_layer.size,
                    "status": "stored",
                    "provenance": made.provenance,
                }
                result.setdefault("bits_per_weight", None)
                results.append(result)
    report(results, args, HEADERS, row, write_json)
    if len(results) > 2 and args.out:
        chart = sweep_chart(results[1:], Path(args.out) / "quantize-sweep.png")
        if chart and not args.json:
            print(f"chart: {chart}")
    return 1 if failed else 0


def _parse_name(text: str) -> Any:
    from slmkit.names import ModelName

    return ModelName.parse(text)
