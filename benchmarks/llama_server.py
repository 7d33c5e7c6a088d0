"""llama.cpp's own `llama-server`, built from the vendored llama.cpp of the pinned llama-cpp-python.

The binary is cached outside the repository (``$XDG_CACHE_HOME/slmkit-bench/``, else
``~/.cache/slmkit-bench/``), one build per llama-cpp-python version, so the comparison always runs
the very llama.cpp that slmkit's worker loads. The first build takes ~10-20 minutes on 2 cores.

    python benchmarks/llama_server.py          # build (or find) it and print its path
"""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slmkit-bench"


def binary() -> Path:
    """The cached llama-server for the installed llama-cpp-python, built on first use from the
    same llama.cpp tree `slm convert` uses (slmkit.optimize.llamacpp.source)."""
    from slmkit.config import Config
    from slmkit.optimize.llamacpp import source as llama_cpp_tree

    version = metadata.version("llama-cpp-python")
    root = cache_dir() / f"llama-server-{version}"
    exe = root / "build" / "bin" / "llama-server"
    if exe.is_file():
        return exe
    config = Config.from_env()
    tree = llama_cpp_tree(config.llama_cpp, config.cache)
    build = root / "build"
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        [
            "cmake", "-S", str(tree), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=ON", "-DBUILD_SHARED_LIBS=OFF",
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True)
    return exe


if __name__ == "__main__":
    print(binary())
