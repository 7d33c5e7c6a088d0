"""How many slmkit modules one request walks through in the API process, and how often it
comes back into a module it already left (re-entries): a measure of how tangled the request
path is. The worker is a stand-in (tests/unit/server/fakes.py), so only API-process code is
walked; every Python call into src/slmkit is recorded, in every thread.

    .venv/bin/python benchmarks/request_walk.py            # GGUF chat, ONNX chat, batch line
    .venv/bin/python benchmarks/request_walk.py --show     # and each walk, module by module

Walks: a streamed OpenAI chat on a GGUF model, the same on an ONNX folder model, and one
line of a /v1/batches job (from the runner taking it to its result written).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SRC = str(ROOT / "src" / "slmkit")


# Modules that run in the worker process in production (the stand-in worker runs them in the
# API process): not part of the walk. --worker-side changes it, to walk an older layout.
WORKER_SIDE = ["engine/"]


def _module(frame: Any) -> str | None:
    name = frame.f_code.co_filename
    if not name.startswith(SRC):
        return None
    rel = name[len(SRC) + 1 :]
    return None if rel.startswith(tuple(WORKER_SIDE)) else rel


class Walk:
    """While ``recording``: the API-process modules entered by threads other than the main
    one (the server's event loop and helper threads; the main thread only sends requests and
    waits), and each re-entry, a call into a module that is already on the call stack below
    another module (A -> B -> A), told apart by the chain of modules between. Installed
    before any of those threads start."""

    def __init__(self) -> None:
        self.modules: set[str] = set()
        self.reentries: set[tuple[str, ...]] = set()
        self.recording = False
        self._main = threading.main_thread()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if not self.recording or event != "call" or threading.current_thread() is self._main:
            return
        module = _module(frame)
        if module is None:
            return
        self.modules.add(module)
        stack: list[str] = []  # the modules below, nearest first, repeats collapsed
        below = frame.f_back
        while below is not None:
            m = _module(below)
            if m is not None and (not stack or stack[-1] != m):
                stack.append(m)
            below = below.f_back
        if stack and stack[0] != module and module in stack:
            self.reentries.add((*reversed(stack[: stack.index(module) + 1]), module))

    @contextmanager
    def record(self) -> Iterator[Walk]:
        self.modules, self.reentries, self.recording = set(), set(), True
        try:
            yield self
        finally:
            self.recording = False


def onnx_folder(root: Path) -> Path:
    """A minimal ONNX Runtime GenAI folder that passes the store's gate."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    root.mkdir(parents=True)
    tok.save(str(root / "tokenizer.json"))
    decoder = {"filename": "model.onnx", "num_hidden_layers": 2, "num_key_value_heads": 1, "head_size": 4,
               "hidden_size": 8, "num_attention_heads": 2}  # fmt: skip
    config = {"model": {"type": "llama", "vocab_size": 2, "context_length": 512, "eos_token_id": 0,
                        "decoder": decoder}}  # fmt: skip
    (root / "genai_config.json").write_text(json.dumps(config))
    (root / "model.onnx").write_bytes(b"a stand-in worker never reads it")
    return root


def measure(show: bool) -> dict[str, tuple[int, int]]:
    from fastapi.testclient import TestClient
    from tests.ggufs import write_tiny_gguf
    from tests.unit.server.fakes import FakeWorker

    from slmkit.config import Config
    from slmkit.server.app import create_app
    from slmkit.store import ModelStore

    walk = Walk()
    threading.setprofile(walk)  # every thread started from now on
    tmp = Path(tempfile.mkdtemp(prefix="slm-walk-"))
    config = Config.from_env({"SLM_MODELS": str(tmp / "models"), "SLM_DEFAULT_MODEL": "tiny:1"})
    store = ModelStore(config.models)
    store.import_gguf("tiny:1", write_tiny_gguf(tmp / "tiny.gguf"))
    store.import_folder("folder:1", onnx_folder(tmp / "cpu-int4"))

    class StandIn(FakeWorker):  # answers "Hello world" whatever the weights (an ONNX folder too)
        def _marked(self, marker: bytes) -> bool:
            return False

    app = create_app(config, store=store, worker_factory=StandIn, preload=False)
    out: dict[str, tuple[int, int]] = {}

    def record(label: str, run: Callable[[], None]) -> None:
        run()  # once to load the model and warm caches: the walk is a request's, not a load's
        with walk.record() as seen:
            run()
        out[label] = (len(seen.modules), len(seen.reentries))
        if show:
            print(f"\n{label}: {len(seen.modules)} modules\n  " + "\n  ".join(sorted(seen.modules)))
            for chain in sorted(seen.reentries):
                print("  re-entry: " + " -> ".join(chain))

    with TestClient(app, base_url="http://localhost") as client:

        def chat(model: str) -> Callable[[], None]:
            def run() -> None:
                body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
                with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    assert r.status_code == 200, r.read()
                    for _ in r.iter_lines():
                        pass

            return run

        record("streamed chat, GGUF", chat("tiny:1"))
        record("streamed chat, ONNX folder", chat("folder:1"))

        def batch_line() -> None:
            line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
            walk.recording = False  # the upload and the job's creation are not the line's walk
            upload = {"file": ("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n"))}
            f = client.post("/v1/files", data={"purpose": "batch"}, files=upload)
            body = {"input_file_id": f.json()["id"], "endpoint": "/v1/chat/completions"}
            jobs = app.state.slm.batches.jobs
            walk.recording = True
            job = client.post("/v1/batches", json=body).json()
            deadline = time.monotonic() + 60
            while jobs.get("", job["id"]).status != "completed":
                assert time.monotonic() < deadline, "the batch never completed"
                time.sleep(0.01)

        record("one batch line", batch_line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print each walk")
    parser.add_argument(
        "--worker-side", default="engine/", help="comma-separated path prefixes (default engine/)"
    )
    args = parser.parse_args()
    WORKER_SIDE[:] = args.worker_side.split(",")
    for label, (entered, again) in measure(args.show).items():
        print(f"{label:30s} modules entered {entered:3d}   re-entries {again:3d}")


if __name__ == "__main__":
    main()
