"""Model cards: what `slm eval` measured, kept with the model it measured.

A card is keyed by the manifest digest (``ModelRecord.digest``): the exact version of the
model, weights and template and parameters together, so a model created from it with another
system prompt starts without one, and a card never describes a build it did not measure.
Each `slm eval` of a stored model merges what it measured (perplexity and KL divergence,
multiple choice, golden tests, JSON-schema validity, tool-call conformance) into the card
with the date, the machine and the slmkit version. Cards live in ``SLM_MODELS/cards/``,
written whole (slmkit.jsonout), read by `/api/show`, `/v1/models/{id}` and `slm show`.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmkit import jsonout
from slmkit.store.store import ModelRecord, ModelStore

MEASURES = ("perplexity", "multiple_choice", "golden", "json_schema", "tool_calls", "speed")
MAX_CARD_BYTES = 1 << 20  # a card is small; anything larger in the folder is not read


def _path(store: ModelStore, digest: str) -> Path:
    return store.root / "cards" / f"{digest.removeprefix('sha256:')[:64]}.json"


def read(store: ModelStore, record: ModelRecord) -> dict[str, Any] | None:
    path = _path(store, record.digest)
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            return None
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def machine() -> dict[str, Any]:
    from slmkit import __version__, hardware

    probe = hardware.probe()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": probe.cores_physical,
        "memory_bytes": probe.memory_total,
        "gpus": [g.name for g in probe.gpus],
        "slmkit": __version__,
    }


def record_measures(store: ModelStore, record: ModelRecord, measured: dict[str, Any]) -> dict[str, Any]:
    """Merge ``measured`` (any of MEASURES) into the model's card, dated; returns the card."""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    card = read(store, record) or {"model": record.name.display, "digest": record.digest}
    for key in MEASURES:
        if key in measured and measured[key] is not None:
            card[key] = {**measured[key], "measured_at": now}
    card["measured_at"] = now
    card["machine"] = machine()
    jsonout.write(_path(store, record.digest), card)
    return card
