"""`slm deploy docker|compose|k8s --model M`: write deployment files for a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from slmkit.cli.output import print_json

if TYPE_CHECKING:
    from slmkit.deploy.capacity import Capacity


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
    size = cmd.add_argument_group("capacity from measurement (sets replicas, autoscaling bounds, queue)")
    size.add_argument("--target-rps", type=float, help="requests per second to serve")
    size.add_argument("--target-tps", type=float, help="generated tokens per second to serve")
    size.add_argument("--bench", default="bench-results/results.json", help="`slm bench` results.json")
    size.add_argument("--bench-target", help="the bench target that measured the model (when several)")
    size.add_argument("--slo-ttft", type=float, help="p90 time to first token to stay within, seconds")


def run(args: argparse.Namespace) -> int:
    from slmkit.deploy.render import Plan, init_secrets, render, write

    capacity = _capacity(args) if args.target_rps is not None or args.target_tps is not None else None
    sized = {} if capacity is None else {
        "replicas": capacity.replicas, "max_replicas": capacity.max_replicas,
        "queue_threshold": capacity.queue_threshold,
    }  # fmt: skip
    plan = Plan(
        target=args.target,
        model=args.model,
        replicas=sized.get("replicas", args.replicas),
        context=args.ctx,
        parallel=args.parallel,
        threads=args.threads,
        image=args.image or Plan.image,
        host=args.host,
        max_replicas=sized.get("max_replicas"),
        queue_threshold=sized.get("queue_threshold", Plan.queue_threshold),
    )
    out = Path(args.out or f"deploy-{args.target}")
    files = write(render(plan), out)
    secrets = init_secrets(out) if args.init_secrets else []
    if args.json:
        report = {"files": [str(p) for p in files], "secrets": [str(p) for p in secrets]}
        print_json(report | ({"capacity": capacity.to_json()} if capacity else {}))
        return 0
    if capacity is not None:
        for line in capacity.reasoning:
            print(line)
    print(f"wrote {len(files)} files to {out}/" + (f", {len(secrets)} secrets" if secrets else ""))
    return 0


def _capacity(args: argparse.Namespace) -> Capacity:
    """Replicas and autoscaling from `slm bench` results (deploy/capacity.py)."""

    from slmkit.bench import report
    from slmkit.deploy.capacity import pick_target, plan_capacity

    missing = f"measure first: slm bench {args.model} --concurrency 1,4,8"
    results = report.read(Path(args.bench), "--bench", missing)
    target = pick_target(results, args.model, args.bench_target)
    return plan_capacity(
        results, target, rps=args.target_rps, tps=args.target_tps, parallel=args.parallel,
        threads=args.threads, slo_ttft=args.slo_ttft,
    )  # fmt: skip
