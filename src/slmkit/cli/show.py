"""`slm show`: a model's details, Modelfile, parameters, template or system prompt."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from slmkit.cli.connect import client
from slmkit.cli.output import print_json, table


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model")
    group = cmd.add_mutually_exclusive_group()
    for flag in ("modelfile", "parameters", "template", "system"):
        group.add_argument(f"--{flag}", action="store_true", help=f"show only the {flag}")


def run(args: argparse.Namespace) -> int:
    data = client().show(args.model)
    for flag in ("modelfile", "parameters", "template", "system"):
        if getattr(args, flag):
            print(data.get(flag, ""))
            return 0
    if args.json:
        print_json(data)
        return 0
    print_info(data, sys.stdout)
    return 0


def print_info(data: dict[str, Any], out: TextIO) -> None:
    """A model's details as `slm show` prints them (also `/show info` in `slm run`)."""
    d, info = data["details"], data["model_info"]
    arch = info.get("general.architecture", d["family"])
    rows = [
        ("architecture", arch),
        ("parameters", d["parameter_size"]),
        ("context length", str(info.get(f"{arch}.context_length", ""))),
        ("embedding length", str(info.get(f"{arch}.embedding_length", ""))),
        ("quantization", d["quantization_level"]),
        ("capabilities", ", ".join(data.get("capabilities", []))),
    ]
    table(("MODEL", ""), rows, out=out)
    if data.get("parameters"):
        print("\nParameters\n" + data["parameters"], file=out)
    if data.get("system"):
        print("\nSystem\n" + data["system"], file=out)
    if data.get("provenance"):
        made = data["provenance"]
        lines = "\n".join(f"  {k}: {v}" for k, v in made.items() if v not in ("", None))
        print("\nProvenance\n" + lines, file=out)
