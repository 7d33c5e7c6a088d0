"""llama.cpp's own converters (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``), taken
from the llama-cpp-python sdist slmkit pins, so a model converts with the very llama.cpp that
loads it.

The sdist's ``vendor/llama.cpp`` tree is unpacked once into the cache (SLM_CACHE, by default
``$XDG_CACHE_HOME/slmkit``, as ``llama.cpp-VERSION``); pip fetches the sdist
from its own cache or the package index. ``SLM_LLAMA_CPP`` names another llama.cpp tree
instead (an offline machine, a newer converter).

What stays ours: the checks that name what is wrong before anything slow starts (the missing
file, the architecture the converter does not know) and refuse what could run code (pickle
weights, a folder with Python code or an ``auto_map`` the converter's tokenizer loading would
trust; shared/reference/SECURITY.md V1), the child process whose progress is shown
and whose last error becomes the message, and the all-or-nothing write (a temp file beside the
target, renamed into place only when the converter succeeded and the result is a GGUF).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO

from slmkit.errors import ConversionFailed, InvalidRequest

OUTTYPES = ("f16", "bf16", "q8_0", "f32")  # the converter's; smaller types are `slm quantize`'s
LORA_OUTTYPES = ("f16", "bf16", "q8_0", "f32")
TIMEOUT = 6 * 3600  # seconds: a 30B model's conversion on a small CPU machine is slow
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # weights unpickled to read: they can run code
TOKENIZERS = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
# pre-tokenizers the converter can be told a BPE vocabulary uses when it does not recognise
# one (a vocabulary trained anew): the names llama.cpp's loader implements
PRE_TOKENIZERS = (
    "default", "gpt-2", "llama-bpe", "qwen2", "gpt-4o", "smollm", "roberta-bpe", "deepseek-llm",
    "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "command-r", "stablelm2", "olmo",
    "dbrx", "smaug-bpe", "poro-chat", "jina-v2-en", "viking", "jais", "tekken", "chameleon",
    "minerva-7b", "gpt3-finnish", "exaone", "bloom", "phi-2", "codeshell", "bailingmoe",
)  # fmt: skip


def source(configured: str, cache: Path) -> Path:
    """The llama.cpp tree whose converters run: ``configured`` (SLM_LLAMA_CPP) if set, else
    the pinned llama-cpp-python's vendored tree, unpacked into ``cache`` on first use."""
    if configured:
        root = Path(configured).expanduser()
        if not (root / "convert_hf_to_gguf.py").is_file():
            raise InvalidRequest(f"SLM_LLAMA_CPP: {configured} has no convert_hf_to_gguf.py")
        return root
    version = metadata.version("llama-cpp-python")
    root = cache / f"llama.cpp-{version}"
    if not (root / "convert_hf_to_gguf.py").is_file():
        unpack(version, root)
    return root


