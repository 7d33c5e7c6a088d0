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
    if data.get("quality"):
        print("\n" + quality_text(data["quality"]), file=out)
    if data.get("provenance"):
        made = data["provenance"]
        lines = "\n".join(f"  {k}: {v}" for k, v in made.items() if v not in ("", None))
        print("\nProvenance\n" + lines, file=out)


def quality_text(card: dict[str, Any]) -> str:
    """A model card's measurements, a line each (store/cards.py)."""
    m = card.get("machine") or {}
    where = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    lines = [f"Quality (slm eval, {card.get('measured_at', '?')}, {where})"]
    if p := card.get("perplexity"):
        kld = f", KLD {p['kld']:.4f} vs {p.get('reference')}" if p.get("kld") is not None else ""
        lines.append(f"  perplexity      {p['ppl']:.2f} on {p.get('text')} (ctx {p.get('ctx')}){kld}")
    if mc := card.get("multiple_choice"):
        lines.append(f"  multiple choice {mc['accuracy']:.1%} of {mc['questions']}")
    if g := card.get("golden"):
        lines.append(f"  golden tests    {g['passed']}/{g['total']} ({g.get('suite')})")
    if j := card.get("json_schema"):
        lines.append(f"  JSON validity   {j['valid_rate']:.0%} of {j['cases']}")
    if t := card.get("tool_calls"):
        lines.append(f"  tool calls      {t['conformance_rate']:.0%} of {t['cases']} conform")
    if v := card.get("speed"):
        lines.append(f"  decode speed    {v['decode_tok_s']:.1f} tokens/s (one sequence, this machine)")
    return "\n".join(lines)
