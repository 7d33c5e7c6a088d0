"""`slm deploy docker|compose|k8s --model M`: write deployment files for a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmkit.cli.output import print_json


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("target", choices=["docker", "compose", "k8s"])
    cmd.add_argument("--model", default="smollm2:135m", help="model to serve (catalog or local store)")
    cmd.add_argument("--replicas", type=int, default=1)
    cmd.add_argument("--ctx", type=int, default=4096, help="context per slot (sizes memory)")
    cmd.add_argument("--parallel", type=int, default=4, help="slots per replica (sizes memory)")
    cmd.add_argument("--threads", type=int, default=2, help="CPU threads per replica")
    cmd.add_argument("--image", help="container image (default: slmkit:VERSION)")
    cmd.add_argument("--host", default="slmkit.example.com", help="Ingress host (k8s)")
    cmd.add_argument("--out", help="output folder (default: deploy-TARGET)")
    cmd.add_argument("--init-secrets", action="store_true", help="compose: also create secrets/ (keys)")


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
