"""`slm fit`: a model's memory estimate against this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from slmkit.cli.choose import add_context, add_slots, context_tokens
from slmkit.cli.output import print_json, table
from slmkit.errors import NotFound
from slmkit.units import human


def arguments(cmd: argparse.ArgumentParser) -> None:
    add_context(cmd)
    add_slots(cmd)
    cmd.add_argument(
        "--server", action="store_true",
        help="ask the running server (SLM_HOST) what loading MODEL would do there: its plan (POST /api/plan)",
    )  # fmt: skip
    cmd.add_argument(
        "model", help="a stored model (its own file is sized), a catalog id (e.g. qwen3-4b), or a .gguf path"
    )
    cmd.add_argument("--quant", help="quantization for catalog models (default: Q4_K_M; ONNX: int4)")
    cmd.add_argument(
        "--format",
        choices=["gguf", "onnx"],
        default="gguf",
        help="a catalog model's GGUF or ONNX Runtime build",
    )


def _neither(model: str) -> str:
    """What to say of a name that is neither a catalog id nor a stored model: the nearest ids."""
    import difflib

    from slmkit.optimize.catalog import load_catalog

    ids = [m.id for m in load_catalog().models]
    close = difflib.get_close_matches(model.lower(), ids, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `slm catalog` lists the catalog"
    return f"model {model!r} is neither in the catalog nor in the local store (`slm list`){hint}"


def _stored(name: str) -> Any:
    """The stored model of that name, or None (also for a name that is no model name)."""
    from slmkit.config import Config
    from slmkit.errors import InvalidRequest
    from slmkit.store import ModelStore

    try:
        return ModelStore(Config.from_env().models).get(name)
    except (NotFound, InvalidRequest):
        return None


def _server_plan(args: argparse.Namespace) -> int:
    """The running server's own plan (POST /api/plan): its budget, its settings, its loaded models."""
    from slmkit.cli.connect import client

    options = {"num_ctx": args.ctx, "num_parallel": args.parallel if "--parallel" in sys.argv else None}
    plan = client().plan(args.model, {k: v for k, v in options.items() if v is not None})
    if args.json:
        print_json(plan)
        return 0 if plan["fits"] else 2
    threads = f"{plan['threads']} ({'automatic' if plan['threads_automatic'] else 'SLM_NUM_THREADS'})"
    print(
        f"{plan['model']} on the server ({plan['backend']}): context {plan['context']} x "
        f"{plan['parallel']} slot(s), KV cache {plan['kv_cache_type']}, threads {threads}"
        + (" [already loaded]" if plan["loaded"] else "")
    )
    table(["PART", "SIZE"], [[k, human(v)] for k, v in plan["bytes"].items()])
    budget = plan["budget"]
    evicts = f"; it would unload {', '.join(plan['evicts'])}" if plan["evicts"] else ""
    wait = "" if plan["room_now"] else "; it would wait for busy models to finish"
    used = human(budget["used"])
    print(f"\nServer budget: {human(budget['bytes'])}, {used} used by other models{evicts}{wait}")
    verdict = "fits" if plan["fits"] else "does NOT fit"
    print(f"Verdict: {verdict} ({human(plan['bytes']['required'])} needed)")
    return 0 if plan["fits"] else 2


def run(args: argparse.Namespace) -> int:
    if args.server:
        return _server_plan(args)
    from slmkit.hardware import probe
    from slmkit.optimize.catalog import RUNTIMES, load_catalog
    from slmkit.optimize.sizing import SAFETY, fit_catalog, fit_catalog_onnx, fit_gguf, fit_stored

    machine = probe()
    opts = {"n_ctx": context_tokens(args), "n_parallel": args.parallel, "kv_type": args.kv_type}
    path = Path(args.model)
    stored = None if (args.quant or args.format == "onnx") else _stored(args.model)
    if path.is_file():
        fit = fit_gguf(path, path.name, machine, **opts)
    elif stored is not None:  # the file this machine would load, not the catalog's default build
        fit = fit_stored(stored, machine, **opts)
    else:
        try:
            entry = load_catalog().get(args.model)
            if args.format == "onnx":
                fit = fit_catalog_onnx(
                    entry, machine, precision=args.quant, n_ctx=opts["n_ctx"], n_parallel=opts["n_parallel"]
                )
            else:
                fit = fit_catalog(entry, machine, quant=args.quant, **opts)
        except NotFound:
            if (args.quant or args.format == "onnx") and _stored(args.model) is not None:
                raise NotFound(
                    f"{args.model}: --quant and --format size catalog builds; this is a stored model "
                    "(drop them to size its own file)"
                ) from None
            raise NotFound(_neither(args.model)) from None
    if args.json:
        print_json(fit.to_json())
        return 0
    est = fit.estimate
    print(
        f"{fit.model} ({fit.quant}, from the {fit.source}, {RUNTIMES[fit.fmt]}): context {est.n_ctx} x "
        f"{est.n_parallel} slot(s), KV cache {fit.kv_type}"
    )
    table(["PART", "SIZE"], [[k, human(v)] for k, v in est.parts().items()])
    room = machine.memory_for_models
    print(
        f"\nThis machine: {human(machine.memory_total)} RAM, {human(room)} available"
        + (f" (container limit {human(machine.cgroup_limit)})" if machine.cgroup_limit else "")
        + f", {machine.cores_physical} cores ({', '.join(machine.cpu_features[-4:]) or 'no SIMD flags'})"
    )
    for gpu, ok in zip(machine.gpus, fit.fits_gpu, strict=True):
        print(f"GPU {gpu.name}: {human(gpu.memory_free)} free: {'fits' if ok else 'does not fit'}")
    verdict = "fits" if fit.fits_ram else "does NOT fit"
    print(
        f"Verdict: {verdict} in RAM: {human(est.required)} needed, {human(fit.budget)} usable "
        f"({round(SAFETY * 100)}% of the {human(room)} available, leaving room for the rest of the machine)"
    )
    return 0 if fit.fits_ram else 2
