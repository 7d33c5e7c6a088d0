"""`slm eval`: perplexity, KL divergence, multiple choice and golden tests."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slmkit.cli.output import print_json, table
from slmkit.cli.quality import add_measure_arguments, corpus_text, measure, open_store, resolve_model


def arguments(cmd: argparse.ArgumentParser) -> None:
    add_measure_arguments(cmd, "model in the store or a .gguf path")
    cmd.add_argument("--reference", help="model to compare with: KL divergence and top-1 agreement")
    cmd.add_argument("--mc", nargs="?", const="builtin", help="multiple-choice set (default: built-in)")
    cmd.add_argument("--suite", help="golden tests YAML, or 'builtin'")
    cmd.add_argument("--min-pass", type=float, help="exit 1 when the suite's pass rate is below this")


def run(args: argparse.Namespace) -> int:
    from slmkit.optimize.evaluate import (
        QuestionSet,
        Suite,
        builtin_text,
        load_yaml_model,
        multiple_choice,
        read_text_file,
    )
    from slmkit.optimize.report import HEADERS, row, write_json

    path, record = resolve_model(args.model)
    label = record.name.display if record else path.name
    with ExitStack() as stack:
        reference = None
        if args.reference:
            from slmkit.engine.backends.llama_offline import Scorer

            ref_path, _ = resolve_model(args.reference)
            reference = stack.enter_context(Scorer(ref_path, n_ctx=args.ctx, threads=args.threads))
        result, scorer = measure(path, label, args, corpus_text(args), reference=reference)
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
            store = open_store()
        with LocalModel.open(record.name.display, config=Config.from_env(), store=store) as model:

            def chat(messages: list[dict[str, str]], max_tokens: int) -> str:
                return str(model.chat(messages, temperature=0, max_tokens=max_tokens).text)

            return run_suite(chat, suite)
