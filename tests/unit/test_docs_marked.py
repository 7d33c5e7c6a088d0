"""Every shell and Python block in the README, docs/ and the examples says whether the docs
test runs it, or why not (tests/docs_blocks.py); the runnable ones run in
tests/integration/test_docs.py."""

from __future__ import annotations

from tests.docs_blocks import REASONS, blocks


def test_every_block_is_marked_run_or_a_reason_to_skip() -> None:
    found = blocks()
    assert len(found) > 30
    unmarked = [b.id for b in found if b.mark is None]
    assert not unmarked, f"add <!-- docs-test: run --> or <!-- docs-test: skip REASON --> above: {unmarked}"
    bad = [b.id for b in found if b.mark != "run" and b.mark.split()[-1] not in REASONS]  # type: ignore[union-attr]
    assert not bad, f"skip reasons are {sorted(REASONS)}: {bad}"
    assert sum(b.mark == "run" for b in found) >= 15
