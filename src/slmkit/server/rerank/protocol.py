"""The rerank endpoints' wire types and the ranking itself (pure).

Three request shapes reach one ranking: Jina's and llama.cpp's server's (``POST /rerank``,
``POST /v1/rerank``: ``documents`` as strings or ``{"text": ...}``, ``top_n``,
``return_documents``), Hugging Face TEI's (``texts`` instead of ``documents``, answered with a
bare list of ``{"index", "score"}``) and Cohere's v2 (``POST /v2/rerank``, answered with
``{"id", "results", "meta"}``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.server.wire import RequestBody

MAX_DOCUMENT_TOKENS = 1 << 20  # max_tokens_per_doc accepted (the model's pair limit binds first)


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class RerankRequest(RequestBody):
    model_config = ConfigDict(extra="allow")
    HARMLESS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "truncate": (False,),
        "truncation_direction": ("Right",),
    }
    model: str | None = Field(default=None, min_length=1)  # default: SLM_DEFAULT_MODEL
    query: str = Field(min_length=1)
    documents: list[str | Document] | None = Field(default=None, min_length=1)
    texts: list[str] | None = Field(default=None, min_length=1)  # TEI's name for documents
    top_n: int | None = Field(default=None, ge=1)  # only the best n (default: all)
    return_documents: bool = True  # each result carries {"text": ...}
    return_text: bool = False  # TEI: each result carries "text"
    raw_scores: bool = False  # a cross-encoder's logits instead of probabilities (TEI's name)
    max_tokens_per_doc: int | None = Field(default=None, ge=1, le=MAX_DOCUMENT_TOKENS)
    priority: int | None = Field(default=None, ge=-(10**6), le=10**6)  # Cohere's; arrival order here

    @model_validator(mode="after")
    def _one_list(self) -> RerankRequest:
        if (self.documents is None) == (self.texts is None):
            raise ValueError("documents: give the documents to rank (or TEI's texts), not both")
        return self

    @property
    def shape(self) -> Literal["jina", "tei"]:
        return "tei" if self.texts is not None else "jina"

    def items(self) -> list[str]:
        if self.texts is not None:
            return list(self.texts)
        return [d if isinstance(d, str) else d.text for d in self.documents or []]


class CohereRerankRequest(RerankRequest):
    """Cohere's v2 body: the model is required, documents are strings."""

    model: str = Field(min_length=1)  # type: ignore[assignment]
    documents: list[str | Document] = Field(min_length=1)  # type: ignore[assignment]
    return_documents: bool = False


def rank_by_similarity(query: list[float], documents: list[list[float]]) -> list[float]:
    """The cosine similarity of each document's embedding to the query's. Vectorized: 255
    documents of 576 dimensions in pure Python held the event loop ~50 ms."""
    import numpy as np

    q = np.asarray(query, dtype=np.float64)
    docs = np.asarray(documents, dtype=np.float64).reshape(len(documents), q.shape[0])
    norms = np.linalg.norm(docs, axis=1) * np.linalg.norm(q)
    scores = np.divide(docs @ q, norms, out=np.zeros(len(documents)), where=norms > 0)
    return [float(s) for s in scores]


def relevance(logit: float) -> float:
    """A cross-encoder's logit as a probability of relevance (the logistic function), as
    sentence-transformers, TEI, vLLM and Cohere report single-label rerankers."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


def order(scores: list[float], top_n: int | None) -> list[tuple[int, float]]:
    """(index, score), best first, ties in document order; the first ``top_n``."""
    ranked = sorted(enumerate(scores), key=lambda item: -item[1])
    return ranked[:top_n]
