"""Embedding jobs run a bounded chunk at a time, in arrival order."""

from __future__ import annotations

from slmkit.engine.embeddings import EmbeddingJobs
from slmkit.errors import LimitExceeded


class Recorder:
    """Embeds each text as [len]; refuses a text of "too long"; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        self.calls.append(list(texts))
        if "too long" in texts:
            raise LimitExceeded("input: an input is 9999 tokens, more than the embedding limit of 1024")
        return [[float(len(t))] for t in texts], sum(len(t) for t in texts)

    def rank(self, pairs: list[tuple[str, str]], max_doc_tokens: int = 0) -> tuple[list[float], int]:
        self.calls.append([f"{q}|{d}|{max_doc_tokens}" for q, d in pairs])
        if any(d == "poison" for _, d in pairs):
            raise ValueError("a native-side surprise")
        return [float(len(d)) for _, d in pairs], sum(len(q) + len(d) for q, d in pairs)


def run_all(jobs: EmbeddingJobs) -> list[tuple[str, int, object]]:
    replies = []
    while jobs.pending:
        reply = jobs.step()
        if reply is not None:
            replies.append(reply)
    return replies


def test_a_long_job_runs_in_chunks_of_bounded_size_and_answers_once() -> None:
    backend = Recorder()
    jobs = EmbeddingJobs(backend, chunk_chars=10)
    texts = ["abcd"] * 7 + ["x" * 25]  # a text longer than a chunk goes alone
    jobs.add(1, texts)
    assert jobs.step() is None  # the first chunk only
    replies = run_all(jobs)
    assert backend.calls == [["abcd"] * 2] * 3 + [["abcd"], ["x" * 25]]
    assert replies == [("result", 1, ([[4.0]] * 7 + [[25.0]], 53))]


def test_jobs_are_served_in_order_and_a_cancelled_one_is_dropped() -> None:
    backend = Recorder()
    jobs = EmbeddingJobs(backend, chunk_chars=4)
    jobs.add(1, ["aaaa", "bbbb"])
    jobs.add(2, ["cccc"])
    jobs.add(3, ["dddd"])
    jobs.cancel(2)
    assert [r[1] for r in run_all(jobs)] == [1, 3]
    assert ["cccc"] not in backend.calls


def test_a_failing_chunk_fails_its_job_only() -> None:
    jobs = EmbeddingJobs(Recorder(), chunk_chars=4)
    jobs.add(1, ["ok", "too long", "never"])
    jobs.add(2, [])
    jobs.add(3, ["fine"])
    replies = run_all(jobs)
    assert [(kind, call) for kind, call, _ in replies] == [("result_error", 1), ("result", 2), ("result", 3)]
    assert isinstance(replies[0][2], LimitExceeded) and replies[1][2] == ([], 0)


def test_generation_gets_as_much_time_as_the_last_chunk_took() -> None:
    now = [0.0]

    class Slow(Recorder):
        def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
            now[0] += 2.0  # every chunk takes two seconds
            return super().embed(texts)

    jobs = EmbeddingJobs(Slow(), chunk_chars=4, clock=lambda: now[0])
    assert not jobs.due(generating=True)  # nothing to do
    jobs.add(1, ["aaaa"] * 3)
    assert jobs.due(generating=True)  # nothing owed yet
    jobs.step()
    assert not jobs.due(generating=True) and jobs.due(generating=False)  # idle streams wait for nobody
    jobs.credit(1.5)
    assert not jobs.due(generating=True)
    jobs.credit(0.5)
    assert jobs.due(generating=True)


def test_interactive_jobs_go_before_background_ones_even_mid_job() -> None:
    backend = Recorder()
    jobs = EmbeddingJobs(backend, chunk_chars=4)
    jobs.add(1, ["bg1", "bg2", "bg3"], priority=1)  # a batch job's embedding line
    assert jobs.step() is None  # its first chunk
    jobs.add(2, ["me"])  # an interactive request arrives
    jobs.add(3, ["bg4"], priority=1)
    replies = run_all(jobs)
    assert [r[1] for r in replies] == [2, 1, 3]
    assert backend.calls == [["bg1"], ["me"], ["bg2"], ["bg3"], ["bg4"]]


def test_a_rerank_job_scores_pairs_in_chunks_counting_query_and_document() -> None:
    backend = Recorder()
    jobs = EmbeddingJobs(backend, chunk_chars=10)
    jobs.add_rank(1, [("qq", "abc"), ("qq", "abcd"), ("qq", "a" * 12)], max_doc_tokens=7)
    jobs.add(2, ["xyz"])
    replies = run_all(jobs)
    # pairs of 5 and 6 characters: one per chunk of 10; the cut travels with each chunk
    assert backend.calls[:3] == [["qq|abc|7"], ["qq|abcd|7"], ["qq|" + "a" * 12 + "|7"]]
    assert replies[0] == ("result", 1, ([3.0, 4.0, 12.0], 25))
    assert replies[1] == ("result", 2, ([[3.0]], 3))


def test_a_failing_rerank_chunk_fails_its_job_only() -> None:
    from slmkit.errors import RequestFailed

    jobs = EmbeddingJobs(Recorder(), chunk_chars=100)
    jobs.add_rank(1, [("q", "poison")])
    jobs.add_rank(2, [("q", "fine")])
    replies = run_all(jobs)
    assert replies[0][:2] == ("result_error", 1) and isinstance(replies[0][2], RequestFailed)
    assert "reranking" in str(replies[0][2])
    assert replies[1] == ("result", 2, ([4.0], 5))
