"""The HTTP contract's shapes. Routes return these, so ``/docs`` shows exactly what clients get."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from phonereader.schemas import DigitDetail

JobStatus = Literal["queued", "running", "succeeded", "partial", "failed"]
ItemStatus = Literal["queued", "running", "succeeded", "failed"]


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. unsupported_type.")
    message: str = Field(description="What is wrong, naming the field or file.")


class ItemError(BaseModel):
    code: str
    message: str


class JobCreated(BaseModel):
    id: str
    status: JobStatus
    status_url: str
    items_total: int = Field(description="Units: images, pages and zip entries (a form page may later yield several items).")


class Progress(BaseModel):
    done: int = Field(description="Units read (succeeded or failed).")
    total: int


class Item(BaseModel):
    index: int = Field(description="Position in `items`; final once every earlier unit is done.")
    unit: int = Field(description="Which uploaded image/page/entry this came from (0-based).")
    field: int | None = Field(None, description="Which field of a form page (0-based), when it held several.")
    source: str = Field(description="File name, `#page` for pages, `archive.zip/entry` for zip entries.")
    status: ItemStatus
    digits: str | None = None
    formatted: str | None = None
    valid: bool | None = None
    confidence: float | None = None
    needs_review: bool | None = None
    digits_detail: list[DigitDetail] = Field(default_factory=list)
    error: ItemError | None = None
    kind: str | None = None
    e164: str | None = None
    international: str | None = None
    region: str | None = None
    corrected: bool | None = None
    raw_digits: str | None = None
    model_version: str | None = None
    model_digits: str | None = Field(None, description="What the service read, when a user has corrected `digits` since.")
    user_corrected: list[int] = Field(default_factory=list, description="Positions in `digits` a user corrected.")


class Job(BaseModel):
    id: str
    status: JobStatus
    kind: str | None = None
    region: str | None = None
    created_at: float = Field(description="Unix time.")
    updated_at: float
    finished_at: float | None = None
    progress: Progress
    items: list[Item]


class Ready(BaseModel):
    ready: bool
    redis: bool
    workers: list[dict] = Field(default_factory=list, description="Live workers and the model each has loaded.")
    queue_depth: int | None = None
