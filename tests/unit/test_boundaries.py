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
        "import slmkit.engine.runner, slmkit.engine.manager, slmkit.client",
        "from slmkit.cli.main import build_parser; build_parser().format_help()",
    ],
)
def test_no_llama_cpp_import(code: str) -> None:
    check = f"{code}; import sys; assert 'llama_cpp' not in sys.modules, 'llama_cpp imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_only_the_backend_imports_llama_cpp() -> None:
    pattern = re.compile(r"^\s*(import|from) llama_cpp\b", re.MULTILINE)
    importers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if pattern.search(p.read_text()))
    # llama.py serves (inside worker processes); llama_offline.py quantizes and scores for the
    # CLI's `quantize` and `eval`, never imported by the server (see the test above).
    assert importers == ["engine/llama.py", "engine/llama_offline.py"]


def test_only_config_reads_the_environment() -> None:
    readers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "os.environ" in p.read_text())
    assert readers == ["cli/connect.py", "config.py"]  # connect.py only passes it to a child


def test_digests_become_paths_in_one_place() -> None:
    joins = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if 'replace(":", "-")' in p.read_text())
    assert joins == ["store/blobs.py"]
