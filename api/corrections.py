"""The corrections loop's HTTP side: users fix misread digits, each fixed crop becomes a training sample.

``POST /api/jobs/{id}/items/{index}/corrections`` accepts any of::

    {"position": 3, "from": "1", "to": "7", "digits": "..."}   one digit, as the web pages send it
    {"mapping": {"3": "7", "5": "1"}}                          positions (0-based) -> true digits
    {"digits": "2125550147"}                                   the whole item, as many digits as read

Positions count the item's recognised digits (empty boxes do not count). The worker kept every digit's
crop with the job (worker.crops), so the gateway only looks it up and writes the sample
(api.dataset); nothing is re-run. One correction per crop: the second gets 409, checked and recorded in
one Lua step so two gateways cannot both accept it.

``GET /api/corrections/export`` downloads the data set as a zip, with ``X-Admin-Token``.
"""

from __future__ import annotations

import hmac
import os
import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api import dataset
from api.jobstore import corrected, now
from api.routes import Services, _not_found, services, visible_job
from api.schemas import ErrorBody, Item
from phonereader.imageio import InputError
from worker.crops import crop_name, unpack

router = APIRouter(tags=["corrections"])
ADMIN_HEADER = "X-Admin-Token"
MAX_DIGITS = 64
ONE_DIGIT = re.compile(r"^[0-9]$")
ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422)}

# Record every correction of one item at once, or none: refuse if any of its crops is already corrected.
_CLAIM = """
for i = 1, #ARGV - 1, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then return ARGV[i] end
end
for i = 1, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[#ARGV]))
return false
"""


class CorrectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    position: int | None = Field(None, description="Which recognised digit (0-based), with `to`.")
    from_: str | None = Field(None, alias="from", description="The digit the page showed before the edit (informative).")
    to: str | None = Field(None, description="The true digit at `position`.")
    mapping: dict[str, str] | None = Field(None, description="Positions -> true digits.")
    digits: str | None = Field(None, max_length=MAX_DIGITS, description="The item's true digits, all of them "
                               "(with `position`/`to`: the page's whole reading after the edit; not checked).")


class CorrectionOut(BaseModel):
    item: Item
    saved: list[dict] = Field(description="One entry per stored sample: position, from, to, file.")


def _bad(code: str, message: str, status: int = 422) -> InputError:
    return InputError(code, message, status)


def _label(name: str, value) -> str:
    if not isinstance(value, str) or not ONE_DIGIT.match(value):
        raise _bad("invalid_digits", f"{name}: expected one digit 0-9, got {str(value)[:20]!r}")
    return value


def wanted(body: CorrectionIn, read: str) -> dict[int, str]:
    """The body as {position: true digit}, checked against the item's reading ``read``; only digits that
    differ from the reading are corrections."""
    if body.position is not None or body.to is not None:
        if body.position is None or body.to is None:
            raise _bad("missing_field", "position and to: send both (or mapping, or digits)")
        if body.mapping is not None:
            raise _bad("invalid_request", "send position/to or mapping, not both")
        changes = {body.position: _label("to", body.to)}  # `from` is what the page showed; the model's reading is kept
    elif body.mapping is not None:
        if not body.mapping:
            raise _bad("missing_field", "mapping: empty; give at least one position")
        changes = {}
        for key, value in body.mapping.items():
            if not key.isdigit() or len(key) > 4:
                raise _bad("invalid_position", f"mapping: {key[:10]!r} is not a position (0, 1, 2, ...)")
            changes[int(key)] = _label(f"mapping[{key}]", value)
    elif body.digits is not None:
        if not body.digits.isascii() or not body.digits.isdigit():
            raise _bad("invalid_digits", "digits: only the characters 0-9 are allowed")
        if len(body.digits) != len(read):
            raise _bad("wrong_count", f"digits: {len(body.digits)} digits sent, the item has {len(read)}; send as "
                       "many digits as were read, or a mapping of positions")
        changes = {i: d for i, d in enumerate(body.digits) if d != read[i]}
        if not changes:
            raise _bad("no_change", "digits: identical to the reading; nothing to correct")
    else:
        raise _bad("missing_field", "send digits, mapping, or position and to")
    for pos, label in changes.items():
        if not 0 <= pos < len(read):
            raise _bad("position_out_of_range", f"position {pos}: the item has {len(read)} digits (0-{len(read) - 1})")
        if body.digits is None and label == read[pos]:
            raise _bad("no_change", f"position {pos}: already reads {label}; nothing to correct")
    return changes


