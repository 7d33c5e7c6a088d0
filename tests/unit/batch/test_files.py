"""The file store behind /v1/files: atomic, bounded, per owner."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from slmkit.batch.files import FileStore, clean_filename
from slmkit.errors import BodyTooLarge, FileNotFound, LimitExceeded


def files(tmp_path: Path, max_bytes: int = 1000, max_files: int = 3) -> FileStore:
    return FileStore(tmp_path / "files", max_bytes, max_files)


def test_a_file_round_trips_and_belongs_to_its_owner(tmp_path: Path) -> None:
    store = files(tmp_path)
    record = store.create("k1", "in.jsonl", "batch", io.BytesIO(b"{}\n"))
    assert record.bytes == 3 and record.id.startswith("file-") and record.filename == "in.jsonl"
    assert store.path("k1", record.id).read_bytes() == b"{}\n"
    assert store.get("k1", record.id) == record
    assert [r.id for r in store.owned("k1")] == [record.id] and store.owned("k2") == []
    with pytest.raises(FileNotFound):
        store.get("k2", record.id)  # another key: the same answer as an unknown id
    with pytest.raises(FileNotFound):
        store.delete("k2", record.id)
    store.delete("k1", record.id)
    with pytest.raises(FileNotFound):
        store.get("k1", record.id)
    assert not any((tmp_path / "files").iterdir())


def test_a_file_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = files(tmp_path, max_bytes=10)
    with pytest.raises(BodyTooLarge, match="SLM_FILE_MAX_BYTES"):
        store.create("k", "x", "batch", io.BytesIO(b"x" * 11))
    assert list((tmp_path / "files").iterdir()) == []


def test_each_owner_keeps_at_most_the_limit(tmp_path: Path) -> None:
    store = files(tmp_path, max_files=2)
    for _ in range(2):
        store.create("k", "x", "batch", io.BytesIO(b"1"))
    with pytest.raises(LimitExceeded, match="SLM_FILES_PER_KEY"):
        store.create("k", "x", "batch", io.BytesIO(b"1"))
    store.create("other", "x", "batch", io.BytesIO(b"1"))  # another key has its own count


@pytest.mark.parametrize("bad", ["../etc/passwd", "file-../../x", "file-" + "0" * 23, "FILE-" + "a" * 24, ""])
def test_ids_that_are_not_file_ids_are_unknown(tmp_path: Path, bad: str) -> None:
    with pytest.raises(FileNotFound):
        files(tmp_path).get("k", bad)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\a\\b.jsonl", "b.jsonl"),
        ("a\x00b\nc", "abc"),
        (None, "upload.jsonl"),
    ],
)
def test_filenames_are_display_names_never_paths(given: str | None, kept: str) -> None:
    assert clean_filename(given) == kept


def test_leftovers_of_a_crash_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (root / ".partial-abc").write_bytes(b"half")
    (root / ("file-" + "a" * 24)).write_bytes(b"bytes without a record")
    store = files(tmp_path)
    store.create("k", "x", "batch", io.BytesIO(b"1"))
    assert [p.name for p in root.iterdir() if not p.name.endswith(".json")] == [store.owned("k")[0].id]


def test_adopt_is_idempotent_through_its_fixed_id(tmp_path: Path) -> None:
    store = files(tmp_path)
    src = tmp_path / "out.jsonl"
    src.write_bytes(b'{"a":1}\n')
    record = store.adopt("k", src, "b_output.jsonl", "batch_output", "file-" + "b" * 24)
    assert not src.exists() and store.get("k", "file-" + "b" * 24) == record


def test_an_upload_that_would_fill_the_disk_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    from slmkit.batch.files import RESERVE
    from slmkit.errors import DiskFull

    def free(root: Path) -> int:  # a disk with room for 3 MiB above the reserve
        return RESERVE + (3 << 20) - sum(p.stat().st_size for p in root.iterdir())

    store = FileStore(tmp_path / "files", 100 << 20, 10, free=free)
    store.create("k", "small", "batch", io.BytesIO(b"x" * (1 << 20)))
    with pytest.raises(DiskFull):
        store.create("k", "big", "batch", io.BytesIO(b"x" * (5 << 20)))
    assert [r.filename for r in store.owned("k")] == ["small"]
    assert not [p for p in (tmp_path / "files").iterdir() if p.name.startswith(".partial")]


def test_a_jobs_results_do_not_count_against_the_upload_limit(tmp_path: Path) -> None:
    store = files(tmp_path, max_files=2)
    for i in range(3):  # three finished jobs' outputs
        out = tmp_path / f"out{i}.jsonl"
        out.write_bytes(b"{}\n")
        store.adopt("k", out, f"batch_{i}_output.jsonl", "batch_output", f"file-{i:024d}")
    store.create("k", "a.jsonl", "batch", io.BytesIO(b"{}\n"))
    store.create("k", "b.jsonl", "batch", io.BytesIO(b"{}\n"))
    with pytest.raises(LimitExceeded, match="SLM_FILES_PER_KEY"):
        store.create("k", "c.jsonl", "batch", io.BytesIO(b"{}\n"))
