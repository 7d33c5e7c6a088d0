"""`slm` entry point: builds the argument parser, then imports only the chosen command.

`slm --help` must stay fast and must not import llama_cpp (STYLE.md, principle 12).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module under slmkit.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "start the API server (OpenAI + Ollama compatible)"),
    "run": ("run", "chat with a model, or answer one prompt"),
    "pull": ("pull", "download a model from a registry or Hugging Face"),
    "create": ("create", "create a model from a Modelfile"),
    "list": ("models", "list models in the store"),
    "show": ("models", "show a model's details, Modelfile, parameters, template"),
    "ps": ("models", "list loaded models"),
    "rm": ("models", "remove models from the store"),
    "cp": ("models", "copy a model under a new name"),
    "stop": ("models", "unload a running model"),
    "import": ("models", "import a local GGUF file as a model"),
    "verify": ("models", "re-hash models' files and report corruption"),
    "keys": ("keys", "create, list and revoke API keys"),
    "catalog": ("choose", "list the catalog of small language models (--tier, --fits)"),
    "fit": ("choose", "estimate a model's memory and check it against this machine"),
    "recommend": ("choose", "rank the catalog's models and quants that fit this machine"),
    "quantize": ("quality", "quantize a model (or sweep types), measure it, store it if it passes"),
    "convert": ("convert", "convert a Hugging Face model folder to GGUF (llama, qwen2, qwen3, phi3)"),
    "eval": ("quality", "perplexity, KL divergence, multiple choice and golden tests of a model"),
    "deploy": ("deploy", "write Docker, Compose or Kubernetes files for a model"),
    "bench": ("bench", "benchmark models and servers side by side (or: bench compare A.json B.json)"),
    "version": ("info", "show client and server versions"),
    "config": ("info", "show every SLM_* setting, its value and meaning"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slm", description="Run and serve small language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
        _arguments(name, cmd)
    return parser


def _arguments(name: str, cmd: argparse.ArgumentParser) -> None:
    if name == "serve":
        cmd.add_argument("--host", help="address to bind, host[:port] (default: SLM_HOST)")
        cmd.add_argument("--no-preload", action="store_true", help="do not load the default model at start")
        cmd.add_argument(
            "--insecure", action="store_true", help="allow a non-loopback address without any API key"
        )
        cmd.add_argument("--tls-cert", help="TLS certificate (PEM), serves https (default: SLM_TLS_CERT)")
        cmd.add_argument("--tls-key", help="TLS private key (PEM) (default: SLM_TLS_KEY)")
    elif name == "bench":
        cmd.add_argument(
            "targets", nargs="*", help="slm://MODEL, an OpenAI or Ollama base URL; or: compare FILES"
        )
        cmd.add_argument("--model", help="model name for URL targets")
        cmd.add_argument("--api", choices=["auto", "openai", "ollama"], default="auto")
        cmd.add_argument("--api-key", help="key for URL targets")
        cmd.add_argument("--concurrency", default="1", help="comma-separated levels, e.g. 1,2,4,8")
        cmd.add_argument("--num-requests", type=int, default=8, help="per target and level")
        cmd.add_argument("--output-tokens", type=int, default=64)
        cmd.add_argument("--input-tokens", help="fixed prompt lengths, e.g. 128,512 (default: chat prompts)")
        cmd.add_argument("--rate", type=float, help="open loop: Poisson arrivals per second")
        cmd.add_argument(
            "--turns", type=int, default=1, help="multi-turn chats of this many turns (shared prefixes)"
        )
        cmd.add_argument(
            "--duration", type=float, help="seconds per target and level, instead of --num-requests"
        )
        cmd.add_argument("--slo-ttft", type=float, help="goodput: TTFT limit in seconds")
        cmd.add_argument("--slo-itl", type=float, help="goodput: inter-token latency limit in seconds")
        cmd.add_argument("--seed", type=int, default=0)
        cmd.add_argument("--out", default="bench-results", help="folder for JSON, Markdown and PNG charts")
    elif name in {"catalog", "fit", "recommend"}:
        cmd.add_argument("--ctx", type=int, help="context tokens per slot (default: SLM_CONTEXT_LENGTH)")
        if name == "catalog":
            cmd.add_argument("--tier", choices=["micro", "small", "medium"])
            cmd.add_argument("--fits", action="store_true", help="only models that fit this machine")
            return
        cmd.add_argument("--parallel", type=int, default=1, help="sequences served at once (KV slots)")
        cmd.add_argument("--kv-type", default="f16", choices=["f16", "q8_0", "q4_0", "f32"])
        if name == "fit":
            cmd.add_argument("model", help="catalog id (e.g. qwen3-4b), local model name, or a .gguf path")
            cmd.add_argument("--quant", help="quantization for catalog models (default: Q4_K_M)")
        else:
            cmd.add_argument("--min-tok-s", type=float, default=10.0, help="decode speed each user needs")
            cmd.add_argument("--bench", help="`slm bench` results.json to calibrate speeds")
            cmd.add_argument("--limit", type=int, default=15, help="how many to show")
    elif name == "deploy":
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
    elif name == "convert":
        cmd.add_argument(
            "folder", help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json)"
        )
        cmd.add_argument("--to", default="gguf", choices=["gguf"])
        cmd.add_argument("--outtype", default="f16", choices=["f16", "bf16", "q8_0", "f32"])
        cmd.add_argument("--out", help="output file (default: FOLDER-OUTTYPE.gguf here)")
        cmd.add_argument("--name", help="also store the result as this model (e.g. mymodel:f16)")
    elif name in {"quantize", "eval"}:
        cmd.add_argument("model", help="model in the store" + (" or a .gguf path" if name == "eval" else ""))
        cmd.add_argument("--file", help="text for perplexity (default: the built-in corpus)")
        cmd.add_argument("--ctx", type=int, default=512, help="perplexity window in tokens (default 512)")
        cmd.add_argument("--chunks", type=int, default=0, help="at most this many windows (default: all)")
        cmd.add_argument("--threads", type=int, default=0, help="CPU threads (default: physical cores)")
        cmd.add_argument("--out", help="folder for JSON results (and the sweep chart)")
        if name == "quantize":
            cmd.add_argument(
                "--to", required=True, help="type, or comma-separated types to sweep (Q4_K_M,Q8_0)"
            )
            cmd.add_argument("--name", help="name of the new model (default: NAME:TAG-TYPE)")
            cmd.add_argument("--imatrix", help="importance matrix from llama-imatrix (.gguf or .dat)")
            cmd.add_argument(
                "--allow-requantize", action="store_true", help="quantize an already quantized source"
            )
            cmd.add_argument(
                "--max-ppl-increase", help="refuse to store beyond this perplexity rise, e.g. 5%%"
            )
            cmd.add_argument("--no-eval", action="store_true", help="skip measuring (no quality gate)")
        else:
            cmd.add_argument("--reference", help="model to compare with: KL divergence and top-1 agreement")
            cmd.add_argument(
                "--mc", nargs="?", const="builtin", help="multiple-choice set (default: built-in)"
            )
            cmd.add_argument("--suite", help="golden tests YAML, or 'builtin'")
            cmd.add_argument("--min-pass", type=float, help="exit 1 when the suite's pass rate is below this")
    elif name == "keys":
        actions = cmd.add_subparsers(dest="action", metavar="ACTION", required=True)
        create = actions.add_parser("create", help="create a key and print it once")
        create.add_argument("--scope", choices=["inference", "admin", "metrics"], default="inference")
        create.add_argument("--name", help="a label to find the key by")
        create.add_argument("--rpm", type=int, help="requests per minute allowed")
        create.add_argument("--tpm", type=int, help="tokens (prompt + generated) per minute allowed")
        actions.add_parser("list", help="list keys (never their secrets)")
        revoke = actions.add_parser("revoke", help="revoke a key by id or name")
        revoke.add_argument("ref", help="key id or name")
        for sub in (create, actions.choices["list"], revoke):
            sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
    elif name == "run":
        cmd.add_argument("model")
        cmd.add_argument("prompt", nargs="*", help="answer this prompt and exit (else: interactive chat)")
        cmd.add_argument("--system", help="system prompt")
        cmd.add_argument("--keepalive", help="how long to keep the model loaded (e.g. 5m)")
        cmd.add_argument("--verbose", action="store_true", help="print timings after the answer")
    elif name == "pull":
        cmd.add_argument("model", help="e.g. smollm2:135m, host/ns/model:tag, hf.co/org/repo:Q4_K_M")
        cmd.add_argument("--insecure", action="store_true", help="use plain http to the registry")
        cmd.add_argument("--quiet", action="store_true", help="no progress bars")
        cmd.add_argument(
            "--local",
            action="store_true",
            help="pull straight into SLM_MODELS without a server (init containers)",
        )
    elif name == "create":
        cmd.add_argument("model", help="name of the new model")
        cmd.add_argument(
            "-f", "--file", default="Modelfile", help="path to the Modelfile (default: ./Modelfile)"
        )
        cmd.add_argument("--insecure", action="store_true", help="plain http if FROM must be pulled")
    elif name == "show":
        cmd.add_argument("model")
        group = cmd.add_mutually_exclusive_group()
        for flag in ("modelfile", "parameters", "template", "system"):
            group.add_argument(f"--{flag}", action="store_true", help=f"show only the {flag}")
    elif name in {"rm"}:
        cmd.add_argument("models", nargs="+")
    elif name == "cp":
        cmd.add_argument("source")
        cmd.add_argument("destination")
    elif name == "stop":
        cmd.add_argument("model")
    elif name == "verify":
        cmd.add_argument("models", nargs="*", help="models to check (default: all)")
    elif name == "import":
        cmd.add_argument("name", help="model name, e.g. mymodel:q4")
        cmd.add_argument("file", help="path to a .gguf file")
        cmd.add_argument(
            "--parameter",
            nargs=2,
            action="append",
            metavar=("KEY", "VALUE"),
            default=[],
            help="a default option (temperature, stop, num_predict, ...) or num_parallel; repeatable",
        )
        cmd.add_argument("--system", help="default system prompt")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    module = importlib.import_module(f"slmkit.cli.{COMMANDS[args.command][0]}")
    from slmkit.errors import SlmError

    try:
        code: int = module.run(args)
        return code
    except SlmError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
