"""A prompt that shares a long prefix with a request still running starts from a copy of that
slot's cells (llama_memory_seq_cp), with the real model: with a cache per slot (a whole-buffer
copy) and with one unified pool (shared cells). The copy is exact: the cells each slot holds
match the scheduler after every step, and the answer is the one the request gets alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.answer.profile import load_profile, load_spec
from slmkit.config import Config
from slmkit.engine.backends import open_backend
from slmkit.engine.plan import StepPlan
from slmkit.local import LocalModel
from slmkit.pipe import EngineRequest, Failed, Finished, SamplingParams, TextDelta
from slmkit.store import ModelStore
from tests.integration.conftest import MODEL

SYSTEM = (
    "You are the support assistant of a water company. Be brief and factual. "
    + "Pumps, valves, filters and meters are checked every spring and every autumn. " * 12
)


def chat(rid: str, question: str, max_tokens: int) -> EngineRequest:
    messages = ({"role": "system", "content": SYSTEM}, {"role": "user", "content": question})
    return EngineRequest(rid, SamplingParams(temperature=0, max_tokens=max_tokens), messages=messages)


@pytest.mark.parametrize("unified", [False, True], ids=["cache-per-slot", "unified-pool"])
def test_a_shared_prefix_is_copied_from_a_busy_slot_and_answers_alike(
    models_dir: Path, unified: bool
) -> None:
    config = Config.from_env(models=models_dir, num_threads=1, kv_unified=unified, context_length=1024)
    profile = load_profile(ModelStore(models_dir).get(MODEL))
    with LocalModel(profile, open_backend(load_spec(profile, config, n_parallel=3)), config) as model:
        core, backend = model.core, model.backend
        question = "When are the pumps checked?"
        alone = "".join(e.text for e in core.stream(chat("alone", question, 24)) if isinstance(e, TextDelta))
        for slot in core.scheduler.slots:  # forget every cache: only the busy slot can lend it
            backend.execute(StepPlan(trims=((slot.index, 0),)))
            slot.tokens.clear()
        core.add_request(chat("first", "Who are you?", 60))
        texts = {"first": "", "second": ""}
        done: dict[str, Finished] = {}
        copies: list[tuple[int, int, int]] = []
        original = core.scheduler.schedule

        def spy() -> StepPlan:
            plan = original()
            copies.extend(plan.copies)
            return plan

        core.scheduler.schedule = spy  # type: ignore[method-assign]
        steps = 0
        while core.has_work:
            if steps == 3:  # the first request is decoding: its slot holds the system prompt
                core.add_request(chat("second", question, 24))
            copies.clear()
            for request_id, event in core.step():
                assert not isinstance(event, Failed), event
                if isinstance(event, TextDelta):
                    texts[request_id] += event.text
                elif isinstance(event, Finished):
                    done[request_id] = event
            if steps == 3:
                assert len(copies) == 1  # the second request started from the first's cells
            for slot in core.scheduler.slots:
                held = len(slot.tokens)
                assert backend.kv_span(slot.index) == ((0, held - 1) if held else (-1, -1))
            steps += 1
        assert done["second"].stats.cached_tokens > 100
        assert texts["second"] == alone
