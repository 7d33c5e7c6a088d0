"""Hugging Face folder -> ONNX Runtime GenAI folder, with onnxruntime-genai's model builder.

The builder runs in a child process (it imports torch and transformers, and prints a lot);
its output goes to a temp folder beside the target that is renamed into place only when the
result passes the same gate every ONNX folder passes before the store (store/onnx_folder.py),
so a failed or interrupted conversion leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from slmkit.errors import ConversionFailed, InvalidRequest
from slmkit.store.onnx_folder import folder_files

PRECISIONS = ("int4", "int8", "fp16", "fp32")
DEVICES = ("cpu", "cuda")
# what the builder accepts (its "valid precision + execution provider combinations")
VALID = {("int4", "cpu"), ("int8", "cpu"), ("fp32", "cpu"), ("int4", "cuda"), ("int8", "cuda")} | {
    ("fp16", "cuda"),
    ("fp32", "cuda"),
}
TIMEOUT = 6 * 3600  # seconds: a 30B model's int4 build on a small CPU machine is slow


def check_arguments(folder: Path, precision: str, device: str) -> str:
    """Refuse what the builder would refuse, before it loads a model; returns the
    architecture named by config.json."""
    if precision not in PRECISIONS:
        raise InvalidRequest(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if device not in DEVICES:
        raise InvalidRequest(f"--device: {device!r} is not one of {', '.join(DEVICES)}")
    if (precision, device) not in VALID:
        raise InvalidRequest(
            f"--precision {precision} needs --device cuda (the builder makes it for GPUs only)"
        )
    if not folder.is_dir():
        raise InvalidRequest("the model folder does not exist or is not a folder")
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("the model folder has no readable config.json") from exc
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise InvalidRequest('config.json names no architecture ("architectures": [...ForCausalLM])')
    if not (folder / "tokenizer.json").is_file():
        raise InvalidRequest("the model folder has no tokenizer.json")
    return architectures[0]


def convert_onnx(folder: Path, out: Path, precision: str, device: str = "cpu") -> dict[str, Path]:
    """Build ``out`` (a new folder) from the HF model ``folder``; returns its checked files."""
    check_arguments(folder, precision, device)
    if out.exists():
        raise InvalidRequest("the output folder already exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".partial-onnx-", dir=out.parent))
    try:
        command = [
            sys.executable, "-m", "onnxruntime_genai.models.builder",
            "-i", str(folder), "-o", str(stage / "model"), "-p", precision, "-e", device,
            "-c", str(stage / "cache"),
            "--extra_options", "include_hidden_states=true",  # the final norm's output: embeddings
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ConversionFailed(f"the ONNX builder ran past {TIMEOUT} s") from exc
        if done.returncode != 0:
            raise ConversionFailed(f"the ONNX builder failed: {_tail(done.stderr or done.stdout)}")
        files = folder_files(stage / "model")  # the gate every ONNX folder passes
        stage.joinpath("model").rename(out)
        return {name: out / name for name in files}
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _tail(log: str) -> str:
    """The builder's last meaningful line, without paths or progress bars."""
    lines = [line.strip() for line in log.replace("\r", "\n").splitlines() if line.strip()]
    if not lines:
        return "no output"
    if "No module named" in log:
        found = re.search(r"No module named '([^']+)'", log)
        return f"a module is missing ({found.group(1) if found else '?'}): pip install 'slmkit[onnx]'"
    return re.sub(r"(/[^\s:'\"]+)+", "<path>", lines[-1])[:300]
