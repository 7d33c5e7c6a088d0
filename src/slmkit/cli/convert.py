"""`slm convert`: a Hugging Face model folder to GGUF, optionally stored as a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmkit.cli.output import human_size, print_json
from slmkit.errors import InvalidRequest
from slmkit.names import ModelName


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("folder", help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json)")
    cmd.add_argument("--to", default="gguf", choices=["gguf"])
    cmd.add_argument("--outtype", default="f16", choices=["f16", "bf16", "q8_0", "f32"])
    cmd.add_argument("--out", help="output file (default: FOLDER-OUTTYPE.gguf here)")
    cmd.add_argument("--name", help="also store the result as this model (e.g. mymodel:f16)")


def run(args: argparse.Namespace) -> int:
    from slmkit.optimize.convert import convert

    if args.to != "gguf":
        raise InvalidRequest("--to: only gguf is supported")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise InvalidRequest(f"{args.folder}: not a folder")
    out = Path(args.out) if args.out else Path(f"{folder.resolve().name}-{args.outtype}.gguf")
    convert(folder, out, args.outtype)
    result: dict[str, object] = {"file": str(out), "size": out.stat().st_size, "outtype": args.outtype}
    if args.name:
        from importlib.metadata import version

        from slmkit.config import Config
        from slmkit.store import ModelStore
        from slmkit.store.gguf_info import read_info

        store = ModelStore(Config.from_env().models)
        info = read_info(out)
        digest = store.blobs.write_file(out)
        provenance = {
            "converted_from": folder.resolve().name,
            "outtype": args.outtype,
            "tool": f"gguf {version('gguf')}",
        }
        record = store.create(ModelName.parse(args.name), digest, info, provenance=provenance)
        result["model"] = record.name.display
    if args.json:
        print_json(result)
    else:
        stored = f", stored as '{result['model']}'" if args.name else ""
        print(f"wrote {out} ({human_size(out.stat().st_size)}, {args.outtype}){stored}")
    return 0
