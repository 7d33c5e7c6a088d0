"""`slm convert`: a Hugging Face model folder to GGUF (llama.cpp's converter) or to an ONNX
Runtime GenAI folder (onnxruntime-genai's model builder), optionally stored as a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmkit.cli.output import human_size, print_json
from slmkit.errors import InvalidRequest
from slmkit.names import ModelName
from slmkit.optimize.llamacpp import OUTTYPES, PRE_TOKENIZERS


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "folder",
        nargs="?",
        help="Hugging Face model folder (config.json, weights, tokenizer), or a PEFT LoRA folder with --base",
    )
    cmd.add_argument("--to", default="gguf", choices=["gguf", "onnx"])
    cmd.add_argument("--outtype", default="f16", choices=list(OUTTYPES), help="GGUF only (default f16)")
    cmd.add_argument(
        "--pre-tokenizer",
        choices=list(PRE_TOKENIZERS),
        metavar="NAME",
        help="GGUF only: how a BPE vocabulary the converter does not recognise splits text "
        "(a vocabulary trained anew); one of llama.cpp's names, e.g. gpt-2, llama-bpe, qwen2",
    )
    cmd.add_argument(
        "--mmproj", action="store_true", help="GGUF only: the vision model's projector (mmproj) instead"
    )
    cmd.add_argument(
        "--base", help="FOLDER is a PEFT LoRA adapter; BASE is its base model's folder (GGUF adapter out)"
    )
    cmd.add_argument(
        "--list", action="store_true", help="list the architectures llama.cpp's converter converts"
    )
    cmd.add_argument(
        "--markdown", action="store_true", help="with --list: as docs/models.md's generated block"
    )
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
    from slmkit.config import Config
    from slmkit.optimize import llamacpp

    if args.list:
        return _list(_source(), args.json, args.markdown)
    if not args.folder:
        raise InvalidRequest("convert: a model folder is required (or --list)")
    if args.to == "onnx":
        return _to_onnx(args)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise InvalidRequest(f"{args.folder}: not a folder")
    root = _source()
    progress = sys.stderr  # the converter's own log: its progress
    kind = "lora" if args.base else "mmproj" if args.mmproj else args.outtype
    out = Path(args.out) if args.out else Path(f"{folder.resolve().name}-{kind}.gguf")
    if args.base:
        if args.name:
            raise InvalidRequest("--name: a LoRA adapter is not a model; use it with a Modelfile's ADAPTER")
        llamacpp.convert_lora(folder, Path(args.base), out, args.outtype, root=root, progress=progress)
    else:
        llamacpp.convert(
            folder, out, args.outtype, root=root, pre_tokenizer=args.pre_tokenizer, mmproj=args.mmproj,
            progress=progress,
        )  # fmt: skip
    result: dict[str, object] = {"file": str(out), "size": out.stat().st_size, "outtype": args.outtype}
    if args.name:
        from importlib.metadata import version

        from slmkit.store import ModelStore
        from slmkit.store.gguf_info import read_info

        store = ModelStore(Config.from_env().models)
        info = read_info(out)
        digest = store.blobs.write_file(out)
        provenance = {
            "converted_from": folder.resolve().name,
            "outtype": args.outtype,
            "tool": f"llama.cpp convert_hf_to_gguf.py (llama-cpp-python {version('llama-cpp-python')})",
        }
        record = store.create(ModelName.parse(args.name), digest, info, provenance=provenance)
        result["model"] = record.name.display
    if args.json:
        print_json(result)
    else:
        stored = f", stored as '{result['model']}'" if args.name else ""
        print(f"wrote {out} ({human_size(out.stat().st_size)}, {kind}){stored}")
    return 0


def _source() -> Path:
    from slmkit.config import Config
    from slmkit.optimize import llamacpp

    config = Config.from_env()
    return llamacpp.source(config.llama_cpp, config.cache)


def _list(root: Path, as_json: bool, markdown: bool = False) -> int:
    from slmkit.optimize.llamacpp import markdown_block, supported

    table = supported(root)
    if markdown:
        print(markdown_block(table), end="")
    elif as_json:
        print_json({"text": sorted(table.text), "mmproj": sorted(table.mmproj)})
    else:
        print(f"llama.cpp's converter ({root}) converts {len(table.text)} architectures:")
        print("\n".join(f"  {name}" for name in sorted(table.text)))
        print(f"and the projectors (--mmproj) of {len(table.mmproj)} vision/audio models:")
        print("\n".join(f"  {name}" for name in sorted(table.mmproj)))
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
