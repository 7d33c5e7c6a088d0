"""`slm run MODEL [PROMPT]`: stream one answer, or chat until /bye. As in `ollama run`, a
word of the prompt that is the path of an image file (.png, .jpg, .jpeg, .webp, .gif) attaches
that image for a vision model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from slmkit.cli.connect import ensure_server
from slmkit.client import Client
from slmkit.results import Completion


def _answer(client: Client, args: argparse.Namespace, messages: list[dict[str, Any]]) -> Completion | None:
    done: Completion | None = None
    for chunk in client.chat(args.model, messages, stream=True, keep_alive=args.keepalive):
        if chunk.text and not args.json:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        done = chunk.done or done
    if not args.json:
        sys.stdout.write("\n")
    return done


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def _message(text: str) -> dict[str, Any]:
    """A user message; the words that name image files become its images."""
    import base64
    from pathlib import Path

    words, images = [], []
    for word in text.split():
        path = Path(word.strip("'\"")).expanduser()
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.append(base64.b64encode(path.read_bytes()).decode())
            print(f"Added image '{path}'", file=sys.stderr)
        else:
            words.append(word)
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": " ".join(words), "images": images}


def _timings(done: Completion) -> None:
    print(
        f"prompt: {done.prompt_tokens} tokens in {done.prompt_eval_seconds:.3f}s, "
        f"output: {done.completion_tokens} tokens in {done.eval_seconds:.3f}s "
        f"({done.tokens_per_second:.1f} tok/s), load {done.load_seconds:.3f}s",
        file=sys.stderr,
    )


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model")
    cmd.add_argument("prompt", nargs="*", help="answer this prompt and exit (else: interactive chat)")
    cmd.add_argument("--system", help="system prompt")
    cmd.add_argument("--keepalive", help="how long to keep the model loaded (e.g. 5m)")
    cmd.add_argument("--verbose", action="store_true", help="print timings after the answer")


def run(args: argparse.Namespace) -> int:
    client = ensure_server()
    client.show(args.model)  # "unknown model" before anything else
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    prompt = " ".join(args.prompt)
    if prompt or (not sys.stdin.isatty() and not args.prompt):
        if not prompt:
            prompt = sys.stdin.read()
        done = _answer(client, args, [*messages, _message(prompt)])
        if args.json and done is not None:
            from dataclasses import asdict

            from slmkit.cli.output import print_json

            print_json(asdict(done))
        elif args.verbose and done is not None:
            _timings(done)
        return 0
    return _interactive(client, args, messages)


def _interactive(client: Client, args: argparse.Namespace, messages: list[dict[str, Any]]) -> int:
    print("Type a message; /bye to leave, /clear to start over.", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text in {"/bye", "/exit", "/quit"}:
            return 0
        if text == "/clear":
            messages = [m for m in messages if m["role"] == "system"]
            continue
        messages.append(_message(text))
        done = _answer(client, args, messages)
        if done is not None:
            messages.append({"role": "assistant", "content": done.text})
            if args.verbose:
                _timings(done)
