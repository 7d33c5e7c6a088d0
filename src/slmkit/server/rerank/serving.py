"""Reranking, in the shape llama.cpp's server, vLLM and Jina/Cohere use: ``POST /rerank`` and
``POST /v1/rerank`` with a query and documents, answered with the documents' indexes by
relevance, best first.

Relevance is the cosine similarity of the query's and each document's embedding, made by
the model's worker the same way as /v1/embeddings (its own pooling, L2-normalized), so any
embedding model ranks: a sentence-embedding model (``slm convert`` of a BERT model) ranks
far better than a chat model. Cross-encoder rerankers (rank pooling) are refused for now.
The query and the documents together count against SLM_MAX_EMBED_INPUTS, and each against
the embedding token limit, exactly as embedding inputs do.
"""

from __future__ import annotations

from typing import Any

from slmkit.answer import generation
from slmkit.errors import InvalidRequest
from slmkit.server.rerank.protocol import RerankRequest, rank
from slmkit.server.state import ServerState


async def rerank(state: ServerState, req: RerankRequest) -> dict[str, Any]:
    documents = req.texts()
    if any(not d for d in documents):
        raise InvalidRequest("documents: every document must be a non-empty string")
    inputs = generation.embedding_inputs([req.query, *documents], state.config.max_embed_inputs)
    name = req.model or state.config.default_model
    out = await generation.embed(state.manager, name, inputs)
    vectors, tokens, model = out.vectors, out.tokens, out.model
    ranked = rank(vectors[0], vectors[1:])[: req.top_n]
    results: list[dict[str, Any]] = []
    for index, score in ranked:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if req.return_documents:
            item["document"] = {"text": documents[index]}
        results.append(item)
    return {
        "id": f"rerank-{generation.new_request_id()}",
        "object": "list",
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
