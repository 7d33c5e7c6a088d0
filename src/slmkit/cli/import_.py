"""`slm import`: a local GGUF file, or an ONNX Runtime GenAI model folder, as a model (works
on the store, no server needed)."""

from __future__ import annotations

import argparse

from slmkit.cli.output import human_size, print_json
from slmkit.errors import InvalidRequest


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("name", help="model name, e.g. mymodel:q4")
    cmd.add_argument("file", help="path to a .gguf file, or an ONNX Runtime GenAI model folder")
    cmd.add_argument(
        "--parameter",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        default=[],
        help="a default option (temperature, stop, num_predict, ...) or num_parallel; repeatable",
    )
    cmd.add_argument("--system", help="default system prompt")
    cmd.add_argument(
        "--projector", help="a vision model's projector GGUF (mmproj, as `slm convert --mmproj` writes)"
    )


def run(args: argparse.Namespace) -> int:
    """Import works on the store directly (no server needed), like `ollama create` from a file."""
    from pathlib import Path

    from slmkit.config import Config
    from slmkit.store import ModelStore

    params = _parameters(args.parameter)
    store = ModelStore(Config.from_env().models)
    source = Path(args.file)
    if source.is_dir():
        if args.projector:
            raise InvalidRequest("--projector: an ONNX model folder takes no projector")
        record = store.import_folder(args.name, source, system=args.system, params=params)
    else:
        projector = Path(args.projector) if args.projector else None
        record = store.import_gguf(args.name, source, system=args.system, params=params, projector=projector)
    if args.json:
        print_json({"name": record.name.display, "digest": record.digest, "size": record.size})
    else:
        print(f"imported '{record.name.display}' ({human_size(record.size)})")
    return 0


def _parameters(pairs: list[list[str]]) -> dict[str, object]:
    """``--parameter KEY VALUE`` pairs as a params layer (Ollama's PARAMETER lines), checked
    against the one parameter table."""
    from slmkit.answer import parameters

    params: dict[str, object] = {}
    for key, raw in pairs:
        parameters.add_line(params, key, raw, "--parameter ")
    return params
