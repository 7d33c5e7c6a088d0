"""`slm eval`: perplexity, KL divergence, multiple choice and golden tests, of a model in the
store or of a served one (``--endpoint``), alone or side by side (``--compare``)."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slmkit.cli.output import print_json, table
from slmkit.cli.quality import (
    add_measure_arguments,
    corpus_text,
    measure,
    open_scorer,
    open_store,
    resolve_model,
)
from slmkit.errors import ClientError, InvalidRequest, ServerUnavailable


def arguments(cmd: argparse.ArgumentParser) -> None:
    add_measure_arguments(
        cmd, "model in the store or a .gguf path (with --endpoint: the served model's name)", optional=True
    )
    cmd.add_argument("--reference", help="model to compare with: KL divergence and top-1 agreement")
    cmd.add_argument("--mc", nargs="?", const="builtin", help="multiple-choice set (default: built-in)")
    cmd.add_argument("--suite", help="golden tests YAML, or 'builtin'")
    cmd.add_argument("--min-pass", type=float, help="exit 1 when a suite's pass rate is below this")
    cmd.add_argument("--endpoint", help="evaluate the model served at this OpenAI-compatible URL instead")
    cmd.add_argument("--model", dest="model_name", help="the model's name (the same as the positional one)")
    cmd.add_argument("--api-key", help="key for the endpoints (default: SLM_API_KEY)")
    cmd.add_argument("--compare", help="a second target in the same table: a server URL or slm://MODEL")
    cmd.add_argument("--compare-model", help="the model's name at --compare (default: the same name)")
    cmd.add_argument(
        "--max-ppl-increase",
        type=float,
        help="with --compare: exit 1 when perplexity is more than this fraction above the compared one's",
    )
    cmd.add_argument(
        "--conformance", nargs="?", const="builtin",
        help="JSON-schema validity and tool-call conformance (default: the built-in set; local models)",
    )  # fmt: skip
    cmd.add_argument(
        "--no-card", action="store_true", help="do not keep the results in the stored model's card"
    )


def run(args: argparse.Namespace) -> int:
    from slmkit.cli.progress import on_terminal

    with on_terminal():  # progress on stderr when it is a terminal
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    model = args.model_name or args.model
    if not model:
        raise InvalidRequest("give a model: slm eval MODEL, or slm eval --endpoint URL --model NAME")
    if args.max_ppl_increase is not None and not args.compare:
        raise InvalidRequest("--max-ppl-increase needs --compare (the baseline it is measured against)")
    if args.reference and (args.endpoint or args.compare):
        raise InvalidRequest("--reference (KL divergence) needs whole distributions: local models only")
    if args.conformance and (args.endpoint or args.compare):
        raise InvalidRequest("--conformance: local models only (slm eval MODEL --conformance)")
    targets = [(args.endpoint, model) if args.endpoint else (None, model)]
    if args.compare:
        local = args.compare.startswith("slm://")
        name = args.compare.removeprefix("slm://") if local else (args.compare_model or model)
        targets.append((None if local else args.compare, name))
    results = [_evaluate(url, name, args) for url, name in targets]
    code = 0
    if args.suite and args.min_pass is not None:
        code = int(any(r["golden"]["pass_rate"] < args.min_pass for r in results))
    if args.max_ppl_increase is not None:
        unscored = next((r for r in results if "perplexity" not in r), None)
        if unscored is not None:
            raise InvalidRequest(
                f"--max-ppl-increase: {unscored['model']} gives no perplexity ({unscored['not_scored']})"
            )
        ratio = results[0]["perplexity"]["ppl"] / results[1]["perplexity"]["ppl"]
        results[0]["ppl_vs_compare"] = ratio
        code = code or int(ratio - 1 > args.max_ppl_increase)
    if args.out:
        from slmkit.optimize.report import write_json

        write_json(Path(args.out), "eval.json", results[0] if len(results) == 1 else results)
    if args.json:
        print_json(results[0] if len(results) == 1 else results)
        return code
    _print(results, args, code)
    return code


def _evaluate(url: str | None, name: str, args: argparse.Namespace) -> dict[str, Any]:
    return _endpoint(url, name, args) if url else _local(name, args)


def _local(model: str, args: argparse.Namespace) -> dict[str, Any]:
    from slmkit.optimize.evaluate import QuestionSet, load_yaml_model, multiple_choice

    path, record = resolve_model(model)
    label = record.name.display if record else path.name
    with ExitStack() as stack:
        reference = None
        if args.reference:
            ref_path, ref_record = resolve_model(args.reference)
            reference = open_scorer(ref_path, ref_record, args)
            stack.callback(reference.close)
        result, scorer = measure(path, label, args, corpus_text(args), reference=reference, record=record)
        stack.callback(scorer.close)
        if args.mc:
            result["multiple_choice"] = multiple_choice(
                scorer, load_yaml_model(_mc_text(args), QuestionSet, "--mc")
            ).__dict__
    if args.suite or args.conformance:
        golden, conformance = _run_chats(
            path, record, _suite(args) if args.suite else None, _conformance(args)
        )
        if golden is not None:
            result["golden"] = _golden_json(golden)
        result |= conformance
    if record is not None and not args.no_card:
        from slmkit.store import cards

        card = cards.record_measures(open_store(), record, _card_measures(result, args))
        result["card"] = {"digest": card["digest"], "measured_at": card["measured_at"]}
    return result


def _card_measures(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """What of ``result`` goes into the model card: the figures, how they were measured."""
    ppl = result.get("perplexity")
    measures: dict[str, Any] = {
        "multiple_choice": result.get("multiple_choice"),
        "json_schema": result.get("json_schema"),
        "tool_calls": result.get("tool_calls"),
        # one sequence's decode speed here (the plan's expected tokens/s on this machine)
        "speed": {"decode_tok_s": result["tok_s"]} if result.get("tok_s") else None,
    }
    if ppl:
        keep = ("ppl", "ppl_error", "kld", "top1_agreement", "chunks")
        measures["perplexity"] = {k: ppl.get(k) for k in keep if ppl.get(k) is not None} | {
            "text": Path(args.file).name if args.file else "builtin corpus", "ctx": args.ctx,
            "reference": args.reference,
        }  # fmt: skip
    if result.get("golden"):
        g = result["golden"]
        measures["golden"] = {k: g[k] for k in ("pass_rate", "passed", "total")} | {"suite": args.suite}
    return measures


def _conformance(args: argparse.Namespace) -> Any:
    if not args.conformance:
        return None
    from slmkit.optimize.evaluate import Conformance, builtin_text, load_yaml_model, read_text_file

    text = (
        read_text_file(Path(args.conformance))
        if args.conformance != "builtin"
        else builtin_text("conformance.yaml")
    )
    return load_yaml_model(text, Conformance, "--conformance")


def _endpoint(url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from slmkit.config import Config
    from slmkit.optimize.endpoint import Endpoint
    from slmkit.optimize.evaluate import (
        QuestionSet,
        load_yaml_model,
        multiple_choice,
        run_suite,
        scored_perplexity,
    )

    api_key = args.api_key or Config.from_env().api_key or None
    with Endpoint(url, name, api_key=api_key, n_ctx=args.ctx) as endpoint:
        result: dict[str, Any] = {"model": endpoint.label}
        try:  # scoring needs /tokenize and echo logprobs; golden suites only chat
            result["perplexity"] = scored_perplexity(
                endpoint, corpus_text(args), max_chunks=args.chunks, label=endpoint.label
            ).to_json()
            if args.mc:
                questions = load_yaml_model(_mc_text(args), QuestionSet, "--mc")
                result["multiple_choice"] = multiple_choice(endpoint, questions).__dict__
        except ClientError as exc:
            if exc.status_code in (401, 403) or isinstance(exc, ServerUnavailable):
                raise
            result["not_scored"] = str(exc)
        if args.suite:
            result["golden"] = _golden_json(run_suite(endpoint.chat, _suite(args)))
    return result


def _mc_text(args: argparse.Namespace) -> str:
    from slmkit.optimize.evaluate import builtin_text, read_text_file

    return read_text_file(Path(args.mc)) if args.mc != "builtin" else builtin_text("mc.yaml")


def _suite(args: argparse.Namespace) -> Any:
    from slmkit.optimize.evaluate import Suite, builtin_text, load_yaml_model, read_text_file

    text = read_text_file(Path(args.suite)) if args.suite != "builtin" else builtin_text("golden.yaml")
    return load_yaml_model(text, Suite, "--suite")


def _golden_json(golden: Any) -> dict[str, Any]:
    return {
        "pass_rate": golden.pass_rate,
        "passed": golden.passed,
        "total": golden.total,
        "cases": golden.cases,
    }


def _print(results: list[dict[str, Any]], args: argparse.Namespace, code: int) -> None:
    from slmkit.optimize.report import HEADERS, row

    if len(results) == 1 and "size" in results[0]:
        table(HEADERS, [row(results[0])])
    else:
        base = (results[-1].get("perplexity") or {}).get("ppl")
        rows = []
        for r in results:
            ppl, mc, golden = r.get("perplexity"), r.get("multiple_choice"), r.get("golden")
            rows.append([
                r["model"],
                f"{ppl['ppl']:.3f}±{ppl['ppl_error']:.3f}" if ppl else "-",
                f"{ppl['ppl'] / base - 1:+.2%}" if ppl and base and len(results) > 1 else "-",
                f"{mc['accuracy']:.1%}" if mc else "-",
                f"{golden['passed']}/{golden['total']}" if golden else "-",
            ])  # fmt: skip
        table(["TARGET", "PPL", "ΔPPL", "MC", "GOLDEN"], rows)
    for r in results:
        if "not_scored" in r:
            print(f"{r['model']}: no perplexity or multiple choice: {r['not_scored']}")
        if "multiple_choice" in r:
            mc = r["multiple_choice"]
            print(
                f"{r['model']}: multiple choice {mc['accuracy']:.1%} ({mc['accuracy_norm']:.1%} "
                f"length-normalized) of {mc['questions']}"
            )
        if "golden" in r:
            g = r["golden"]
            for case in g["cases"]:
                mark = "PASS" if case["passed"] else "FAIL"
                print(
                    f"  {mark} {case['name']}"
                    + ("" if case["passed"] else f": {'; '.join(case['failures'])}")
                )
            print(f"{r['model']}: golden {g['passed']}/{g['total']} passed ({g['pass_rate']:.0%})")
        if "json_schema" in r:
            j = r["json_schema"]
            print(f"{r['model']}: JSON-schema validity {j['valid_rate']:.0%} of {j['cases']}")
        if "tool_calls" in r:
            t = r["tool_calls"]
            print(f"{r['model']}: tool-call conformance {t['conformance_rate']:.0%} of {t['cases']}")
        if "card" in r:
            print(f"{r['model']}: kept in its model card (slm show {r['model']})")
    if code and args.min_pass is not None:
        print(f"below --min-pass {args.min_pass:.0%}", file=sys.stderr)
    if code and args.max_ppl_increase is not None:
        print(
            f"perplexity more than {args.max_ppl_increase:.1%} above the compared target's", file=sys.stderr
        )


def _run_chats(path: Path, record: Any, suite: Any, conformance: Any) -> tuple[Any, dict[str, Any]]:
    """Golden tests and conformance, answered greedily through the model's chat template,
    in-process (one load for both)."""
    import tempfile

    from slmkit.config import Config
    from slmkit.local import LocalModel
    from slmkit.optimize.evaluate import run_conformance, run_suite
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

            def tool_chat(
                messages: list[dict[str, str]], max_tokens: int, tools: list[dict[str, Any]] | None = None
            ) -> tuple[str, list[dict[str, Any]]]:
                done = model.chat(messages, temperature=0, max_tokens=max_tokens, tools=tools)
                return str(done.text), list(done.tool_calls)

            golden = run_suite(chat, suite) if suite is not None else None
            return golden, run_conformance(tool_chat, conformance) if conformance is not None else {}
