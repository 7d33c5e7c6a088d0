"""`slm catalog`: the catalog of small language models."""

from __future__ import annotations

import argparse

from slmkit.cli.choose import add_context, context_tokens
from slmkit.cli.output import print_json, table
from slmkit.units import human


def arguments(cmd: argparse.ArgumentParser) -> None:
    add_context(cmd)
    cmd.add_argument("--tier", choices=["micro", "small", "medium"])
    cmd.add_argument("--fits", action="store_true", help="only models that fit this machine")


def run(args: argparse.Namespace) -> int:
    from slmkit.hardware import probe
    from slmkit.optimize.catalog import load_catalog, params_label
    from slmkit.optimize.sizing import fit_catalog

    machine = probe()
    rows, data = [], []
    for m in load_catalog().models:
        if args.tier and m.tier != args.tier:
            continue
        fit = fit_catalog(m, machine, n_ctx=context_tokens(args))
        if args.fits and not fit.fits_ram:
            continue
        entry = m.model_dump() | {"tier": m.tier, "default_quant": fit.quant, "fit": fit.to_json()["bytes"]}
        entry["fits"] = fit.fits_ram
        data.append(entry)
        rows.append(
            [
                m.id,
                params_label(m.params) + (f" (A{params_label(m.active_params)})" if m.active_params else ""),
                m.tier if m.task == "chat" else f"{m.tier} ({m.task})",
                m.arch,
                f"{m.context // 1024}K",
                m.license,
                ", ".join(m.quants),
                f"{human(fit.estimate.required)} @{fit.quant}",
                "yes" if fit.fits_ram else "no",
            ]
        )
    if args.json:
        print_json(data)
    else:
        table(["ID", "PARAMS", "TIER", "ARCH", "CONTEXT", "LICENSE", "QUANTS", "MEMORY", "FITS"], rows)
    return 0
