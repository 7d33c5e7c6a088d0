"""The child process that runs one of llama.cpp's converter scripts (optimize/llamacpp.py).

    python -m slmkit.optimize.converter ROOT SCRIPT PRE_TOKENIZER ARGS...

It puts the llama.cpp tree ROOT (and its gguf-py, newer than the gguf package slmkit reads
with) first on the import path and runs SCRIPT as ``__main__``. PRE_TOKENIZER, when not
empty, is the pre-tokenizer to record for a BPE vocabulary the converter does not recognise
(it knows vocabularies by the hash of one test sentence's tokens, so any vocabulary trained
anew is unknown to it); a recognised one keeps its own name.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> None:
    root, script, pre_tokenizer, *args = argv
    sys.path[:0] = [root, str(Path(root) / "gguf-py")]
    if pre_tokenizer:
        _state_pre_tokenizer(pre_tokenizer)
    sys.argv = [str(Path(root) / script), *args]
    runpy.run_path(sys.argv[0], run_name="__main__")


def _state_pre_tokenizer(name: str) -> None:
    from conversion import base  # type: ignore[import-not-found]  # the converter's, from ``root``

    recognise = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return str(recognise(self, tokenizer))
        except NotImplementedError:
            base.logger.info(f"pre-tokenizer not recognised; using the stated {name!r}")
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre


if __name__ == "__main__":
    main(sys.argv[1:])
