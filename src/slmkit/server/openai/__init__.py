"""OpenAI's chat completions, completions, embeddings and models under /v1."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.errors import ErrorShape
    from slmkit.server.openai.protocol import openai_body
    from slmkit.server.openai.router import router

    return Family("openai", (router,), (ErrorShape("/v1", openai_body),))  # every /v1 route's errors
