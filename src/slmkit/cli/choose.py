"""What `slm catalog`, `slm fit` and `slm recommend` share: sizing arguments."""

from __future__ import annotations

import argparse


def context_tokens(args: argparse.Namespace) -> int:
    from slmkit.config import Config

    return int(args.ctx or Config.from_env().context_length)


def add_context(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--ctx", type=int, help="context tokens per slot (default: SLM_CONTEXT_LENGTH)")


def add_slots(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--parallel", type=int, default=1, help="sequences served at once (KV slots)")
    cmd.add_argument("--kv-type", default="f16", choices=["f16", "q8_0", "q4_0", "f32"])
