"""Architectural walls: the API process and the CLI never import llama_cpp."""

from __future__ import annotations

import ast
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
    # llama.py and onnx.py serve (inside worker processes), opening models through
    # llama_open.py; llama_offline.py quantizes and
    # scores for the CLI's `quantize` and `eval`, never imported by the server (see the test
    # above). media.py is llama.py's vision projector (libmtmd), in the same worker. The ONNX
    # builder runs in a child process (optimize/convert_onnx.py).
    assert importers == [
        "engine/backends/llama.py",
        "engine/backends/llama_offline.py",
        "engine/backends/llama_open.py",
        "engine/backends/media.py",
        "engine/backends/onnx.py",
    ]
    assert all(name.startswith("engine/backends/") for name in importers)


def test_the_api_process_never_imports_worker_code() -> None:
    code = (
        "import sys, pkgutil, importlib, slmkit.server as s\n"
        "from slmkit.server.app import create_app; create_app(preload=False)\n"
        "for m in pkgutil.walk_packages(s.__path__, 'slmkit.server.'): importlib.import_module(m.name)\n"
        "import slmkit.answer.generation, slmkit.models.runner, slmkit.models.upstream, slmkit.formats\n"
        "from slmkit.formats import formats; formats()\n"
        "bad = [m for m in sys.modules if m.startswith('slmkit.engine')]\n"
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


# -- the process boundary is the folder boundary (docs/architecture.md) -------------------------
# Shared by both processes: what crosses the pipe, and libraries with no process of their own.
SHARED = ("slmkit.pipe", "slmkit.errors", "slmkit.hardware", "slmkit.template", "slmkit.gotemplate")
API_SIDE = ("answer", "models", "formats", "server", "batch", "store")  # the API process's packages


def _imports(path: Path) -> set[str]:
    """Every slmkit module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "slmkit" or name.startswith("slmkit.")}


def _importers(folders: tuple[str, ...], target: str) -> set[tuple[str, str]]:
    """(file, module) for each import of ``target`` (a module or package) under ``folders``."""
    hits = set()
    for folder in folders:
        for path in (SRC / folder).rglob("*.py"):
            for name in _imports(path):
                if name == target or name.startswith(target + "."):
                    hits.add((str(path.relative_to(SRC)), name))
    return hits


def test_the_worker_package_imports_only_itself_and_what_both_sides_share() -> None:
    """engine/ runs in the worker process: nothing from the API side, the server or the store
    (its backends included); LoadSpec and the messages come through pipe.py."""
    bad = sorted(
        (str(path.relative_to(SRC)), name)
        for path in (SRC / "engine").rglob("*.py")
        for name in _imports(path)
        if not name.startswith("slmkit.engine") and not name.startswith(SHARED) and name != "slmkit"
    )
    assert bad == []


def test_the_api_side_never_imports_worker_code() -> None:
    """Only the worker's entry point (imported in the child) and the CLI's in-process scorers
    (formats/, called by `slm eval` and `slm quantize`, never by the server) reach engine/."""
    allowed = {
        ("models/runner.py", "slmkit.engine.worker"),
        ("models/runner.py", "slmkit.engine.worker.worker_main"),
        ("formats/gguf.py", "slmkit.engine.backends.llama_offline"),
        ("formats/gguf.py", "slmkit.engine.backends.llama_offline.Scorer"),
        ("formats/onnx.py", "slmkit.engine.backends.onnx"),
        ("formats/onnx.py", "slmkit.engine.backends.onnx.OnnxScorer"),
    }
    assert _importers(API_SIDE, "slmkit.engine") == allowed


def test_the_cli_imports_no_server_internals() -> None:
    """`slm serve` and `slm batch` start the app; every other command talks HTTP (client.py)
    or works on the store."""
    assert {name for _, name in _importers(("cli",), "slmkit.server")} == {
        "slmkit.server.app",
        "slmkit.server.app.create_app",
        "slmkit.server.runtime",
        "slmkit.server.runtime.run",
    }


FAMILIES = ("openai", "responses", "batches", "anthropic", "ollama", "tokenizer", "rerank")


def test_the_server_root_imports_no_endpoint_family() -> None:
    """Families register their routes and error bodies (server/family.py); only the
    composition root, app.py, names them."""
    root = [path for path in (SRC / "server").glob("*.py") if path.name != "app.py"]
    bad = sorted(
        (path.name, name)
        for path in root
        for name in _imports(path)
        if name.startswith(tuple(f"slmkit.server.{family}" for family in FAMILIES))
    )
    assert bad == []


def test_every_family_has_the_same_shape() -> None:
    for family in FAMILIES:
        files = {path.name for path in (SRC / "server" / family).glob("*.py")}
        assert {"__init__.py", "protocol.py", "router.py"} <= files, family
        assert "def family() -> Family" in (SRC / "server" / family / "__init__.py").read_text()


def test_only_formats_ask_which_format_a_model_is() -> None:
    """formats/ is the seam: nothing else branches on the manifest's format or a folder's files."""
    pattern = re.compile(r"model_format\s*[=!]=|\b(record|base|profile\.record)\.files\b|onnx_folder")
    askers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if pattern.search(path.read_text())
        and not str(path.relative_to(SRC)).startswith(("formats/", "store/"))
    )
    assert askers == ["optimize/convert_onnx.py"]  # it builds a folder and passes it through the gate


def test_exceptions_live_in_errors_py() -> None:
    tree_names = {
        node.name
        for node in ast.walk(ast.parse((SRC / "errors.py").read_text()))
        if isinstance(node, ast.ClassDef)
    }
    tree_names |= {"Exception", "BaseException", "ValueError", "RuntimeError", "OSError", "KeyError"}
    outside = sorted(
        f"{path.relative_to(SRC)}:{node.name}"
        for path in SRC.rglob("*.py")
        if path.name != "errors.py" or path.parent != SRC
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(
            (b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")) in tree_names for b in node.bases
        )
    )
    assert outside == []
