"""Prompt-lookup speculative decoding (SLM_DRAFT_TOKENS): what it gains where outputs repeat the
prompt, and what it costs where they do not.

    .venv/bin/python benchmarks/speculative.py [--models smollm2,gemma] [--drafts 0,4,8] [--rounds 2]

In this process (slmkit.load's engine: the same EngineCore, scheduler and backend a worker
runs), 2 threads, greedy, 160 tokens at most, for three tasks: copy a paragraph, fix one
line of code (the answer mostly repeats the code), and write a story (nothing to copy).
For each draft setting, the median wall time over interleaved rounds, the speed-up against
no drafting, the share of drafted tokens the model confirmed, and whether the answer is the
one plain decoding gives (a batched step rounds differently, so a near-tie can flip).
Writes benchmarks/results/speculative.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PARAGRAPH = (
    "The lighthouse stood on a rock at the mouth of the harbor. Every night the keeper climbed "
    "the one hundred and twelve steps, trimmed the wick, wound the clockwork that turned the "
    "lens, and wrote the weather in the log: wind from the west, light rain, three ships seen."
)
CODE = """def mean(values):
    total = 0
    for value in values:
        total += value
    return total / len(value)


def spread(values):
    low = min(values)
    high = max(values)
    return high - low
"""
TASKS = {
    "copy a paragraph": f"Repeat the following text exactly, word for word:\n\n{PARAGRAPH}",
    "fix one line of code": f"Fix the bug in this Python code and show the whole corrected code:\n\n{CODE}",
    "write a story": "Write a short story about a fox who learns to sail.",
}


def model_name(which: str, store: Path) -> str:
    from serving import model_file

    from slmkit.store import ModelStore

    if which == "smollm2":
        return "smollm2:135m"
    ModelStore(store).import_gguf("gemma", model_file("gemma"))
    return "gemma"


def run(name: str, draft: int, task: str) -> dict[str, Any]:
    from slmkit.config import Config
    from slmkit.engine import scheduler
    from slmkit.local import LocalModel

    seen: dict[str, int] = {}
    release = scheduler.Scheduler._release

    def counting(self: Any, seq: Any, reason: Any) -> Any:
        seen.update(drafted=seq.drafted, accepted=seq.accepted, tokens=len(seq.output))
        return release(self, seq, reason)

    scheduler.Scheduler._release = counting  # type: ignore[method-assign]
    try:
        with LocalModel.open(name, config=Config.from_env(draft_tokens=draft)) as model:
            messages = [{"role": "user", "content": TASKS[task]}]
            model.chat(messages, max_tokens=4, temperature=0)  # warm up
            started = time.perf_counter()
            answer = model.chat(messages, max_tokens=160, temperature=0)
            seconds = time.perf_counter() - started
    finally:
        scheduler.Scheduler._release = release  # type: ignore[method-assign]
    return {"seconds": seconds, "text": answer.text, **seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma")
    parser.add_argument("--drafts", default="0,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="slm-spec-"))
    os.environ.update(SLM_MODELS=str(store), SLM_NUM_THREADS="2")
    drafts = [int(d) for d in args.drafts.split(",")]
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "models": {}}
    for which in args.models.split(","):
        name = model_name(which, store)
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {t: {d: [] for d in drafts} for t in TASKS}
        for r in range(args.rounds):
            for task in TASKS:
                for d in drafts if r % 2 == 0 else reversed(drafts):
                    runs[task][d].append(run(name, d, task))
        rows = {}
        for task, by_draft in runs.items():
            plain = statistics.median(x["seconds"] for x in by_draft[drafts[0]])
            rows[task] = {
                str(d): {
                    "seconds": statistics.median(x["seconds"] for x in xs),
                    "speedup": plain / statistics.median(x["seconds"] for x in xs),
                    "drafted": xs[-1]["drafted"],
                    "accepted": xs[-1]["accepted"],
                    "tokens": xs[-1]["tokens"],
                    "same_answer": xs[-1]["text"] == by_draft[drafts[0]][-1]["text"],
                }
                for d, xs in by_draft.items()
            }
        report["models"][which] = rows
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speculative.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Prompt-lookup speculative decoding (SLM_DRAFT_TOKENS)",
        "",
        f"{report['when']}; 2 threads, greedy, one stream, medians of {args.rounds} interleaved rounds.",
        "",
        "| model | task | SLM_DRAFT_TOKENS | tokens | seconds | speed-up | accepted / drafted "
        "| same answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for which, rows in report["models"].items():
        for task, by_draft in rows.items():
            for d, x in by_draft.items():
                rate = f"{x['accepted']}/{x['drafted']}" if x["drafted"] else "-"
                lines.append(
                    f"| {which} | {task} | {d} | {x['tokens']} | {x['seconds']:.2f} | {x['speedup']:.2f}x "
                    f"| {rate} | {'yes' if x['same_answer'] else 'no'} |"
                )
    (RESULTS / "speculative.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
