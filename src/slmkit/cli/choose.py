"""`slm catalog`, `slm fit` and `slm recommend`: choose a model for this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmkit.cli.output import print_json, table
from slmkit.engine.memory import human
from slmkit.errors import NotFound


def run(args: argparse.Namespace) -> int:
    return {"catalog": _catalog, "fit": _fit, "recommend": _recommend}[args.command](args)


def _ctx(args: argparse.Namespace) -> int:
    from slmkit.config import Config

    return int(args.ctx or Config.from_env().context_length)


def _catalog(args: argparse.Namespace) -> int:
    from slmkit.optimize.catalog import load_catalog, params_label
    from slmkit.optimize.machine import probe
    from slmkit.optimize.sizing import fit_catalog

    machine = probe()
    rows, data = [], []
    for m in load_catalog().models:
        if args.tier and m.tier != args.tier:
            continue
        fit = fit_catalog(m, machine, n_ctx=_ctx(args))
        if args.fits and not fit.fits_ram:
            continue
        entry = m.model_dump() | {"tier": m.tier, "default_quant": fit.quant, "fit": fit.to_json()["bytes"]}
        entry["fits"] = fit.fits_ram
        data.append(entry)
        rows.append(
            [
                m.id,
                params_label(m.params) + (f" (A{params_label(m.active_params)})" if m.active_params else ""),
                m.tier,
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


def _fit(args: argparse.Namespace) -> int:
    from slmkit.optimize.catalog import load_catalog
    from slmkit.optimize.machine import probe
    from slmkit.optimize.sizing import fit_catalog, fit_gguf

    machine = probe()
    opts = {"n_ctx": _ctx(args), "n_parallel": args.parallel, "kv_type": args.kv_type}
    path = Path(args.model)
    if path.is_file():
        fit = fit_gguf(path, path.name, machine, **opts)
    else:
        try:
            fit = fit_catalog(load_catalog().get(args.model), machine, quant=args.quant, **opts)
        except NotFound:
            from slmkit.config import Config
            from slmkit.store import ModelStore

            record = ModelStore(Config.from_env().models).get(args.model)
            fit = fit_gguf(record.model_path, record.name.display, machine, **opts)
    if args.json:
        print_json(fit.to_json())
        return 0
    est = fit.estimate
    print(
        f"{fit.model} ({fit.quant}, from the {fit.source}): context {est.n_ctx} x {est.n_parallel} "
        f"slot(s), KV cache {fit.kv_type}"
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
    print(f"Verdict: {verdict} in RAM ({human(est.required)} needed of {human(room)} available)")
    return 0 if fit.fits_ram else 2


def _recommend(args: argparse.Namespace) -> int:
    from slmkit.optimize.catalog import load_catalog, params_label
    from slmkit.optimize.machine import probe
    from slmkit.optimize.recommend import default_speed, recommend, speed_from_bench

    machine = probe()
    bench = Path(args.bench) if args.bench else Path("bench-results/results.json")
    speed = default_speed(machine)
    if args.bench or bench.is_file():
        speed = speed_from_bench(bench, _bench_weights, machine)
    found = recommend(
        load_catalog(),
        machine,
        speed,
        n_ctx=_ctx(args),
        parallel=args.parallel,
        min_tok_s=args.min_tok_s,
        kv_type=args.kv_type,
    )[: args.limit]
    if args.json:
        print_json({"speed_calibration": speed.calibrated_from, "candidates": [c.to_json() for c in found]})
        return 0
    if not found:
        print("Nothing in the catalog fits with these settings; try a smaller --ctx or --min-tok-s.")
        return 2
    rows = [
        [
            c.model.id,
            c.fit.quant,
            params_label(c.model.params),
            human(c.fit.estimate.required),
            f"{c.tok_s_per_user:.0f}" + ("" if c.gain_measured or args.parallel == 1 else "*"),
            f"{c.tok_s_total:.0f}",
            c.model.quants[c.fit.quant].pull,
        ]
        for c in found
    ]
    table(["MODEL", "QUANT", "PARAMS", "MEMORY", "TOK/S PER USER", "TOK/S TOTAL", "PULL"], rows)
    print(f"\nSpeeds are estimates (calibration: {speed.calibrated_from}); * = batching gain assumed.")
    return 0


def _bench_weights(label: str) -> int | None:
    """Bytes of weights of a `slm bench` target labelled slm://NAME, when NAME is local."""
    from slmkit.config import Config
    from slmkit.store import ModelStore
    from slmkit.store.gguf_info import read_info

    name = label.removeprefix("slm://")
    try:
        record = ModelStore(Config.from_env().models).get(name)
    except (NotFound, ValueError):
        return None
    return sum(read_info(record.model_path).tensor_bytes.values())
