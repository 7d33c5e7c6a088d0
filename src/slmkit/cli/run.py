"""`slm run MODEL [PROMPT]`: stream one answer, or chat until /bye (cli/repl.py). As in
`ollama run`, a word of the prompt that is the path of an image file (.png, .jpg, .jpeg,
.webp, .gif) attaches that image for a vision model."""

from __future__ import annotations

import argparse
import io
import sys

from slmkit.cli.connect import ensure_server
from slmkit.cli.repl import EFFORTS, Session, Settings, interactive, terminal_reader


def _think(value: str) -> bool | str:
    low = value.lower()
    if low in EFFORTS:
        return low
    if low in {"true", "false"}:
        return low == "true"
    raise argparse.ArgumentTypeError(f"--think takes true, false, {', '.join(EFFORTS)}")


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model")
    cmd.add_argument("prompt", nargs="*", help="answer this prompt and exit (else: interactive chat)")
    cmd.add_argument("--system", help="system prompt")
    cmd.add_argument("--keepalive", help="how long to keep the model loaded (e.g. 5m)")
    cmd.add_argument("--format", choices=["json"], help="answer in JSON")
    cmd.add_argument(
        "--think", nargs="?", const=True, type=_think, metavar="LEVEL",
        help="let a thinking model reason (true, false, low, medium, high; alone: true)",
    )  # fmt: skip
    cmd.add_argument("--hidethinking", action="store_true", help="do not print the reasoning")
    cmd.add_argument("--nowordwrap", action="store_true", help="print answers as they come, unwrapped")
    cmd.add_argument("--verbose", action="store_true", help="print timings after each answer")


def run(args: argparse.Namespace) -> int:
    client = ensure_server()
    client.show(args.model)  # "unknown model" before anything else
    settings = Settings(
        model=args.model, system=args.system, format=args.format, think=args.think,
        hide_thinking=args.hidethinking, wordwrap=not args.nowordwrap, verbose=args.verbose,
        keep_alive=args.keepalive,
    )  # fmt: skip
    prompt = " ".join(args.prompt)
    if prompt or not sys.stdin.isatty():
        return _once(Session(client, settings, sys.stdout, sys.stderr), args, prompt)
    from slmkit.config import Config

    history = Config.from_env().models.parent / "history"
    return interactive(Session(client, settings, sys.stdout, sys.stderr), terminal_reader(history, settings))


def _once(session: Session, args: argparse.Namespace, prompt: str) -> int:
    """A prompt from the command line, else everything on stdin, answered once. Piped
    lines are one message (as `ollama run` reads a pipe)."""
    if not prompt:
        prompt = sys.stdin.read()
    if args.json:
        session.out = io.StringIO()  # only the JSON is printed
    done = session.ask(prompt)
    if done is None:
        return 1
    if args.json:
        from dataclasses import asdict

        from slmkit.cli.output import print_json

        print_json(asdict(done))
    return 0
