"""The HTTP API. Route functions stay thin: read the request, call the job store or the queue, answer."""

from __future__ import annotations

import asyncio
import base64
import re
from contextlib import nullcontext
from dataclasses import dataclass

import phonenumbers
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from api.backpressure import check_backlog
from api.errors import BodyTooLarge
from api.events import JobEvents
from api.jobstore import JobStore, new_job_id
from api.metrics import GatewayMetrics
from api.queue import TaskQueue
from api.schemas import ErrorBody, Job, JobCreated, Ready
from api.security import caller_of
from api.uploads import expand
from phonereader.config import Settings
from phonereader.imageio import InputError
from phonereader.schemas import Kind

BOX_NAME = re.compile(r"^(\d{1,4})\.png$", re.IGNORECASE)
# 401 and 429 come from api.security (API keys, rate limits) when they are configured
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 415, 422, 429, 503)}


@dataclass
class Services:
    """What the routes use; built once per gateway by ``api.app.create_app``."""

    settings: Settings
    redis: aioredis.Redis
    store: JobStore
    queue: TaskQueue
    events: JobEvents
    metrics: GatewayMetrics


def services(request: Request) -> Services:
    return request.app.state.services


router = APIRouter()


# --- submitting ------------------------------------------------------------------------------------


async def submit(svc: Services, files: list[tuple[str, bytes]], kind: str, region: str,
                 owner: str = "", scope: dict | None = None) -> tuple[str, int, bool]:
    """Check the backlog, expand the upload into units, store the job, queue its tasks.

    The job is answered 202 only after both the job record and its tasks are in Redis; if queueing fails
    the job is removed again, so an accepted job always has its tasks and a refused one leaves nothing."""
    await check_backlog(svc, scope)
    upload = await run_in_threadpool(expand, files, kind, svc.settings)
    job_id = new_job_id()
    finished = await svc.store.create(job_id, kind, region, upload.units, upload.blobs, upload.failed, owner)
    pending = [u for u in range(len(upload.units)) if u not in upload.failed]
    try:
        await svc.queue.send(job_id, pending)
    except BaseException:
        await asyncio.shield(svc.store.delete(job_id))
        raise
    svc.metrics.jobs.labels(kind).inc()
    svc.metrics.units.inc(len(upload.units))
    return job_id, len(upload.units), finished


async def read_uploads(files: list[UploadFile], settings: Settings) -> list[tuple[str, bytes]]:
    out, total = [], 0
    for f in files:
        data = await f.read(settings.max_upload_bytes + 1 - total)
        total += len(data)
        if total > settings.max_upload_bytes:
            raise InputError("too_large", f"{f.filename}: the files add up to more than {settings.max_upload_bytes:,} bytes", 413)
        out.append((f.filename or "upload", data))
    return out


def check_region(region: str | None, settings: Settings) -> str:
    region = (region or settings.default_region).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InputError("invalid_field", f"region: {region!r} is not a known region (use a two-letter code such as US, GB, DE)", 422)
    return region


def job_created(job_id: str, total: int, finished: bool = False) -> JSONResponse:
    url = f"/api/jobs/{job_id}"
    body = JobCreated(id=job_id, status="failed" if finished else "queued", status_url=url, items_total=total)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


@router.post("/api/jobs", status_code=202, response_model=JobCreated, responses=ERRORS, tags=["jobs"],
             summary="Submit images, a zip, or multi-page TIFF/PDF files")
async def create_job(
    request: Request,
    files: list[UploadFile] = File(..., description="One or more images, .zip archives, multi-page TIFF or PDF files."),
    kind: Kind = Form("auto", description="boxes: all files are one number; line, form, or auto (per image)."),
    region: str | None = Form(None, description="Default region for phone rules (ISO 3166 code, e.g. US)."),
    svc: Services = Depends(services),
):
    region = check_region(region, svc.settings)
    job_id, total, finished = await submit(svc, await read_uploads(files, svc.settings), kind, region,
                                           caller_of(request.scope).owner, request.scope)
    return job_created(job_id, total, finished)


# --- following a job -------------------------------------------------------------------------------


