"""Model commands: list, show, ps, rm, cp, stop, import."""

from __future__ import annotations

import argparse

from slmkit.cli.connect import client
from slmkit.cli.output import ago, human_size, print_json, table


def run(args: argparse.Namespace) -> int:
    return {
        "list": _list,
        "show": _show,
        "ps": _ps,
        "rm": _rm,
        "cp": _cp,
        "stop": _stop,
        "import": _import,
        "verify": _verify,
    }[args.command](args)


def _list(args: argparse.Namespace) -> int:
    models = client().list()
    if args.json:
        print_json(models)
        return 0
    rows = [(m["name"], m["digest"][:12], human_size(m["size"]), ago(m["modified_at"])) for m in models]
    table(("NAME", "ID", "SIZE", "MODIFIED"), rows)
    return 0


def _show(args: argparse.Namespace) -> int:
    data = client().show(args.model)
    for flag in ("modelfile", "parameters", "template", "system"):
        if getattr(args, flag):
            print(data.get(flag, ""))
            return 0
    if args.json:
        print_json(data)
        return 0
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
    table(("MODEL", ""), rows)
    if data.get("parameters"):
        print("\nParameters\n" + data["parameters"])
    if data.get("system"):
        print("\nSystem\n" + data["system"])
    if data.get("provenance"):
        made = data["provenance"]
        print("\nProvenance\n" + "\n".join(f"  {k}: {v}" for k, v in made.items() if v not in ("", None)))
    return 0


def _ps(args: argparse.Namespace) -> int:
    models = client().ps()
    if args.json:
        print_json(models)
        return 0
    rows = [
        (
            m["name"],
            m["digest"][:12],
            human_size(m["size"]),
            "100% CPU",
            str(m.get("context_length", "")),
            str(m.get("num_parallel", "")),
            _until(m["expires_at"]),
        )
        for m in models
    ]
    table(("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "PARALLEL", "UNTIL"), rows)
    return 0


def _until(stamp: str) -> str:
    from datetime import UTC, datetime

    if stamp.startswith("9999"):
        return "Forever"
    try:
        seconds = (datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    except ValueError:
        return stamp
    return (
        f"{int(seconds // 60)} minutes from now"
        if seconds >= 60
        else f"{max(0, int(seconds))} seconds from now"
    )


def _rm(args: argparse.Namespace) -> int:
    c = client()
    for name in args.models:
        c.delete(name)
        if not args.json:
            print(f"deleted '{name}'")
    return 0


def _cp(args: argparse.Namespace) -> int:
    client().copy(args.source, args.destination)
    if not args.json:
        print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def _stop(args: argparse.Namespace) -> int:
    client().stop(args.model)
    return 0


def _parameters(pairs: list[list[str]]) -> dict[str, object]:
    """``--parameter KEY VALUE`` pairs as a params layer (Ollama's PARAMETER lines)."""
    from slmkit.errors import InvalidRequest
    from slmkit.server.ollama.protocol import SAMPLING_DEFAULTS, sampling_from_options

    params: dict[str, object] = {}
    for key, raw in pairs:
        if key not in SAMPLING_DEFAULTS and key != "num_parallel":
            raise InvalidRequest(f"--parameter {key}: unknown parameter")
        value: object = raw
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
        if key == "stop":
            params.setdefault("stop", [])
            params["stop"].append(raw)  # type: ignore[attr-defined]
        else:
            params[key] = value
    slots = params.get("num_parallel")
    if slots is not None and not (isinstance(slots, int) and 1 <= slots <= 64):
        raise InvalidRequest("--parameter num_parallel: must be an integer between 1 and 64")
    sampling_from_options({}, {k: v for k, v in params.items() if k != "num_parallel"})  # validates
    return params


def _import(args: argparse.Namespace) -> int:
    """Import works on the store directly (no server needed), like `ollama create` from a file."""
    from pathlib import Path

    from slmkit.config import Config
    from slmkit.store import ModelStore

    params = _parameters(args.parameter)
    store = ModelStore(Config.from_env().models)
    record = store.import_gguf(args.name, Path(args.file), system=args.system, params=params)
    if args.json:
        print_json({"name": record.name.display, "digest": record.digest, "size": record.size})
    else:
        print(f"imported '{record.name.display}' ({human_size(record.size)})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Re-hash blobs in the store directly (no server needed)."""
    from slmkit.config import Config
    from slmkit.store import ModelStore

    store = ModelStore(Config.from_env().models)
    names = args.models or [r.name.display for r in store.list()]
    report = {name: store.verify(name) for name in names}
    bad = {name: [p for _, p in rows if p] for name, rows in report.items()}
    if args.json:
        print_json([{"model": n, "ok": not bad[n], "problems": bad[n]} for n in names])
    else:
        for name in names:
            print(f"{name}: {'ok' if not bad[name] else 'CORRUPT - ' + '; '.join(bad[name])}")
    return 1 if any(bad.values()) else 0
