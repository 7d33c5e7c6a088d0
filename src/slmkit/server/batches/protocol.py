"""The files and batches APIs' wire types and list shapes (pure)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from slmkit.server.wire import RequestBody


class BatchCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None


def page(items: list[Any], after: str | None, limit: int) -> tuple[list[Any], bool]:
    """The items after the one whose id is ``after`` (cursor paging, newest first)."""
    if after is not None:
        ids = [item.id for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return items[:limit], len(items) > limit


def listing(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
