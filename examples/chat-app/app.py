"""A minimal chat application: a page in the browser, the conversation streamed from the
server as it is generated (server-sent events), slmkit behind it.

    SLM_URL=http://127.0.0.1:11435 uvicorn app:app --port 8001   # then open http://127.0.0.1:8001

The browser never talks to slmkit: this server holds the API key and relays the stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

SLM_URL = os.environ.get("SLM_URL", "http://127.0.0.1:11435")
MODEL = os.environ.get("CHAT_MODEL", "smollm2:135m")
client = AsyncOpenAI(base_url=f"{SLM_URL}/v1", api_key=os.environ.get("SLM_API_KEY", "unused"))
app = FastAPI()


class Message(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str = Field(max_length=4000)


class Chat(BaseModel):
    messages: list[Message] = Field(min_length=1, max_length=40)


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return Path(__file__).with_name("index.html").read_text()


@app.post("/chat")
async def chat(body: Chat) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[m.model_dump() for m in body.messages], max_tokens=200, stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield f"data: {json.dumps({'text': chunk.choices[0].delta.content})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