def _not_found(job_id: str) -> InputError:
    shown = job_id if len(job_id) <= 64 else job_id[:64] + "…"
    return InputError("not_found", f"job {shown!r} does not exist (or has expired)", 404)


async def visible_job(svc: Services, request: Request, job_id: str) -> None:
    """404 unless the job exists and belongs to the caller (with API keys on): someone else's job
    looks exactly like one that does not exist."""
    owner = await svc.store.owner(job_id)
    if owner is None or owner != caller_of(request.scope).owner:
        raise _not_found(job_id)


async def visible_progress(svc: Services, request: Request, job_id: str) -> tuple[int, int]:
    """:func:`visible_job` and the job's (done, total) in one round trip."""
    found = await svc.store.owner_and_progress(job_id)
    if found is None or found[0] != caller_of(request.scope).owner:
        raise _not_found(job_id)
    return found[1]


def _finished(svc: Services, job_id: str):
    """For JobEvents.wait: has the job finished (or vanished)?"""

    async def check() -> bool:
        p = await svc.store.progress(job_id)
        return p is None or p[0] >= p[1]
    return check


@router.get("/api/jobs/{job_id}", response_model=Job, responses=ERRORS, tags=["jobs"], summary="Poll a job")
async def get_job(
    request: Request,
    job_id: str,
    wait: float = Query(0, ge=0, le=30, description="Long-poll: wait up to this many seconds for the job to finish."),
    detail: bool = Query(True, description="Include per-digit detail (confidences, alternatives, boxes)."),
    svc: Services = Depends(services),
):
    # a long poll watches before it looks, so a finish right after the look is not missed
    with svc.events.watching(job_id) if wait > 0 else nullcontext() as event:
        done, total = await visible_progress(svc, request, job_id)
        if wait > 0 and done < total:
            await svc.events.wait_on(event, _finished(svc, job_id), wait, finished=False)
    job = await svc.store.get(job_id, detail=detail)
    if job is None:
        raise _not_found(job_id)
    headers = {"Cache-Control": "no-store"}
    if job["finished_at"] is None:
        headers["Retry-After"] = str(svc.settings.poll_after_s)
    return JSONResponse(job, headers=headers)


@router.delete("/api/jobs/{job_id}", status_code=204, responses=ERRORS, tags=["jobs"], summary="Cancel and remove a job")
async def delete_job(request: Request, job_id: str, svc: Services = Depends(services)):
    await visible_job(svc, request, job_id)
    if not await svc.store.delete(job_id):
        raise _not_found(job_id)
    return Response(status_code=204)


# --- the tutorial's endpoint ------------------------------------------------------------------------


async def _numbered_boxes(request: Request, settings: Settings) -> list[tuple[str, bytes]]:
    """Multipart parts named (or with file names) ``1.png`` ... ``N.png``, in number order, no gaps.
    A part may also be a ``data:image/png;base64,...`` text field, as canvas pages often send."""
    try:
        form = await request.form(max_files=settings.max_files, max_fields=settings.max_files)
    except BodyTooLarge:
        raise
    except Exception as e:
        if isinstance(e.__cause__ or e, BodyTooLarge):
            raise BodyTooLarge() from e
        raise InputError("bad_multipart", f"expected a multipart form of 1.png ... N.png ({e})", 400) from None
    boxes: dict[int, tuple[str, bytes]] = {}
    ignored = []
    for key, value in form.multi_items():
        if isinstance(value, StarletteUpload):
            label = key if BOX_NAME.match(key) else (value.filename or key)
            data = await value.read(settings.max_upload_bytes + 1)
        elif isinstance(value, str) and BOX_NAME.match(key) and value.startswith("data:"):
            label, data = key, _data_url(key, value)
        else:
            ignored.append(key)
            continue
        m = BOX_NAME.match(label or "")
        if not m:
            raise InputError("bad_field_name", f"{label or key!r}: files must be named 1.png, 2.png, ... N.png", 422)
        n = int(m.group(1))
        if n in boxes:
            raise InputError("duplicate_box", f"{n}.png is sent twice", 422)
        boxes[n] = (f"{n}.png", data)
    await form.close()
    if not boxes:
        raise InputError("no_files", "files: expected 1.png ... N.png, one digit each; none was sent", 422)
    missing = [n for n in range(1, max(boxes) + 1) if n not in boxes]
    if missing or 0 in boxes:
        gap = ", ".join(f"{n}.png" for n in missing[:5]) or "0.png (numbering starts at 1)"
        raise InputError("missing_box", f"boxes must be numbered 1.png ... {max(boxes)}.png without gaps; missing {gap}", 422)
    return [boxes[n] for n in sorted(boxes)]


