"""Phone rules on top of per-digit probabilities: validity, formats, and correction by context.

The model reads each digit alone; a phone number is not a random string. When the top reading is not a
valid number for the region but a slightly less likely combination of the top-3 alternatives is, the
valid one is almost always what was written (people rarely write invalid numbers, the model is
calibrated, so "slightly less likely" is a real probability ratio). We search combinations best-first
by joint probability, bounded in count and in how far below the top reading we are willing to go.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import phonenumbers
from phonenumbers import PhoneNumberFormat

# A correction must be at least this probable relative to the top reading. 0.02 until session 10; with the
# second opinion's better calibrated doubts, 0.01 fixed 4 val lines (seeds 0-2) and changed no val form or
# boxes reading; 0.002 (tried in an earlier session) also made wrong readings valid.
MIN_RATIO = 0.01
MAX_TRIES = 2000  # candidates examined at most (each is one phonenumbers parse, ~20 us)
TOP_K = 3
# Where the national format writes a trunk prefix (a British or French 0), a number written nationally
# starts with it: as the first digit of a reading it is this much likelier than the model's uniform class
# prior says. Only the search for a valid reading uses it; the digit keeps the model's own confidence.
PREFIX_PRIOR = 100.0


@dataclass
class PhoneInfo:
    valid: bool = False
    e164: str | None = None
    formatted: str | None = None
    international: str | None = None
    region: str | None = None


def _parse(digits: str, region: str, plus: bool):
    try:
        return phonenumbers.parse(("+" if plus else "") + digits, None if plus else region)
    except phonenumbers.NumberParseException:
        return None


def info(digits: str, region: str, plus: bool = False) -> PhoneInfo:
    """Validity and formats; an unparseable or invalid string still gets formats when it is possible."""
    if not digits:
        return PhoneInfo(region=region)
    num = _parse(digits, region, plus)
    if num is None:
        return PhoneInfo(region=region)
    valid = phonenumbers.is_valid_number(num)
    if not valid and not phonenumbers.is_possible_number(num):
        return PhoneInfo(region=region)
    return PhoneInfo(
        valid=valid,
        e164=phonenumbers.format_number(num, PhoneNumberFormat.E164),
        formatted=phonenumbers.format_number(num, PhoneNumberFormat.NATIONAL),
        international=phonenumbers.format_number(num, PhoneNumberFormat.INTERNATIONAL),
        region=phonenumbers.region_code_for_number(num) or region,
    )


def is_valid(digits: str, region: str, plus: bool = False) -> bool:
    num = _parse(digits, region, plus)
    return num is not None and phonenumbers.is_valid_number(num)


def _possible_length(digits: str, region: str) -> bool:
    """Could some substitution of these digits be a number of the region? Mostly a question of length,
    but a first digit that becomes the national prefix changes the length of the national number: a
    British "07911 123456" whose filled-in 0 was read as 8 is eleven national digits, which no British
    number has, until the 8 goes back to 0."""
    prefix = national_prefix(region)
    heads = [digits] + ([prefix + digits[len(prefix):]] if prefix and len(digits) > len(prefix) else [])
    for head in heads:
        num = _parse(head, region, False)
        if num is not None and phonenumbers.is_possible_number(num):
            return True
    return False


def national_prefix(region: str) -> str:
    """The digits people may write before the national number (the US 1, a British or French 0), or ''."""
    return phonenumbers.ndd_prefix_for_region(region.upper(), True) or ""


def _national_digits(num: phonenumbers.PhoneNumber) -> str:
    """The digits of the number as its national format writes it (with the trunk prefix, where written)."""
    return "".join(ch for ch in phonenumbers.format_number(num, PhoneNumberFormat.NATIONAL) if ch.isdigit())


@lru_cache(maxsize=None)
def written_prefix(region: str) -> str:
    """The trunk prefix when the region's national format starts with it (a British or French 0, not
    the US 1, which "(201) 555-0123" leaves out), else ''."""
    prefix = national_prefix(region)
    example = phonenumbers.example_number(region.upper())
    if not prefix or example is None:
        return ""
    return prefix if _national_digits(example).startswith(prefix) else ""


def well_formed(digits: str, region: str, plus: bool = False) -> bool:
    """Is ``digits`` exactly a number as people write it: the national number, after at most the
    national prefix (a trunk 0, the US 1) or, with '+', the country code? phonenumbers itself is
    lenient: it reads "11 212 555 0142" as a valid US number, so a reading with an invented digit
    would pass its validity check. Where the region's own national format writes the trunk prefix
    (a British or French 0), a number without it is not how people write it either: "7911 123456"
    for a British line is more likely "07911 123456" whose 0 touched the 7 and was lost, so the
    search goes on for a reading with it (and keeps the first reading when none is near)."""
    num = _parse(digits, region, plus)
    if num is None:
        return False
    national = "0" * (num.number_of_leading_zeros or 1) * bool(num.italian_leading_zero) + str(num.national_number)
    if not digits.endswith(national):
        return False
    head = digits[: len(digits) - len(national)]
    prefix = national_prefix(phonenumbers.region_code_for_number(num) or region)
    if plus:
        return head in ("", str(num.country_code))
    written = _national_digits(num)
    return head == prefix if prefix and written == prefix + national else head in ("", prefix)


def correct(
    probs: np.ndarray,
    region: str,
    plus: bool = False,
    min_ratio: float = MIN_RATIO,
    max_tries: int = MAX_TRIES,
    top_k: int = TOP_K,
) -> np.ndarray | None:
    """Digit indices of the most probable *valid* reading, or None when the top reading is valid or no
    valid reading within ``min_ratio`` of it exists. ``probs`` is (n, 10), one row per digit."""
    probs = np.asarray(probs, np.float64)
    n = len(probs)
    if n == 0:
        return None
    top = "".join(str(d) for d in probs.argmax(axis=1))
    if is_valid(top, region, plus):
        return None
    if not plus and not _possible_length(top, region):
        return None  # wrong length for the region: no substitution of digits can fix it
    lead = "" if plus else written_prefix(region)
    if len(lead) == 1 and n > 1:
        probs = probs.copy()
        probs[0, int(lead)] *= PREFIX_PRIOR
    order = np.argsort(-probs, axis=1)[:, :top_k]
    logp = np.log(np.clip(np.take_along_axis(probs, order, axis=1), 1e-12, None))
    floor = logp[:, 0].sum() + np.log(min_ratio)
    start = (0,) * n
    heap = [(-logp[:, 0].sum(), start)]
    seen = {start}
    tries = 0
    while heap and tries < max_tries:
        neg, idx = heapq.heappop(heap)
        if -neg < floor:
            break
        tries += 1
        digits = "".join(str(order[i, k]) for i, k in enumerate(idx))
        if digits != top:
            if is_valid(digits, region, plus):
                return np.array([order[i, k] for i, k in enumerate(idx)])
        for i in range(n):
            if idx[i] + 1 < order.shape[1]:
                nxt = idx[:i] + (idx[i] + 1,) + idx[i + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (neg + logp[i, idx[i]] - logp[i, idx[i] + 1], nxt))
    return None
