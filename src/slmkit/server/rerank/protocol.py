"""The rerank endpoint's wire types, and ranking by cosine similarity (pure)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from slmkit.server.wire import RequestBody


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class RerankRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, min_length=1)  # default: SLM_DEFAULT_MODEL
    query: str = Field(min_length=1)
    documents: list[str | Document] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)  # only the best n (default: all)
    return_documents: bool = True  # each result carries {"text": ...}

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


def rank(query: list[float], documents: list[list[float]]) -> list[tuple[int, float]]:
    """(index, cosine similarity) of each document, most similar first; ties keep order.
    Vectorized: 255 documents of 576 dimensions in pure Python held the event loop ~50 ms."""
    import numpy as np

    q = np.asarray(query, dtype=np.float64)
    docs = np.asarray(documents, dtype=np.float64).reshape(len(documents), q.shape[0])
    norms = np.linalg.norm(docs, axis=1) * np.linalg.norm(q)
    scores = np.divide(docs @ q, norms, out=np.zeros(len(documents)), where=norms > 0)
    order = np.argsort(-scores, kind="stable")
    return [(int(i), float(scores[i])) for i in order]
