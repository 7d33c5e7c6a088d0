"""`slm deploy docker|compose|k8s --model M`: write deployment files for a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmkit.cli.output import print_json


def run(args: argparse.Namespace) -> int:
    from slmkit.deploy.render import Plan, init_secrets, render, write

    plan = Plan(
        target=args.target,
        model=args.model,
        replicas=args.replicas,
        context=args.ctx,
        parallel=args.parallel,
        threads=args.threads,
        image=args.image or Plan.image,
        host=args.host,
    )
    out = Path(args.out or f"deploy-{args.target}")
    files = write(render(plan), out)
    secrets = init_secrets(out) if args.init_secrets else []
    if args.json:
        print_json({"files": [str(p) for p in files], "secrets": [str(p) for p in secrets]})
    else:
        print(f"wrote {len(files)} files to {out}/" + (f", {len(secrets)} secrets" if secrets else ""))
    return 0
