"""Embedding and rerank jobs, run a bounded chunk at a time between generation steps.

An embedding request may carry hundreds of inputs. Run whole, it would hold the worker (and
every stream on the model) for as long as it takes. Here a job runs one chunk of about
``CHUNK_CHARS`` characters (at least one input) at a time, and while streams are generating
the worker shares its time half and half: after a chunk that took t seconds, generation
steps run for t seconds before the next chunk (``credit``/``due``). A long job so adds at
most one chunk's time to a stream's next token and halves its speed at worst, and the job
still progresses. Jobs are served in arrival order within a priority, interactive ones (0)
before background ones (batch jobs, 1); a job whose client went away is dropped. A rerank
job is the same with (query, document) pairs for inputs and a score for each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from slmkit.errors import contain

CHUNK_CHARS = 1024  # about 250 tokens of English: one chunk costs about one prefill step


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...

    def rank(self, pairs: list[tuple[str, str]], max_doc_tokens: int = 0) -> tuple[list[float], int]: ...


Input = str | tuple[str, str]  # a text to embed, or a (query, document) pair to score


@dataclass
class _Job:
    call_id: int
    texts: list[Input]
    done: int = 0  # inputs embedded so far
    vectors: list[list[float]] | list[float] = field(default_factory=list)  # or scores
    tokens: int = 0
    priority: int = 0  # 0 = interactive; larger = background (served after)
    rank: bool = False  # pairs scored (Embedder.rank), not texts embedded
    max_doc_tokens: int = 0  # rank: each document cut to this many tokens (0 = not cut)


def _chars(item: Input) -> int:
    return len(item) if isinstance(item, str) else len(item[0]) + len(item[1])


# What a finished job answers: ("result", call_id, (vectors, tokens)) or ("result_error", call_id, error)
Reply = tuple[str, int, object]


class EmbeddingJobs:
    def __init__(
        self,
        backend: Embedder,
        chunk_chars: int = CHUNK_CHARS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.backend = backend
        self.chunk_chars = chunk_chars
        self.clock = clock
        self._jobs: deque[_Job] = deque()
        self._owed = 0.0  # generation seconds due before the next chunk

    def credit(self, seconds: float) -> None:
        """Generation ran for ``seconds``."""
        self._owed = max(0.0, self._owed - seconds)

    def due(self, generating: bool) -> bool:
        """Whether a chunk should run now: some job waits and generation had its share."""
        return bool(self._jobs) and (not generating or self._owed <= 0.0)

    @property
    def pending(self) -> bool:
        return bool(self._jobs)

    def add(self, call_id: int, texts: list[str], priority: int = 0) -> None:
        self._jobs.append(_Job(call_id, list(texts), priority=priority))

    def add_rank(
        self, call_id: int, pairs: list[tuple[str, str]], priority: int = 0, max_doc_tokens: int = 0
    ) -> None:
        items: list[Input] = [(str(q), str(d)) for q, d in pairs]
        self._jobs.append(_Job(call_id, items, priority=priority, rank=True, max_doc_tokens=max_doc_tokens))

    def cancel(self, call_id: int) -> None:
        self._jobs = deque(j for j in self._jobs if j.call_id != call_id)

    def _run(self, job: _Job, chunk: list[Input]) -> tuple[list[Any], int]:
        if job.rank:
            return self.backend.rank([item for item in chunk if isinstance(item, tuple)], job.max_doc_tokens)
        return self.backend.embed([item for item in chunk if isinstance(item, str)])

    def step(self) -> Reply | None:
        """Embed the next chunk of the oldest job of the lowest priority number; its reply
        once it is complete or failed."""
        if not self._jobs:
            return None
        job = min(self._jobs, key=lambda j: j.priority)  # the first of the lowest: FIFO within
        end, size = job.done, 0
        while end < len(job.texts) and (end == job.done or size + _chars(job.texts[end]) <= self.chunk_chars):
            size += _chars(job.texts[end])
            end += 1
        started = self.clock()
        chunk = job.texts[job.done : end]
        try:
            values, tokens = self._run(job, chunk) if chunk else ([], 0)
        except Exception as exc:  # one request's boundary (errors.contain)
            self._jobs.remove(job)
            return ("result_error", job.call_id, contain(exc, "reranking" if job.rank else "embedding"))
        finally:
            self._owed = self.clock() - started
        job.vectors += values
        job.tokens += tokens
        job.done = end
        if job.done < len(job.texts):
            return None
        self._jobs.remove(job)
        return ("result", job.call_id, (job.vectors, job.tokens))
