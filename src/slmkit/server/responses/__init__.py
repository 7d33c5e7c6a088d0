"""OpenAI's Responses API under /v1, with its store of responses (errors: OpenAI's shape)."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.responses.router import router

    return Family("responses", (router,))
