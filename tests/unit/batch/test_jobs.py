"""Batch job states, records and resume bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.batch.jobs import FINAL, MOVES, Job, JobStore, check_metadata, recover
from slmkit.errors import BatchNotFound, InvalidRequest, LimitExceeded

STATES = [
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


def job(status: str = "validating") -> Job:
    return Job("batch_" + "0" * 24, "k", "/v1/chat/completions", "file-x", "24h", 100, 200, status=status)


@pytest.mark.parametrize("start", STATES)
@pytest.mark.parametrize("end", STATES)
def test_only_the_diagram_moves_are_allowed(start: str, end: str) -> None:
    j = job(start)
    if end in MOVES.get(start, ()):
        j.move(end, now=150)
        assert j.status == end and j.to_openai()[f"{end}_at"] == 150
    else:
        with pytest.raises(ValueError):
            j.move(end)


def test_final_states_have_no_way_out() -> None:
    assert all(s not in MOVES for s in FINAL)
    assert FINAL | set(MOVES) == set(STATES)


def test_the_openai_object_has_every_field() -> None:
    data = job().to_openai()
    assert data["object"] == "batch" and data["errors"] is None
    assert data["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert {"in_progress_at", "finalizing_at", "cancelled_at", "expired_at", "failed_at"} <= set(data)


def test_results_files_get_fixed_ids_per_job_and_kind() -> None:
    j = job()
    assert j.output_file("output") == j.output_file("output") != j.output_file("error")
    assert len(j.output_file("output")) == len("file-") + 24


def test_metadata_is_bounded() -> None:
    check_metadata({"k": "v"})
    with pytest.raises(InvalidRequest):
        check_metadata({str(i): "v" for i in range(17)})
    with pytest.raises(InvalidRequest):
        check_metadata({"k": "v" * 513})


def test_jobs_survive_a_restart_and_belong_to_their_owner(tmp_path: Path) -> None:
    store = JobStore(tmp_path, max_active=2)
    a = store.create("k1", "/v1/chat/completions", "file-1", "24h", {"run": "1"})
    a.move("in_progress")
    store.save(a)
    again = JobStore(tmp_path, max_active=2)
    assert again.get("k1", a.id).status == "in_progress" and again.get("k1", a.id).metadata == {"run": "1"}
    assert [j.id for j in again.runnable()] == [a.id]
    with pytest.raises(BatchNotFound):
        again.get("k2", a.id)
    assert again.owned("k2") == []


def test_unfinished_jobs_per_owner_are_bounded(tmp_path: Path) -> None:
    store = JobStore(tmp_path, max_active=1)
    first = store.create("k", "/v1/completions", "file-1", "24h", None)
    with pytest.raises(LimitExceeded, match="SLM_BATCHES_PER_KEY"):
        store.create("k", "/v1/completions", "file-1", "24h", None)
    store.create("other", "/v1/completions", "file-1", "24h", None)
    first.move("failed")
    store.create("k", "/v1/completions", "file-1", "24h", None)  # a finished job frees its place


def result(custom_id: str | None, status: int | None) -> bytes:
    response = None if status is None else {"status_code": status, "request_id": "r", "body": {}}
    return json.dumps({"custom_id": custom_id, "response": response, "error": None}).encode() + b"\n"


def test_recover_reads_answered_ids_and_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "output.jsonl"
    path.write_bytes(result("a", 200) + result("b", 400) + result("dup", None) + b'{"custom_id": "c", "resp')
    ids, ok, lines = recover(path)
    assert ids == {"a", "b"} and ok == 1 and lines == 3  # a validation error's id is not "answered"
    assert path.read_bytes().endswith(b"\n") and b'"c"' not in path.read_bytes()
    assert recover(tmp_path / "missing.jsonl") == (set(), 0, 0)
