"""Ollama's API under /api, including its model administration (create, pull, push, copy,
delete); errors outside /v1 answer in Ollama's shape."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.errors import ErrorShape
    from slmkit.server.ollama.protocol import ollama_body
    from slmkit.server.ollama.router import router

    return Family("ollama", (router,), (ErrorShape("/", ollama_body),))
