"""`slm convert`: a Hugging Face model folder to GGUF (llama.cpp's converter) or to an ONNX
Runtime GenAI folder (onnxruntime-genai's model builder), optionally stored as a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmkit.cli.output import human_size, print_json
from slmkit.errors import InvalidRequest
from slmkit.names import ModelName


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("folder", help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json)")
    cmd.add_argument("--to", default="gguf", choices=["gguf", "onnx"])
    cmd.add_argument("--outtype", default="f16", choices=["f16", "bf16", "q8_0", "f32"], help="GGUF only")
    cmd.add_argument(
        "--precision",
        default="int4",
        choices=["int4", "int8", "fp16", "fp32"],
        help="ONNX only (default int4)",
    )
    cmd.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="ONNX only: the execution provider to build for",
    )
    cmd.add_argument(
        "--out",
        help="output file, or folder for ONNX (default: FOLDER-OUTTYPE.gguf / FOLDER-onnx-PRECISION here)",
    )
    cmd.add_argument("--name", help="also store the result as this model (e.g. mymodel:f16)")


def run(args: argparse.Namespace) -> int:
    from slmkit.optimize.convert import convert

    if args.to == "onnx":
        return _to_onnx(args)
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


def _to_onnx(args: argparse.Namespace) -> int:
    from slmkit.optimize.convert_onnx import check_arguments, convert_onnx

    folder = Path(args.folder)
    check_arguments(folder, args.precision, args.device)  # before anything slow
    out = Path(args.out) if args.out else Path(f"{folder.resolve().name}-onnx-{args.precision}")
    files = convert_onnx(folder, out, args.precision, args.device)
    size = sum(path.stat().st_size for path in files.values())
    result: dict[str, object] = {"folder": str(out), "size": size, "precision": args.precision}
    if args.name:
        from importlib.metadata import version

        from slmkit.config import Config
        from slmkit.store import ModelStore

        store = ModelStore(Config.from_env().models)
        provenance = {
            "converted_from": folder.resolve().name,
            "precision": args.precision,
            "device": args.device,
            "tool": f"onnxruntime-genai {version('onnxruntime-genai')}",
        }
        record = store.import_folder(ModelName.parse(args.name), out, provenance=provenance)
        result["model"] = record.name.display
    if args.json:
        print_json(result)
    else:
        stored = f", stored as '{result['model']}'" if args.name else ""
        print(f"wrote {out} ({human_size(size)}, ONNX {args.precision}){stored}")
    return 0
