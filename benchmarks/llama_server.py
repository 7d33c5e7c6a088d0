"""llama.cpp's own `llama-server`, built from the vendored llama.cpp of the pinned llama-cpp-python.

The binary is cached outside the repository (``$XDG_CACHE_HOME/slmkit-bench/``, else
``~/.cache/slmkit-bench/``), one build per llama-cpp-python version, so the comparison always runs
the very llama.cpp that slmkit's worker loads. The first build takes ~10-20 minutes on 2 cores.

    python benchmarks/llama_server.py          # build (or find) it and print its path
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slmkit-bench"


def binary() -> Path:
    """The cached llama-server for the installed llama-cpp-python, built on first use."""
    version = metadata.version("llama-cpp-python")
    root = cache_dir() / f"llama-server-{version}"
    exe = root / "build" / "bin" / "llama-server"
    if exe.is_file():
        return exe
    source = root / "llama.cpp"
    if not (source / "CMakeLists.txt").is_file():
        _unpack(version, root)
    build = root / "build"
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        [
            "cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=ON", "-DBUILD_SHARED_LIBS=OFF",
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True)
    return exe


def _unpack(version: str, root: Path) -> None:
    """The sdist's vendor/llama.cpp tree, unpacked to ``root/llama.cpp`` (atomically)."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                f"llama-cpp-python=={version}", "-d", tmp,
            ],
            check=True,
        )  # fmt: skip
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(Path(tmp) / "llama.cpp", members=members, filter="data")
        shutil.rmtree(root / "llama.cpp", ignore_errors=True)
        (Path(tmp) / "llama.cpp").rename(root / "llama.cpp")


if __name__ == "__main__":
    print(binary())
