"""What a recognition produces. Worker, gateway, CLI and web page all speak these shapes."""

from typing import Literal

from pydantic import BaseModel, Field

Kind = Literal["boxes", "line", "form", "auto"]


class Alternative(BaseModel):
    digit: str
    p: float


class DigitDetail(BaseModel):
    """One cut-out glyph: a digit, or an empty box (``digit`` is None) on a boxes page."""

    digit: str | None
    confidence: float = Field(description="Calibrated probability of `digit` (0 for an empty box).")
    alternatives: list[Alternative] = Field(default_factory=list, description="Top 3, best first.")
    box: tuple[int, int, int, int] = Field(description="x0, y0, x1, y1 in the source image.")
    empty: bool = False
    needs_review: bool = Field(False, description="`confidence` is under the review threshold: a person should look.")


class Reading(BaseModel):
    """The result for one number: a boxes submission, a line image, or one field of a form."""

    kind: Literal["boxes", "line", "form"]
    digits: str
    confidence: float = Field(description="Probability that every digit is right (product).")
    needs_review: bool = Field(description="A digit, or the whole number (`confidence`), is under the review threshold.")
    digits_detail: list[DigitDetail]
    valid: bool = False
    e164: str | None = None
    formatted: str | None = Field(None, description="National format for the region.")
    international: str | None = None
    region: str | None = None
    corrected: bool = Field(False, description="Phone rules replaced the top reading by a valid one.")
    raw_digits: str = Field("", description="The model's top reading before phone-rule correction.")
    model_version: str = ""
