"""`slm quantize` and `slm eval`: shrink a model and measure what quality it kept."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slmkit.cli.output import print_json, table


def run(args: argparse.Namespace) -> int:
    return {"quantize": _quantize, "eval": _eval}[args.command](args)


def _store() -> Any:
    from slmkit.config import Config
    from slmkit.store import ModelStore

    return ModelStore(Config.from_env().models)


def _resolve(ref: str) -> tuple[Path, Any]:
    """A .gguf path, or a model in the store: (weights path, record or None)."""
    path = Path(ref)
    if ref.endswith(".gguf") and path.is_file():
        return path, None
    record = _store().get(ref)
    return record.model_path, record


def _text(args: argparse.Namespace) -> str:
    from slmkit.optimize.evaluate import builtin_text, read_text_file

    return read_text_file(Path(args.file)) if args.file else builtin_text("corpus.txt")


def _measure(
    path: Path, label: str, args: argparse.Namespace, text: str, reference: Any = None, scorer: Any = None
) -> tuple[dict[str, Any], Any]:
    """Perplexity (KLD with a reference), decode speed and size of one model file."""
    from slmkit.engine.llama_offline import Scorer
    from slmkit.optimize.evaluate import perplexity
    from slmkit.optimize.quantize import bits_per_weight
    from slmkit.store.gguf_info import read_info

    info = read_info(path)
    scorer = scorer or Scorer(path, n_ctx=args.ctx, threads=args.threads)
    ppl = perplexity(scorer, text, max_chunks=args.chunks, reference=reference)
    result = {
        "model": label,
        "type": info.file_type,
        "size": path.stat().st_size,
        "bits_per_weight": round(bits_per_weight(info), 3),
        "perplexity": ppl.to_json(),
        "tok_s": round(scorer.decode_speed(64), 1),
    }
    return result, scorer


def _quantize(args: argparse.Namespace) -> int:
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

    store = _store()
    record = store.get(args.model)
    targets = [t.strip().upper() for t in args.to.split(",") if t.strip()]
    if not targets:
        raise InvalidRequest("--to: name at least one quantization type")
    if args.name and len(targets) > 1:
        raise InvalidRequest("--name: only with a single --to type")
    budget = parse_budget(args.max_ppl_increase) if args.max_ppl_increase else None
    if budget is not None and args.no_eval:
        raise InvalidRequest("--max-ppl-increase needs the evaluation that --no-eval skips")
    text = "" if args.no_eval else _text(args)
    results: list[dict[str, Any]] = []
    failed = 0
    with ExitStack() as stack:
        source_scorer = None
        if not args.no_eval:
            source, source_scorer = _measure(record.model_path, record.name.display, args, text)
            stack.callback(source_scorer.close)
            results.append(source | {"status": "source"})
        for target in targets:
            name = target_name(record.name, target) if not args.name else _parse_name(args.name)
            with scratch_dir(store) as scratch:
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
                    measured, scorer = _measure(made.path, name.display, args, text, reference=source_scorer)
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
                        _report(results, args, HEADERS, row, write_json)
                        raise
                    continue
                stored = store_quantized(store, record, made, name)
                result |= {
                    "size": stored.manifest.model_layer.size,
                    "status": "stored",
                    "provenance": made.provenance,
                }
                result.setdefault("bits_per_weight", None)
                results.append(result)
    _report(results, args, HEADERS, row, write_json)
    if len(results) > 2 and args.out:
        chart = sweep_chart(results[1:], Path(args.out) / "quantize-sweep.png")
        if chart and not args.json:
            print(f"chart: {chart}")
    return 1 if failed else 0


def _report(
    results: list[dict[str, Any]], args: argparse.Namespace, headers: Any, row: Any, write_json: Any
) -> None:
    if args.out:
        write_json(Path(args.out), f"{args.command}.json", results)
    if args.json:
        print_json(results)
    else:
        table(headers, [row(r) for r in results])


def _parse_name(text: str) -> Any:
    from slmkit.names import ModelName

    return ModelName.parse(text)


def _eval(args: argparse.Namespace) -> int:
    from slmkit.optimize.evaluate import (
        QuestionSet,
        Suite,
        builtin_text,
        load_yaml_model,
        multiple_choice,
        read_text_file,
    )
    from slmkit.optimize.report import HEADERS, row, write_json

    path, record = _resolve(args.model)
    label = record.name.display if record else path.name
    with ExitStack() as stack:
        reference = None
        if args.reference:
            from slmkit.engine.llama_offline import Scorer

            ref_path, _ = _resolve(args.reference)
            reference = stack.enter_context(Scorer(ref_path, n_ctx=args.ctx, threads=args.threads))
        result, scorer = _measure(path, label, args, _text(args), reference=reference)
        stack.callback(scorer.close)
        if args.mc:
            text = read_text_file(Path(args.mc)) if args.mc != "builtin" else builtin_text("mc.yaml")
            mc = multiple_choice(scorer, load_yaml_model(text, QuestionSet, "--mc"))
            result["multiple_choice"] = mc.__dict__
    if args.suite:
        text = read_text_file(Path(args.suite)) if args.suite != "builtin" else builtin_text("golden.yaml")
        suite = load_yaml_model(text, Suite, "--suite")
        golden = _run_golden(path, record, suite)
        result["golden"] = {"pass_rate": golden.pass_rate, "passed": golden.passed, "total": golden.total}
        result["golden"]["cases"] = golden.cases
    code = 0
    if args.suite and args.min_pass is not None and result["golden"]["pass_rate"] < args.min_pass:
        code = 1
    if args.out:
        write_json(Path(args.out), "eval.json", result)
    if args.json:
        print_json(result)
        return code
    table(HEADERS, [row(result)])
    if "multiple_choice" in result:
        mc = result["multiple_choice"]
        print(
            f"multiple choice: {mc['accuracy']:.1%} ({mc['accuracy_norm']:.1%} length-normalized)"
            f" of {mc['questions']}"
        )
    if "golden" in result:
        g = result["golden"]
        for case in g["cases"]:
            mark = "PASS" if case["passed"] else "FAIL"
            print(f"  {mark} {case['name']}" + ("" if case["passed"] else f": {'; '.join(case['failures'])}"))
        print(f"golden: {g['passed']}/{g['total']} passed ({g['pass_rate']:.0%})")
        if code:
            print(f"below --min-pass {args.min_pass:.0%}", file=sys.stderr)
    return code


def _run_golden(path: Path, record: Any, suite: Any) -> Any:
    """Answer each test greedily through the model's chat template, in-process."""
    import tempfile

    from slmkit.config import Config
    from slmkit.local import LocalModel
    from slmkit.optimize.evaluate import run_suite
    from slmkit.store import ModelStore

    with tempfile.TemporaryDirectory(prefix="slm-eval-") as tmp:
        if record is None:  # a bare GGUF: a scratch store gives it the same loading path
            store = ModelStore(Path(tmp))
            record = store.import_gguf("eval:latest", path)
        else:
            store = _store()
        with LocalModel.open(record.name.display, config=Config.from_env(), store=store) as model:

            def chat(messages: list[dict[str, str]], max_tokens: int) -> str:
                return str(model.chat(messages, temperature=0, max_tokens=max_tokens).text)

            return run_suite(chat, suite)
