"""Reranking: llama.cpp's server's, Jina's and TEI's shapes at the root and under /v1, Cohere's
under /v2."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.rerank.router import cohere_router, router

    return Family("rerank", (router(""), router("/v1"), cohere_router()))
