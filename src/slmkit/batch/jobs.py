"""Batch jobs (OpenAI's ``/v1/batches``): their states, their records on disk, and the
bookkeeping that lets a job resume after a restart without doing a line twice.

States and the only moves between them::

    validating ──> in_progress ──> finalizing ──> completed | expired | failed
        │    └──> failed     │
        └──────────┬─────────┘
                   v
              cancelling ──> cancelled

``validating`` checks every line and writes the bad ones to the error file; ``failed`` is
for a job that cannot start (its input file is gone or has too many lines) or that had to
stop: its input file went away while it ran, or its lines crashed the model's worker
``SLM_BATCH_MAX_CRASHES`` times (batch/runner.py). A stopped job still finalizes, so what it
finished is kept in its output and error files.
``finalizing`` turns the output and error files into files of the owner; ``expired`` is a
job that ran out of its completion window (what it finished is kept).

Layout under ``<SLM_MODELS>/batches``: ``<id>.json`` is the job's record (written
atomically at every change of state, and about once a second while it runs);
``<id>/output.jsonl`` and ``<id>/errors.jsonl`` receive one line per finished request,
appended and flushed as each finishes. They are the truth about what is done: on resume
they are read back (a line torn by a crash is cut off) and every ``custom_id`` found there
is skipped.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from slmkit.batch.files import write_json
from slmkit.errors import BatchNotFound, InvalidRequest, LimitExceeded, StoreError

Status = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
MOVES: dict[str, frozenset[str]] = {
    "validating": frozenset({"in_progress", "failed", "cancelling"}),
    "in_progress": frozenset({"finalizing", "cancelling"}),
    "finalizing": frozenset({"completed", "expired", "failed"}),
    "cancelling": frozenset({"cancelled"}),
}
FINAL = frozenset({"failed", "completed", "expired", "cancelled"})
WINDOWS = {"24h": 24 * 3600}  # completion windows OpenAI offers


@dataclass
class Job:
    id: str  # "batch_" and 24 hex digits
    owner: str  # API key id ("" with keys off)
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int  # Unix seconds
    expires_at: int
    status: str = "validating"
    times: dict[str, int] = field(default_factory=dict)  # status -> when it was entered
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0  # requests in the input file (lines that are not blank)
    completed: int = 0  # answered with a 2xx status
    failed: int = 0  # error lines: refused at validation or answered with an error
    errors: list[dict[str, Any]] = field(default_factory=list)  # why a job failed as a whole
    metadata: dict[str, str] | None = None
    ending: str = "completed"  # what finalizing ends in: "completed", "expired" or "failed"
    crashed: list[str] = field(default_factory=list)  # custom_ids whose request met a worker crash
    crashes: int = 0  # lines that met a worker crash twice (written as worker_crashed errors)

    def halt(self, code: str, message: str) -> None:
        """Stop taking new lines: the job finalizes (what it finished is kept) and fails."""
        if self.ending != "failed":
            self.ending = "failed"
            self.errors = [{"code": code, "message": message, "param": None, "line": None}]

    @property
    def halted(self) -> bool:
        return self.ending == "failed"

    def to_openai(self) -> dict[str, Any]:
        t = self.times
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": t.get("in_progress"),
            "expires_at": self.expires_at,
            "finalizing_at": t.get("finalizing"),
            "completed_at": t.get("completed"),
            "failed_at": t.get("failed"),
            "expired_at": t.get("expired"),
            "cancelling_at": t.get("cancelling"),
            "cancelled_at": t.get("cancelled"),
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }

    def move(self, status: str, now: float | None = None) -> None:
        """Enter ``status``; a move the state diagram does not have is a bug (ValueError)."""
        if status not in MOVES.get(self.status, frozenset()):
            raise ValueError(f"batch {self.id}: no move from {self.status} to {status}")
        self.status = status
        self.times[status] = int(time.time() if now is None else now)

    def output_file(self, kind: str) -> str:
        """The id the job's output (or error) file gets: fixed by the job, so a finalize
        that a crash interrupted finds what it already stored."""
        return "file-" + hashlib.sha256(f"{self.id}/{kind}".encode()).hexdigest()[:24]


def check_metadata(metadata: dict[str, str] | None) -> None:
    """OpenAI's bounds: at most 16 pairs, keys up to 64 and values up to 512 characters."""
    if metadata is None:
        return
    if len(metadata) > 16:
        raise InvalidRequest("metadata: at most 16 keys")
    for k, v in metadata.items():
        if len(k) > 64 or len(v) > 512:
            raise InvalidRequest("metadata: keys are at most 64 characters and values at most 512")


