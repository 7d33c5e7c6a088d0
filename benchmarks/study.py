"""Comparative study: slmkit vs llama-cpp-python's own server, same model, threads, prompts.

    .venv/bin/pip install sse-starlette starlette-context pydantic-settings   # llama_cpp.server's extras
    .venv/bin/python benchmarks/study.py [--model smollm2|gemma] [--concurrency 1,2,4,8]

Starts both servers on loopback (slmkit with SLM_NUM_PARALLEL=8; `python -m llama_cpp.server`
with --interrupt_requests False so a new request queues instead of cutting off the running
one), then runs `slm bench` on both OpenAI endpoints, interleaved, with fixed 32-token prompts
and 128 output tokens. Results (JSON, Markdown, PNG charts) go to
benchmarks/results/study-<model>/. Read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from common import free_port, start_server, wait_ready

RESULTS = Path(__file__).parent / "results"


def start_llama_cpp_server(model: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            "4096",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--interrupt_requests",
            "False",
            "--model_alias",
            "bench",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{url}/v1/models")
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--num-requests", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from serving import model_file

    from slmkit.store import ModelStore

    path = model_file(args.model)
    models = Path(tempfile.mkdtemp(prefix="slm-study-"))
    ModelStore(models).import_gguf("bench", path)
    slm, slm_url = start_server(models, args.threads, SLM_NUM_PARALLEL="8", SLM_DEFAULT_MODEL="bench")
    lcpp, lcpp_url = start_llama_cpp_server(path, args.threads)
    out = RESULTS / f"study-{args.model}"
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "slmkit",
                "bench",
                f"slmkit=openai+{slm_url}",
                f"llama_cpp.server=openai+{lcpp_url}",
                "--model",
                "bench",
                "--concurrency",
                args.concurrency,
                "--num-requests",
                str(args.num_requests),
                "--input-tokens",
                "32",
                "--output-tokens",
                "128",
                "--out",
                str(out),
            ],
            check=True,
            env={**os.environ, "SLM_MODELS": str(models)},
        )
    finally:
        for proc in (slm, lcpp):
            proc.terminate()
            proc.wait(30)
    machine = (
        f"{platform.machine()}, {psutil.cpu_count(logical=False)} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{args.threads} threads per server"
    )
    report = out / "report.md"
    report.write_text(
        report.read_text().replace(
            "# slm bench",
            f"# slmkit vs llama_cpp.server: {path.name}\n\nMachine: {machine}.\n\n# slm bench",
            1,
        )
    )
    print(report.read_text())


if __name__ == "__main__":
    main()
