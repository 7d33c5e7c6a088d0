from __future__ import annotations

import pytest

from slmkit.engine.scheduler import Scheduler, StepPlan, StepResult
from slmkit.errors import ServerBusy


def step(s: Scheduler, eog: set[str] | None = None) -> tuple[StepPlan, list[tuple[str, str]]]:
    plan = s.schedule()
    ids = (*plan.prefill, *plan.decode)
    result = StepResult(tokens={i: 7 for i in ids}, end_of_generation=frozenset(eog or set()))
    return plan, [(f.request_id, f.reason) for f in s.update_from_output(plan, result)]


def test_fifo_one_at_a_time() -> None:
    s = Scheduler(max_running=1)
    s.add_request("a", 2)
    s.add_request("b", 1)
    plan, done = step(s)
    assert plan == StepPlan(prefill=("a",), decode=())
    plan, done = step(s)
    assert plan == StepPlan(prefill=(), decode=("a",))
    assert done == [("a", "length")]
    plan, done = step(s)
    assert plan.prefill == ("b",) and done == [("b", "length")]
    assert not s.has_work


def test_batches_up_to_max_running() -> None:
    s = Scheduler(max_running=2)
    for r in "abc":
        s.add_request(r, 10)
    plan, _ = step(s)
    assert plan.prefill == ("a", "b")
    plan, _ = step(s, eog={"a"})
    assert plan.decode == ("a", "b")
    plan, _ = step(s)
    assert plan == StepPlan(prefill=("c",), decode=("b",))


def test_end_of_generation_is_stop() -> None:
    s = Scheduler()
    s.add_request("a", 10)
    _, done = step(s, eog={"a"})
    assert done == [("a", "stop")]


def test_never_exceeds_max_tokens() -> None:
    s = Scheduler()
    s.add_request("a", 3)
    counts = 0
    while s.has_work:
        step(s)
        counts += 1
    assert counts == 3


def test_queue_limit() -> None:
    s = Scheduler(max_waiting=2)
    s.add_request("a", 1)
    s.add_request("b", 1)
    with pytest.raises(ServerBusy, match="busy"):
        s.add_request("c", 1)


def test_finish_requests_anywhere() -> None:
    s = Scheduler()
    s.add_request("a", 5)
    s.add_request("b", 5)
    step(s)
    finished = s.finish_requests(["a", "b"], "cancelled")
    assert sorted((f.request_id, f.num_generated) for f in finished) == [("a", 1), ("b", 0)]
    assert not s.has_work


def test_result_for_aborted_request_is_ignored() -> None:
    s = Scheduler()
    s.add_request("a", 5)
    plan = s.schedule()
    s.finish_requests(["a"], "cancelled")
    assert s.update_from_output(plan, StepResult(tokens={"a": 1})) == []


def test_duplicate_ids_rejected() -> None:
    s = Scheduler()
    s.add_request("a", 1)
    with pytest.raises(ValueError):
        s.add_request("a", 1)
