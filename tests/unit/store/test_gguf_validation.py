"""Every file of the malformed-GGUF corpus is refused; valid files still pass."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from slmkit.errors import InvalidModelFile
from slmkit.store import ModelStore
from slmkit.store.gguf_info import read_info
from tests.gguf_corpus import VALID, cases
from tests.ggufs import write_tiny_gguf

CASES = list(cases())


def test_the_builder_makes_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.gguf"
    path.write_bytes(VALID)
    info = read_info(path)
    assert info.architecture == "llama" and info.parameter_count == 8


def test_gguf_py_files_pass(tmp_path: Path) -> None:
    info = read_info(write_tiny_gguf(tmp_path / "tiny.gguf"))
    assert (info.architecture, info.context_length, info.embedding_length) == ("llama", 128, 8)
    assert info.chat_template and info.chat_template.startswith("{% for m in messages %}")


@pytest.mark.parametrize(("name", "data"), CASES, ids=[c[0] for c in CASES])
def test_corpus_file_is_refused(name: str, data: bytes, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFile) as info:
            read_info(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"validation of {name} used {peak} bytes"
    assert str(tmp_path) not in str(info.value)


def test_corpus_never_enters_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for name, data in CASES:
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        with pytest.raises(InvalidModelFile):
            store.import_gguf("bad", path)
    assert store.list() == [] and store.blobs.digests() == []


def test_corpus_is_large_enough() -> None:
    assert len(CASES) > 40
