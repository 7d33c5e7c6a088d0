"""OpenAI's files and batches APIs under /v1: upload a JSONL file of requests, start a
batch job on it, follow it, cancel it, download its output and error files.

Files and jobs belong to the API key that made them (its id; one shared owner when keys
are off): another key's ids answer 404, exactly like unknown ones.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from slmkit.batch.files import UPLOAD_PURPOSES, FileRecord
from slmkit.batch.jobs import WINDOWS, check_metadata
from slmkit.batch.lines import ENDPOINTS
from slmkit.errors import InvalidRequest
from slmkit.server.batches.protocol import BatchCreate, listing, page
from slmkit.server.context import owner
from slmkit.server.state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])
MAX_FORM_FIELDS = 8


# -- files ----------------------------------------------------------------------------------
@router.post("/files")
async def create_file(request: Request, state: StateDep) -> dict[str, Any]:
    form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    try:
        purpose, upload = form.get("purpose"), form.get("file")
        if not isinstance(purpose, str) or purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(f"purpose: must be one of {', '.join(UPLOAD_PURPOSES)}")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("file: a file part is required (multipart/form-data)")
        record = await asyncio.to_thread(
            state.batches.files.create, owner(), upload.filename, purpose, upload.file
        )
        return record.to_openai()
    finally:
        await form.close()


@router.get("/files")
async def list_files(
    state: StateDep,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    records: list[FileRecord] = await asyncio.to_thread(state.batches.files.owned, owner(), purpose)
    if order == "asc":
        records.reverse()
    found, more = page(records, after, limit)
    return listing([r.to_openai() for r in found], more)


@router.get("/files/{file_id}")
async def get_file(file_id: str, state: StateDep) -> dict[str, Any]:
    record = await asyncio.to_thread(state.batches.files.get, owner(), file_id)
    return record.to_openai()


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, state: StateDep) -> FileResponse:
    path = await asyncio.to_thread(state.batches.files.path, owner(), file_id)
    return FileResponse(path, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, state: StateDep) -> dict[str, Any]:
    await asyncio.to_thread(state.batches.files.delete, owner(), file_id)
    return {"id": file_id, "object": "file", "deleted": True}


# -- batches --------------------------------------------------------------------------------
@router.post("/batches")
async def create_batch(req: BatchCreate, state: StateDep) -> dict[str, Any]:
    if req.endpoint not in ENDPOINTS:
        raise InvalidRequest(f"endpoint: must be one of {', '.join(ENDPOINTS)}")
    if req.completion_window not in WINDOWS:
        raise InvalidRequest(f"completion_window: must be one of {', '.join(WINDOWS)}")
    check_metadata(req.metadata)
    runner = state.batches
    record = await asyncio.to_thread(runner.files.get, owner(), req.input_file_id)
    if record.purpose != "batch":
        raise InvalidRequest("input_file_id: the file must have been uploaded with purpose 'batch'")
    job = await asyncio.to_thread(
        runner.jobs.create, owner(), req.endpoint, record.id, req.completion_window, req.metadata
    )
    runner.wake()
    return job.to_openai()


@router.get("/batches")
async def list_batches(
    state: StateDep, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    found, more = page(await asyncio.to_thread(state.batches.jobs.owned, owner()), after, limit)
    return listing([job.to_openai() for job in found], more)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, state: StateDep) -> dict[str, Any]:
    return (await asyncio.to_thread(state.batches.jobs.get, owner(), batch_id)).to_openai()


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, state: StateDep) -> dict[str, Any]:
    job = await asyncio.to_thread(state.batches.jobs.get, owner(), batch_id)
    await state.batches.cancel(job)
    return job.to_openai()