def unpack(version: str, root: Path) -> None:
    """The sdist's vendor/llama.cpp tree, unpacked to ``root`` (atomically: a half-unpacked
    tree is never found)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".unpack-") as tmp:
        done = subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                f"llama-cpp-python=={version}", "-d", tmp,
            ],
            capture_output=True, text=True,
        )  # fmt: skip
        found = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not found:
            raise ConversionFailed(
                f"could not fetch the llama-cpp-python {version} sdist (llama.cpp's converter) "
                f"from pip's cache or the package index; set SLM_LLAMA_CPP to a llama.cpp "
                f"checkout instead. pip said: {_last_line(done.stderr)}"
            )
        prefix = f"{found[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        tree = Path(tmp) / "llama.cpp"
        with tarfile.open(found[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and len(m.name) > len(prefix)]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(tree, members=members, filter="data")
        if not (tree / "convert_hf_to_gguf.py").is_file():
            raise ConversionFailed(f"the llama-cpp-python {version} sdist has no convert_hf_to_gguf.py")
        try:
            tree.rename(root)
        except OSError:
            if not (root / "convert_hf_to_gguf.py").is_file():  # not another process's win
                raise


@dataclass(frozen=True)
class Supported:
    """What a llama.cpp tree's converter converts: Hugging Face architecture -> its module,
    for text models and for multimodal projectors (``--mmproj``)."""

    text: Mapping[str, str]
    mmproj: Mapping[str, str]


@cache
def supported(root: Path) -> Supported:
    """Read from the converter's own tables (conversion/__init__.py), without importing it
    (that needs torch)."""
    tree = ast.parse((root / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    tables: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id in ("TEXT_MODEL_MAP", "MMPROJ_MODEL_MAP")
            and node.value is not None
        ):
            tables[node.target.id] = ast.literal_eval(node.value)
    if set(tables) != {"TEXT_MODEL_MAP", "MMPROJ_MODEL_MAP"}:
        raise ConversionFailed(f"{root}: conversion/__init__.py has no TEXT_MODEL_MAP / MMPROJ_MODEL_MAP")
    return Supported(tables["TEXT_MODEL_MAP"], tables["MMPROJ_MODEL_MAP"])


BEGIN = "<!-- begin: generated by `slm convert --list --markdown` from llama.cpp's converter; do not edit -->"
END = "<!-- end: generated -->"


def markdown_block(table: Supported) -> str:
    """docs/models.md's list of what converts, from the converter's own tables."""
    version = metadata.version("llama-cpp-python")

    def names(items: Mapping[str, str]) -> str:
        return ", ".join(f"`{name}`" for name in sorted(items))

    return (
        f"{BEGIN}\n"
        f"llama.cpp's converter of llama-cpp-python {version} converts **{len(table.text)} model classes** "
        "(config.json's `architectures[0]`):\n\n"
        f"{names(table.text)}\n\n"
        f"and the projectors (`--mmproj`) of **{len(table.mmproj)} multimodal model classes**:\n\n"
        f"{names(table.mmproj)}\n"
        f"{END}\n"
    )


def architecture(folder: Path, mmproj: bool = False) -> str:
    """The architecture the converter will pick, as it picks it: config.json's
    ``architectures[0]``, or for a multimodal model its ``text_config``'s (text) or
    ``vision_config``'s (``--mmproj``) where those name one; InvalidRequest naming what is
    missing."""
    config = folder / "config.json"
    if not config.is_file():
        raise InvalidRequest(
            f"{folder.name}: no config.json (a Hugging Face model folder has config.json, "
            "the weights (*.safetensors) and the tokenizer files)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequest(f"{folder.name}/config.json: not JSON ({e})") from None
    names = data.get("architectures") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise InvalidRequest(f"{folder.name}/config.json: no 'architectures' entry naming the model class")
    part = data.get("vision_config" if mmproj else "text_config")
    inner = part.get("architectures") if isinstance(part, dict) else None
    if isinstance(inner, list) and inner and isinstance(inner[0], str):
        return inner[0]
    return names[0]


def check_model_folder(folder: Path, root: Path, mmproj: bool = False) -> str:
    """Refuse what the converter would refuse after minutes of work; returns the architecture."""
    if not folder.is_dir():
        raise InvalidRequest(f"{folder}: not a folder")
    arch = architecture(folder, mmproj)
    table = supported(root).mmproj if mmproj else supported(root).text
    if arch not in table:
        what = "a multimodal projector (--mmproj)" if mmproj else "a GGUF"
        raise InvalidRequest(
            f"{folder.name}/config.json: architecture {arch!r} is not one llama.cpp's converter "
            f"turns into {what} (`slm convert --list` shows the {len(table)} it does)"
        )
    check_no_code(folder, weights="model")
    if not any((folder / name).is_file() for name in TOKENIZERS):
        raise InvalidRequest(f"{folder.name}: no tokenizer (tokenizer.json or tokenizer.model)")
    return arch


def check_no_code(folder: Path, weights: str | None) -> None:
    """Safetensors weights (named ``weights``; None: a folder read for its config only), and
    nothing that makes transformers run code: the converter loads some tokenizers with
    ``trust_remote_code=True``, and reads ``.bin`` weights by unpickling them."""
    if weights is not None and not next(folder.glob("*.safetensors"), None):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLES)
        if pickles:
            raise InvalidRequest(
                f"{folder.name}/{pickles[0]}: pickle weights are not read (unpickling can run code); "
                "save the model as safetensors first"
            )
        raise InvalidRequest(f"{folder.name}: no weights ({weights}.safetensors)")
    code = sorted(p.name for p in folder.glob("*.py"))
    if code:
        raise InvalidRequest(f"{folder.name}/{code[0]}: a folder with Python code is not converted")
    for name in ("config.json", "tokenizer_config.json", "adapter_config.json"):
        path = folder / name
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if '"auto_map"' in text:
            raise InvalidRequest(f"{folder.name}/{name}: 'auto_map' names remote code; it is not converted")


def check_adapter_folder(adapter: Path, base: Path) -> None:
    if not adapter.is_dir():
        raise InvalidRequest(f"{adapter}: not a folder")
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise InvalidRequest(f"{adapter.name}: no adapter_config.json (a PEFT LoRA adapter folder has one)")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("peft_type", "LORA")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise InvalidRequest(f"{adapter.name}/adapter_config.json: not a JSON object ({e})") from None
    if str(kind).upper() != "LORA":
        raise InvalidRequest(f"{adapter.name}/adapter_config.json: peft_type {kind!r} is not LORA")
    check_no_code(adapter, weights="adapter_model")
    if not base.is_dir() or not (base / "config.json").is_file():
        raise InvalidRequest(f"--base: {base} is not a Hugging Face model folder with a config.json")
    check_no_code(base, weights=None)


def convert(
    folder: Path,
    out: Path,
    outtype: str,
    *,
    root: Path,
    pre_tokenizer: str | None = None,
    mmproj: bool = False,
    progress: IO[str] | None = None,
) -> Path:
    """``folder`` (a Hugging Face model) -> the GGUF file ``out``, by llama.cpp's converter."""
    if outtype not in OUTTYPES:
        raise InvalidRequest(f"--outtype: {outtype!r} is not one of {', '.join(OUTTYPES)}")
    if pre_tokenizer is not None and pre_tokenizer not in PRE_TOKENIZERS:
        raise InvalidRequest(f"--pre-tokenizer: {pre_tokenizer!r} is not one of {', '.join(PRE_TOKENIZERS)}")
    check_model_folder(folder, root, mmproj)
    args = [str(folder), "--outtype", outtype] + (["--mmproj"] if mmproj else [])
    return _run("convert_hf_to_gguf.py", args, out, root, pre_tokenizer, progress)