class JobStore:
    """Every job's record, in memory and on disk; methods are called from the event loop
    and from the runner's threads, so record writes are serialized."""

    def __init__(self, root: Path, max_active: int, shared: bool = False) -> None:
        self.root = root
        self.max_active = max_active  # unfinished jobs per owner (SLM_BATCHES_PER_KEY)
        self.shared = shared  # other replicas write records here too: read them afresh
        self._lock = threading.Lock()  # record writes
        self._index = threading.RLock()  # the dict of jobs (created from threads)
        self._jobs: dict[str, Job] = {}
        self._held: set[str] = set()  # jobs this replica runs: their live objects are the truth
        self._loaded = False

    def _all(self) -> list[Job]:
        """Every job (read from disk the first time; with a shared store, every time, but
        the jobs this replica runs keep their live objects)."""
        with self._index:
            if (self.shared or not self._loaded) and self.root.is_dir():
                for path in self.root.glob("batch_*.json"):
                    if path.stem in self._held:
                        continue
                    job = _read(path)
                    if job is not None:
                        self._jobs[job.id] = job
            self._loaded = True
            return list(self._jobs.values())

    def hold(self, job_id: str) -> Job | None:
        """The job as its record says now, kept live here (this replica took its lease)."""
        job = _read(self.root / f"{job_id}.json")
        with self._index:
            if job is not None:
                self._jobs[job.id] = job
                self._held.add(job.id)
            return job

    def let_go(self, job_id: str) -> None:
        with self._index:
            self._held.discard(job_id)

    def request_cancel(self, job: Job) -> None:
        """Mark the job cancelled for the replica that runs it (it reads the mark)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{job.id}.cancel").touch()

    def cancel_requested(self, job: Job) -> bool:
        return (self.root / f"{job.id}.cancel").exists()

    def create(
        self, owner: str, endpoint: str, input_file_id: str, window: str, metadata: dict[str, str] | None
    ) -> Job:
        now = int(time.time())
        job = Job(
            f"batch_{secrets.token_hex(12)}", owner, endpoint, input_file_id, window, now,
            now + WINDOWS[window], metadata=metadata,
        )  # fmt: skip
        job.times["validating"] = now
        with self._index:
            active = sum(1 for j in self._all() if j.owner == owner and j.status not in FINAL)
            if active >= self.max_active:
                raise LimitExceeded(
                    f"this key has {self.max_active} unfinished batches, the limit (SLM_BATCHES_PER_KEY)"
                )
            self.save(job)
            self._jobs[job.id] = job
        return job

    def get(self, owner: str, job_id: str) -> Job:
        self._all()
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise BatchNotFound(f"no such batch: {job_id[:64]}")
        return job

    def owned(self, owner: str) -> list[Job]:
        """The owner's jobs, newest first."""
        mine = (j for j in self._all() if j.owner == owner)
        return sorted(mine, key=lambda j: (j.created_at, j.id), reverse=True)

    def runnable(self) -> list[Job]:
        """Unfinished jobs, oldest first (a restart resumes them in that order)."""
        return sorted((j for j in self._all() if j.status not in FINAL), key=lambda j: j.created_at)

    def save(self, job: Job) -> None:
        try:
            with self._lock:
                self.root.mkdir(parents=True, exist_ok=True)
                write_json(self.root / f"{job.id}.json", asdict(job))
        except OSError as exc:
            raise StoreError(f"could not write the record of {job.id}: {exc.strerror}") from exc

    def workdir(self, job: Job) -> Path:
        path = self.root / job.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def drop_workdir(self, job: Job) -> None:
        shutil.rmtree(self.root / job.id, ignore_errors=True)
        (self.root / f"{job.id}.cancel").unlink(missing_ok=True)


def _read(path: Path) -> Job | None:
    try:
        return Job(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # missing, or a damaged record: the job is not listed


def recover(path: Path) -> tuple[set[str], int, int]:
    """What a results file holds: the ``custom_id`` of every request answered there, how
    many answers were 2xx, and how many lines it has in all (error lines written at
    validation have no answer: their ids stay out of the set, so a duplicate's error never
    hides the line that first used the id). A last line without its newline (a crash while
    appending) is cut off."""
    if not path.exists():
        return set(), 0, 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    ids: set[str] = set()
    ok = lines = 0
    for raw in data[:end].splitlines():
        lines += 1
        try:
            line = json.loads(raw)
            response = line.get("response")
        except (ValueError, AttributeError):
            continue
        if isinstance(response, dict) and isinstance(line.get("custom_id"), str):
            ids.add(line["custom_id"])
            ok += 200 <= int(response.get("status_code") or 0) < 300
    return ids, ok, lines
