"""Speculation on the real backend, in this process: after every step each slot's KV cells
hold exactly the tokens the scheduler says (rejected guesses leave at once), and no step
fails (a failed step would be replayed and hide a bad cache)."""

from __future__ import annotations

from pathlib import Path

from slmkit.config import Config
from slmkit.local import LocalModel
from slmkit.pipe import EngineRequest, Failed, Finished, SamplingParams, TextDelta

PARAGRAPH = (
    "The lighthouse stood on a rock at the mouth of the harbor. Every night the keeper climbed "
    "the one hundred and twelve steps, trimmed the wick, wound the clockwork that turned the "
    "lens, and wrote the weather in the log."
)


def test_every_step_leaves_each_slot_holding_exactly_its_tokens(models_dir: Path) -> None:
    config = Config.from_env(models=models_dir, draft_tokens=8, num_threads=1)
    with LocalModel.open("smollm2:135m", config=config) as model:
        core, backend = model.core, model.backend  # slmkit.load: one slot, number 0
        messages = ({"role": "user", "content": f"Repeat exactly, word for word:\n\n{PARAGRAPH}"},)
        request = EngineRequest("r", SamplingParams(temperature=0, max_tokens=120), messages=messages)
        core.add_request(request)
        text, done, steps = "", None, 0
        while core.has_work:
            events = core.step()
            steps += 1
            for _, event in events:
                assert not isinstance(event, Failed), event
                if isinstance(event, TextDelta):
                    text += event.text
                elif isinstance(event, Finished):
                    done = event
            slot = core.scheduler.slots[0]
            assert backend.kv_span(0) == ((0, len(slot.tokens) - 1) if slot.tokens else (-1, -1))
        assert done is not None and done.stats.accepted_tokens > 0
        assert steps < done.stats.completion_tokens  # some steps gave several tokens
        assert "lighthouse" in text