def _data_url(key: str, value: str) -> bytes:
    try:
        header, payload = value.split(",", 1)
        if ";base64" not in header:
            raise ValueError
        return base64.b64decode(payload, validate=True)
    except Exception:
        raise InputError("bad_data_url", f"{key}: not a base64 data: URL", 422) from None


@router.post("/api/recognize", tags=["tutorial"], responses={**ERRORS, 504: {"model": ErrorBody}},
             summary="Tutorial-compatible: boxes 1.png..N.png in, digits out (waits for the result)",
             response_class=PlainTextResponse,
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "description": "Files named 1.png ... N.png (field name or file name), one digit each.",
                 "additionalProperties": {"type": "string", "format": "binary"}}}}}})
async def recognize(
    request: Request,
    region: str | None = Query(None, description="Region for phone rules (default: the configured one)."),
    timeout: float | None = Query(None, gt=0, le=300, description="Seconds to wait (default: PHONEREADER_SYNC_TIMEOUT_S)."),
    svc: Services = Depends(services),
):
    """Digits as ``text/plain``; the whole result as JSON with ``Accept: application/json``.
    If the result is not ready in time the answer is 504 with the job id to poll."""
    boxes = await _numbered_boxes(request, svc.settings)
    region = check_region(region, svc.settings)
    job_id, _, _ = await submit(svc, boxes, "boxes", region, caller_of(request.scope).owner, request.scope)
    wait_s = min(timeout or svc.settings.sync_timeout_s, svc.settings.sync_timeout_s)
    done = await svc.events.wait(job_id, _finished(svc, job_id), wait_s)
    url = f"/api/jobs/{job_id}"
    if not done:
        return JSONResponse({"error": "timeout", "message": f"no result within {wait_s:g} s; poll {url}",
                             "id": job_id, "status_url": url}, status_code=504, headers={"Location": url, "Retry-After": "1"})
    job = await svc.store.get(job_id)
    if job is None:
        raise _not_found(job_id)
    item = job["items"][0]
    if item["status"] == "failed":
        err = item["error"] or {"code": "failed", "message": "the boxes could not be read"}
        return JSONResponse({"error": err["code"], "message": err["message"], "id": job_id}, status_code=422)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"id": job_id, **{k: v for k, v in item.items() if k not in ("index", "unit", "field")}})
    return PlainTextResponse(item["digits"] or "")


# --- operations ------------------------------------------------------------------------------------


@router.get("/api/health", tags=["ops"], summary="Liveness: the gateway process answers")
async def health():
    return {"status": "ok"}


@router.get("/api/ready", response_model=Ready, tags=["ops"], responses={503: {"model": Ready}},
            summary="Readiness: Redis answers and at least one worker has a model loaded")
async def ready(svc: Services = Depends(services)):
    try:
        await svc.redis.ping()
        workers = await svc.store.live_workers()
        depth = sum((await svc.queue.depth()).values())
        ok = bool(workers)
        body = Ready(ready=ok, redis=True, workers=workers, queue_depth=depth)
    except Exception:
        ok, body = False, Ready(ready=False, redis=False)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503,
                        headers=None if ok else {"Retry-After": "2"})


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(svc: Services = Depends(services)):
    try:
        queue, workers, pushed = await asyncio.gather(svc.queue.depth(), svc.store.live_workers(), svc.store.metrics())
    except Exception:  # Redis away: still expose the gateway's own series
        queue, workers, pushed = {}, [], {}
    svc.metrics.refresh(queue, workers, pushed)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
