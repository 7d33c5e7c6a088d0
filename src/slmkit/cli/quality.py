"""What `slm quantize` and `slm eval` share: resolving models, the corpus, measuring,
reporting, and their measuring arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slmkit import progress
from slmkit.cli.output import print_json, table


def open_store() -> Any:
    from slmkit.config import Config
    from slmkit.store import ModelStore

    return ModelStore(Config.from_env().models)


def resolve_model(ref: str) -> tuple[Path, Any]:
    """A .gguf path, or a model in the store: (weights path, record or None)."""
    path = Path(ref)
    if ref.endswith(".gguf") and path.is_file():
        return path, None
    record = open_store().get(ref)
    return record.model_path, record


def open_scorer(path: Path, record: Any, args: argparse.Namespace) -> Any:
    """What scores a model's every position: its format's scorer (llama.cpp for a GGUF file,
    ONNX Runtime for a stored ONNX folder, through its view)."""
    from slmkit.formats import format_named, format_of

    if record is None:
        return format_named("gguf").scorer(path, n_ctx=args.ctx, threads=args.threads)
    fmt = format_of(record)
    return fmt.scorer(fmt.prepare(open_store(), record), n_ctx=args.ctx, threads=args.threads)


def corpus_text(args: argparse.Namespace) -> str:
    from slmkit.optimize.evaluate import builtin_text, read_text_file

    return read_text_file(Path(args.file)) if args.file else builtin_text("corpus.txt")


def measure(
    path: Path,
    label: str,
    args: argparse.Namespace,
    text: str,
    reference: Any = None,
    scorer: Any = None,
    record: Any = None,
) -> tuple[dict[str, Any], Any]:
    """Perplexity (KLD with a reference), decode speed and size of one model (a GGUF file,
    or a stored ONNX folder)."""
    from slmkit.formats import format_named, format_of
    from slmkit.optimize.evaluate import perplexity
    from slmkit.optimize.quantize import bits_per_weight
    from slmkit.store.gguf_info import read_info

    fmt = format_of(record) if record is not None else format_named("gguf")
    info = fmt.facts(record) if record is not None else read_info(path)
    if scorer is None:
        progress.current().task(f"{label}: loading")
        scorer = open_scorer(path, record, args)
    ppl = perplexity(scorer, text, max_chunks=args.chunks, reference=reference, label=label)
    progress.current().task(f"{label}: decode speed")
    result = {
        "model": label,
        "format": fmt.name,
        "type": info.file_type,
        "size": path.stat().st_size if path.is_file() else fmt.weights_bytes(record),  # a folder: its weights
        "bits_per_weight": round(bits_per_weight(info), 3),
        "perplexity": ppl.to_json(),
        "tok_s": round(scorer.decode_speed(64), 1),
    }
    return result, scorer


def report(
    results: list[dict[str, Any]], args: argparse.Namespace, headers: Any, row: Any, write_json: Any
) -> None:
    if args.out:
        write_json(Path(args.out), f"{args.command}.json", results)
    if args.json:
        print_json(results)
    else:
        table(headers, [row(r) for r in results])


def add_measure_arguments(cmd: argparse.ArgumentParser, what: str, *, optional: bool = False) -> None:
    cmd.add_argument("model", nargs="?" if optional else None, help=what)
    cmd.add_argument("--file", help="text for perplexity (default: the built-in corpus)")
    cmd.add_argument("--ctx", type=int, default=512, help="perplexity window in tokens (default 512)")
    cmd.add_argument("--chunks", type=int, default=0, help="at most this many windows (default: all)")
    cmd.add_argument("--threads", type=int, default=0, help="CPU threads (default: physical cores)")
    cmd.add_argument("--out", help="folder for JSON results (and the sweep chart)")
