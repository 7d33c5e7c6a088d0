"""A small retrieval service: embed a few documents at start, then answer questions with
the documents that rank best, citing them.

    SLM_URL=http://127.0.0.1:11435 uvicorn app:app --port 8000
    curl -s localhost:8000/ask -H 'content-type: application/json' -d '{"question": "Warranty?"}'

Talks to slmkit with the official openai client (embeddings, chat) and plain HTTP for
/v1/rerank, which the openai client has no method for.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from openai import AsyncOpenAI
from pydantic import BaseModel

SLM_URL = os.environ.get("SLM_URL", "http://127.0.0.1:11435")
API_KEY = os.environ.get("SLM_API_KEY", "unused")
EMBED_MODEL = os.environ.get("EMBED_MODEL", "all-minilm:l6-v2")
CHAT_MODEL = os.environ.get("CHAT_MODEL", "smollm2:135m")
DOCS = json.loads((Path(__file__).with_name("docs.json")).read_text())


class Question(BaseModel):
    question: str
    top_k: int = 2


@asynccontextmanager
async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
    app.state.openai = AsyncOpenAI(base_url=f"{SLM_URL}/v1", api_key=API_KEY)
    app.state.http = httpx.AsyncClient(base_url=SLM_URL, headers={"Authorization": f"Bearer {API_KEY}"})
    # Embed the documents once: a quick check that the embedding model is there and how wide it is.
    vectors = await app.state.openai.embeddings.create(model=EMBED_MODEL, input=[d["text"] for d in DOCS])
    app.state.dimensions = len(vectors.data[0].embedding)
    yield
    await app.state.openai.close()
    await app.state.http.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, Any]:
    return {"documents": len(DOCS), "dimensions": app.state.dimensions}


@app.post("/ask")
async def ask(q: Question) -> dict[str, Any]:
    ranked = await app.state.http.post(
        "/v1/rerank",
        json={
            "model": EMBED_MODEL,
            "query": q.question,
            "documents": [d["text"] for d in DOCS],
            "top_n": q.top_k,
        },
    )
    ranked.raise_for_status()
    hits = [DOCS[r["index"]] | {"score": r["relevance_score"]} for r in ranked.json()["results"]]
    context = "\n".join(f"[{i + 1}] {h['text']}" for i, h in enumerate(hits))
    answer = await app.state.openai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            {"role": "system", "content": "Answer from the sources only, briefly, citing them like [1]."},
            {"role": "user", "content": f"Sources:\n{context}\n\nQuestion: {q.question}"},
        ],
        max_tokens=80,
        temperature=0,
    )
    return {
        "answer": answer.choices[0].message.content,
        "citations": [
            {"n": i + 1, "id": h["id"], "title": h["title"], "score": h["score"]} for i, h in enumerate(hits)
        ],
    }
