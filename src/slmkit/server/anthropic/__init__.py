"""Anthropic's Messages API (`POST /v1/messages`), with Anthropic's error body."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.anthropic.protocol import error_body
    from slmkit.server.anthropic.router import router
    from slmkit.server.errors import ErrorShape

    return Family("anthropic", (router,), (ErrorShape("/v1/messages", error_body, exact=True),))