@router.post("/api/jobs/{job_id}/items/{index}/corrections", status_code=201, response_model=CorrectionOut,
             responses=ERRORS, summary="Correct an item's digits; each corrected crop becomes a training sample")
async def correct_item(request: Request, job_id: str, index: int, body: CorrectionIn,
                       svc: Services = Depends(services)):
    s = svc.settings
    if not s.corrections_enabled:
        raise _bad("corrections_disabled", "corrections are turned off on this server (PHONEREADER_CORRECTIONS_ENABLED)", 403)
    await visible_job(svc, request, job_id)
    job = await svc.store.get(job_id)
    if job is None:
        raise _not_found(job_id)
    items = job["items"]
    if not 0 <= index < len(items):
        raise _bad("item_not_found", f"item {index}: the job has {len(items)} items (0-{len(items) - 1})", 404)
    if any(i["status"] in ("queued", "running") for i in items[: index + 1]):
        raise _bad("not_ready", f"item {index} is not read yet (or its index may still move); try when it is done", 409)
    item = items[index]
    if item["status"] != "succeeded":
        raise _bad("item_failed", f"item {index} failed ({(item.get('error') or {}).get('code', 'failed')}); "
                   "there are no digits to correct", 409)
    read = item["digits"] or ""  # as shown now, with earlier corrections
    changes = wanted(body, read)
    model = item["model_digits"] or read

    names = {pos: crop_name(item["unit"], item["field"], pos) for pos in changes}
    records = await svc.redis.hmget(svc.store.keys.crops(job_id), [names[p] for p in sorted(changes)])
    if any(r is None for r in records):
        raise _bad("no_crops", f"item {index}: its crops were not kept (corrections were off when it was read, or "
                   "it was read by an older worker), so it cannot become a training sample", 409)
    claim = svc.redis.register_script(_CLAIM)
    args = [a for p in sorted(changes) for a in (names[p], changes[p])]
    taken = await claim(keys=[svc.store.keys.corrections(job_id)], args=[*args, s.result_ttl_s])
    if taken is not None:
        pos = int(taken.decode().rsplit(".", 1)[1])
        raise _bad("duplicate", f"position {pos} of item {index} is already corrected; one correction per digit", 409)

    t = now()
    samples = [(dataset.Sample(label=changes[p], wrong=model[p], job=job_id, item=index, unit=item["unit"],
                               field=item["field"], position=p, model_version=item.get("model_version") or "",
                               time=t), rec) for p, rec in zip(sorted(changes), records)]
    try:  # the original crop becomes a PNG only here, off the event loop (workers store raw pixels)
        files = await run_in_threadpool(lambda: [dataset.save(s.corrections_path, sample, *unpack(rec))
                                                 for sample, rec in samples])
    except BaseException:  # not stored: let the user send it again
        await svc.redis.hdel(svc.store.keys.corrections(job_id), *names.values())
        raise
    saved = [{"position": x[0].position, "from": x[0].wrong, "to": x[0].label, "file": f} for x, f in zip(samples, files)]
    return JSONResponse({"item": corrected(item, changes, job.get("region") or ""), "saved": saved}, status_code=201)


def _admin(request: Request, svc: Services = Depends(services)) -> None:
    token = svc.settings.admin_token
    if not token:
        raise _bad("admin_disabled", "no admin token is configured (PHONEREADER_ADMIN_TOKEN); admin endpoints are off", 403)
    sent = request.headers.get(ADMIN_HEADER)
    if sent is None:
        raise _bad("unauthorized", f"{ADMIN_HEADER}: the admin token is required", 401)
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise _bad("forbidden", f"{ADMIN_HEADER}: the admin token is not valid", 403)


@router.get("/api/corrections/export", responses=ERRORS, dependencies=[Depends(_admin)],
            summary="Download the corrections data set as a zip (admin)",
            response_class=FileResponse)
async def export_corrections(svc: Services = Depends(services)):
    path = await run_in_threadpool(dataset.export_zip, svc.settings.corrections_path)
    return FileResponse(path, media_type="application/zip", filename="corrections.zip",
                        background=BackgroundTask(os.unlink, path))
