"""Architectural walls: the API process and the CLI never import llama_cpp."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "slmkit"


@pytest.mark.parametrize(
    "code",
    [
        "from slmkit.server.app import create_app; create_app(preload=False)",
        "import slmkit.models.runner, slmkit.models.manager, slmkit.client",
        "from slmkit.cli.main import build_parser; build_parser().format_help()",
    ],
)
def test_no_llama_cpp_import(code: str) -> None:
    check = f"{code}; import sys; assert 'llama_cpp' not in sys.modules, 'llama_cpp imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_only_backends_import_inference_libraries() -> None:
    pattern = re.compile(r"^\s*(import|from) (llama_cpp|onnxruntime_genai|onnxruntime)\b", re.MULTILINE)
    importers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if pattern.search(p.read_text()))
    # llama.py and onnx.py serve (inside worker processes); llama_offline.py quantizes and
    # scores for the CLI's `quantize` and `eval`, never imported by the server (see the test
    # above). The ONNX builder runs in a child process (optimize/convert_onnx.py).
    assert importers == [
        "engine/backends/llama.py",
        "engine/backends/llama_offline.py",
        "engine/backends/onnx.py",
    ]
    assert all(name.startswith("engine/backends/") for name in importers)


def test_the_api_process_never_imports_a_backend_module() -> None:
    code = (
        "import sys, pkgutil, importlib, slmkit.server as s\n"
        "from slmkit.server.app import create_app; create_app(preload=False)\n"
        "for m in pkgutil.walk_packages(s.__path__, 'slmkit.server.'): importlib.import_module(m.name)\n"
        "import slmkit.answer.generation, slmkit.models.runner, slmkit.models.upstream\n"
        "bad = [m for m in sys.modules if m.startswith('slmkit.engine.backends.')]\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_only_config_reads_the_environment() -> None:
    pattern = re.compile(r"os\.environ|os\.getenv|getenv\(")
    readers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if pattern.search(p.read_text()))
    assert readers == ["config.py"]


def test_errors_become_http_statuses_in_one_place() -> None:
    """Error statuses (4xx/5xx) are chosen only by server/errors.py's status_for; /ready's 503
    is a readiness report, not an error."""
    pattern = re.compile(r"status_code\s*=\s*(?:[45]\d\d)|HTTPException")
    server = SRC / "server"
    users = sorted(str(p.relative_to(SRC)) for p in server.rglob("*.py") if pattern.search(p.read_text()))
    assert users == ["server/app.py", "server/errors.py"]
    text = (server / "errors.py").read_text()
    assert "def status_for(" in text and "_STATUS" in text


def test_digests_become_paths_in_one_place() -> None:
    joins = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if 'replace(":", "-")' in p.read_text())
    assert joins == ["store/blobs.py"]
