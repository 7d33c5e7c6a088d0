"""Reranking: a query and documents in, the documents' indexes by relevance out, best first.

A cross-encoder (capability ``rerank``: rank pooling, or an encoder with a one-output
classification head, as bge-reranker) scores each (query, document) pair itself; its logit is
reported as a probability unless ``raw_scores``. Any other model ranks by the cosine
similarity of its embeddings (the query's and each document's, made as /v1/embeddings makes
them), so a sentence-embedding model ranks well and a chat model ranks at all.

Bounds: the documents count against SLM_MAX_EMBED_INPUTS (the query too, for similarity),
each pair or input against the model's embedding token limit; the pairs run in the model's
worker as embedding jobs do, a bounded chunk at a time between generation steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slmkit.answer import generation
from slmkit.errors import InvalidRequest, LimitExceeded
from slmkit.formats import RERANK
from slmkit.server.rerank.protocol import (
    CohereRerankRequest,
    RerankRequest,
    order,
    rank_by_similarity,
    relevance,
)
from slmkit.server.state import ServerState


@dataclass(frozen=True)
class Ranked:
    model: str
    scores: list[float]  # one per document, in document order
    tokens: int


async def rank(state: ServerState, req: RerankRequest) -> Ranked:
    documents = req.items()
    if any(not d for d in documents):
        raise InvalidRequest("documents: every document must be a non-empty string")
    limit = state.config.max_embed_inputs
    if len(documents) > limit:
        raise LimitExceeded(
            f"documents: {len(documents)} documents, more than the limit of {limit} (SLM_MAX_EMBED_INPUTS)"
        )
    name = req.model or state.config.default_model
    profile = await state.manager.profile(name)
    if RERANK in profile.capabilities:
        async with state.manager.use(name, profile=profile) as (loaded, _):
            pairs = [(req.query, d) for d in documents]
            logits, tokens = await loaded.worker.rank(pairs, max_doc_tokens=req.max_tokens_per_doc or 0)
            scores = logits if req.raw_scores else [relevance(x) for x in logits]
            return Ranked(loaded.name, scores, tokens)
    inputs = generation.embedding_inputs([req.query, *documents], limit)
    out = await generation.embed(state.manager, name, inputs)
    return Ranked(out.model, rank_by_similarity(out.vectors[0], out.vectors[1:]), out.tokens)


async def rerank(state: ServerState, req: RerankRequest) -> Any:
    """Jina's and llama.cpp's server's answer, or TEI's when the request used ``texts``."""
    ranked = await rank(state, req)
    documents = req.items()
    best = order(ranked.scores, req.top_n)
    if req.shape == "tei":
        return [
            {"index": i, "score": s, **({"text": documents[i]} if req.return_text else {})} for i, s in best
        ]
    return {
        "id": f"rerank-{generation.new_request_id()}",
        "object": "list",
        "model": ranked.model,
        "results": _results(best, documents if req.return_documents else None),
        "usage": {"prompt_tokens": ranked.tokens, "total_tokens": ranked.tokens},
    }


async def rerank_cohere(state: ServerState, req: CohereRerankRequest) -> dict[str, Any]:
    """Cohere's v2 answer."""
    ranked = await rank(state, req)
    best = order(ranked.scores, req.top_n)
    return {
        "id": f"rerank-{generation.new_request_id()}",
        "results": _results(best, req.items() if req.return_documents else None),
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"search_units": 1},
            "tokens": {"input_tokens": ranked.tokens, "output_tokens": 0},
        },
    }


def _results(best: list[tuple[int, float]], documents: list[str] | None) -> list[dict[str, Any]]:
    """Jina's and Cohere's result items; each with its document's text when ``documents``."""
    return [
        {"index": i, "relevance_score": s, **({"document": {"text": documents[i]}} if documents else {})}
        for i, s in best
    ]