def convert_lora(
    adapter: Path, base: Path, out: Path, outtype: str, *, root: Path, progress: IO[str] | None = None
) -> Path:
    """A PEFT LoRA adapter folder -> a GGUF adapter (Modelfile ``ADAPTER``), by llama.cpp's
    LoRA converter; ``base`` is the base model's folder (its config is what is read)."""
    if outtype not in LORA_OUTTYPES:
        raise InvalidRequest(f"--outtype: {outtype!r} is not one of {', '.join(LORA_OUTTYPES)}")
    check_adapter_folder(adapter, base)
    arch = architecture(base)
    if arch not in supported(root).text:
        raise InvalidRequest(f"--base: architecture {arch!r} is not one llama.cpp's converter supports")
    args = [str(adapter), "--base", str(base), "--outtype", outtype]
    return _run("convert_lora_to_gguf.py", args, out, root, None, progress)


def check_requirements() -> None:
    """The converter's own imports, named before a child process fails on them."""
    import importlib.util

    missing = [m for m in ("torch", "transformers", "sentencepiece") if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidRequest(
            f"slm convert needs {', '.join(missing)} (llama.cpp's converter imports them): "
            "pip install 'slmkit[convert]'"
        )


def _run(
    script: str,
    args: list[str],
    out: Path,
    root: Path,
    pre_tokenizer: str | None,
    progress: IO[str] | None,
) -> Path:
    check_requirements()
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    command = [
        sys.executable, "-u", "-m", "slmkit.optimize.converter", str(root), script,
        pre_tokenizer or "", *args, "--outfile", str(tmp),
    ]  # fmt: skip
    try:
        tail = _follow(command, progress)
        if tail is not None:
            hint = ""
            if "pre-tokenizer was not recognized" in tail:
                hint = " (a vocabulary trained anew: --pre-tokenizer names how it splits text, e.g. gpt-2)"
            raise ConversionFailed(f"llama.cpp's {script} failed: {tail}{hint}")
        with tmp.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ConversionFailed(f"llama.cpp's {script} wrote no GGUF")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _follow(command: Sequence[str], progress: IO[str] | None) -> str | None:
    """Run the converter, echoing its log to ``progress``; None when it succeeded, else the
    line that best says why it failed."""
    lines: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace",
    ) as child:  # fmt: skip
        assert child.stdout is not None
        try:
            for line in child.stdout:
                lines.append(line.rstrip("\n"))
                if progress is not None:
                    progress.write(line)
                    progress.flush()
            code = child.wait(timeout=TIMEOUT)
        except BaseException:
            child.kill()
            raise
    if code == 0:
        return None
    return _reason(list(lines)) or f"exit status {code}"


def _reason(lines: list[str]) -> str:
    """The converter's own words for its failure: the exception line of a traceback, else its
    last ERROR log line, else its last line."""
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "NotImplemented")) and " " not in head:
            return line.strip()
    for line in reversed(lines):
        if line.startswith("ERROR:"):
            return line.split(":", 2)[-1].strip()
    return _last_line("\n".join(lines))


def _last_line(text: str) -> str:
    rest = [line for line in text.strip().splitlines() if line.strip()]
    return rest[-1].strip() if rest else ""
