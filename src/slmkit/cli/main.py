"""`slm` entry point: builds the argument parser, then imports only the chosen command.

`slm --help` must stay fast and must not import llama_cpp (STYLE.md, principle 12).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

# command -> (module under slmkit.cli, one-line help). Each module has ``arguments(cmd)``
# and ``run(args)``, and imports anything heavy inside ``run``.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "start the API server (OpenAI + Ollama compatible)"),
    "run": ("run", "chat with a model, or answer one prompt"),
    "pull": ("pull", "download a model from a registry or Hugging Face"),
    "create": ("create", "create a model from a Modelfile"),
    "list": ("list", "list models in the store"),
    "show": ("show", "show a model's details, Modelfile, parameters, template"),
    "ps": ("ps", "list loaded models"),
    "rm": ("rm", "remove models from the store"),
    "cp": ("cp", "copy a model under a new name"),
    "stop": ("stop", "unload a running model"),
    "import": ("import_", "import a local GGUF file as a model"),
    "verify": ("verify", "re-hash models' files and report corruption"),
    "keys": ("keys", "create, list and revoke API keys"),
    "catalog": ("catalog", "list the catalog of small language models (--tier, --fits)"),
    "fit": ("fit", "estimate a model's memory and check it against this machine"),
    "recommend": ("recommend", "rank the catalog's models and quants that fit this machine"),
    "quantize": ("quantize", "quantize a model (or sweep types), measure it, store it if it passes"),
    "convert": (
        "convert",
        "convert a Hugging Face model or LoRA folder to GGUF (llama.cpp's converter) or ONNX",
    ),
    "eval": ("eval", "perplexity, KL divergence, multiple choice and golden tests of a model"),
    "batch": ("batch", "answer a JSONL file of requests (resumable), against a server or slm://MODEL"),
    "deploy": ("deploy", "write Docker, Compose or Kubernetes files for a model"),
    "bench": ("bench", "benchmark models and servers side by side (or: bench compare A.json B.json)"),
    "version": ("version", "show client and server versions"),
    "config": ("config", "show every SLM_* setting, its value and meaning"),
}


def _module(command: str) -> ModuleType:
    return importlib.import_module(f"slmkit.cli.{COMMANDS[command][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) one command's arguments and the others' names: what
    ``slm COMMAND ...`` needs, importing just that command's module."""
    parser = argparse.ArgumentParser(prog="slm", description="Run and serve small language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}
    for name, (_, text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
        if only is None or name == only:
            _module(name).arguments(cmd)
        commands[name] = cmd
    parser.set_defaults(_commands=commands)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse; an option the command does not have is reported with the command's usage and
    the nearest option it does have."""
    import difflib

    args, extra = parser.parse_known_args(argv)
    if extra and args.command:
        cmd: argparse.ArgumentParser = args._commands[args.command]
        known = [o for action in cmd._actions for o in action.option_strings]
        flag = next((e.split("=", 1)[0] for e in extra if e.startswith("-")), "")
        near = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) if flag else []
        hint = f" (did you mean {near[0]}?)" if near else ""
        cmd.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(first if first in COMMANDS else "")
    if first and first not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(first, list(COMMANDS), n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]}?)" if near else ""
        parser.error(f"{first!r} is not a command{hint}; `slm --help` lists them")
    from slmkit.errors import SlmError

    try:
        args = _parse(parser, argv)
        if not args.command:
            parser.print_help()
            return 0
        code: int = _module(args.command).run(args)
        sys.stdout.flush()
        return code
    except SlmError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the ^C line
        return 130
    except BrokenPipeError:
        # `slm ... | head`: the reader left. Point stdout at /dev/null so that the interpreter's
        # last flush cannot complain either, and exit as a shell would on SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
