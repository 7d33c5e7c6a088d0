"""How a stored model's defaults (SYSTEM, MESSAGE) shape a request, for the server and
``slmkit.load`` alike."""

from __future__ import annotations

import dataclasses

from slmkit.engine.types import EngineRequest
from slmkit.store import ModelRecord


def with_model_context(request: EngineRequest, record: ModelRecord) -> EngineRequest:
    """A chat gets its model's SYSTEM (unless it brings its own) and MESSAGE history
    (few-shot examples, after the system message): for every dialect alike."""
    if request.messages is None or not (record.system or record.messages):
        return request
    messages = list(request.messages)
    if record.system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": record.system})
    at = next((i for i, m in enumerate(messages) if m.get("role") != "system"), len(messages))
    messages[at:at] = record.messages
    return dataclasses.replace(request, messages=tuple(messages))
