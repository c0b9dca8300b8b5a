"""Phone rules and read() on synthetic probability tables: no model, no images."""

import numpy as np
import pytest

from phonereader.config import Settings
from worker.recognition import Choice, Field, Option, Recognizer
from phonereader import phone


def table(digits: str, sure: float = 0.98, alts: dict[int, tuple[int, float]] | None = None) -> np.ndarray:
    """One row per digit: the written digit at ``sure``; alts[i] = (digit, p) moves mass to an alternative."""
    p = np.full((len(digits), 10), (1 - sure) / 9, np.float64)
    for i, d in enumerate(digits):
        p[i, int(d)] = sure
    for i, (d, q) in (alts or {}).items():
        p[i] = (1 - q - 0.01) / 8
        p[i, d] = q
        top = int(digits[i])
        p[i, top] = max(q + 0.01, 0.01) if top != d else p[i, top]
        p[i] /= p[i].sum()
    return p.astype(np.float32)


def test_valid_top_reading_is_kept():
    assert phone.correct(table("2125550142"), "US") is None


def test_invalid_reading_is_corrected_from_the_alternatives():
    # US area codes never start with 1: the model's second choice for digit 0 (a 7) makes it valid
    probs = table("1125550142", alts={0: (7, 0.35)})
    fixed = phone.correct(probs, "US")
    assert "".join(map(str, fixed)) == "7125550142"
    assert phone.is_valid("7125550142", "US")


def test_no_correction_when_the_alternative_is_too_unlikely():
    probs = table("1125550142", sure=0.9999)  # nothing else is plausible: report it invalid, do not invent
    assert phone.correct(probs, "US") is None


def test_a_correction_may_be_a_hundred_times_less_likely_than_the_top_reading():
    probs = table("1125550142")
    probs[0] = 0.0
    probs[0, 1], probs[0, 7] = 0.985, 0.015  # the valid 7 at 1.5% of the invalid 1: within phone.MIN_RATIO
    assert "".join(map(str, phone.correct(probs, "US"))) == "7125550142"
    probs[0, 1], probs[0, 7] = 0.995, 0.005  # at 0.5% it is not
    assert phone.correct(probs, "US") is None


def test_wrong_length_is_not_corrected_by_substitution():
    assert phone.correct(table("212555014"), "US") is None


def test_a_trunk_zero_read_as_another_digit_is_corrected_though_the_length_then_looks_wrong():
    # A filled-in 0 read as 8: eleven national digits, which no British number has, until the 8 is a 0
    # again. Substitution can fix that length, so the search must run (it once gave up at the length check).
    probs = table("87911123456", alts={0: (0, 0.3)})
    assert not phone.is_valid("87911123456", "GB")
    assert "".join(map(str, phone.correct(probs, "GB"))) == "07911123456"
    probs = table("3612345678", alts={0: (0, 0.3)})  # French: 06 12 34 56 78 with its 0 read as 3
    assert "".join(map(str, phone.correct(probs, "FR"))) == "0612345678"
    assert phone.correct(table("87911123456789", alts={0: (0, 0.3)}), "GB") is None  # too long either way


def test_a_trunk_zero_is_expected_first_where_the_national_format_writes_it():
    # An open 0 read as 3 at 86%, the 0 itself at 0.4%: alone too unlikely (phone.MIN_RATIO), but a British
    # or French number written nationally starts with its 0 (phone.PREFIX_PRIOR)
    probs = table("37308403970")
    probs[0] = 0.0
    probs[0, 3], probs[0, 2], probs[0, 0] = 0.86, 0.136, 0.004
    assert phone.written_prefix("GB") == "0" and phone.written_prefix("FR") == "0"
    assert "".join(map(str, phone.correct(probs, "GB"))) == "07308403970"
    # the prior is about the first digit only: a 0 as unlikely elsewhere is not made up
    later = table("02179460000")  # London's 020 with its second 0 read as 1: invalid
    later[2] = 0.0
    later[2, 1], later[2, 2], later[2, 0] = 0.86, 0.136, 0.004
    assert not phone.is_valid("02179460000", "GB") and phone.correct(later, "GB") is None
    later[2, 1], later[2, 0] = 0.79, 0.074  # as likely as a correction needs without the prior: fixed
    assert "".join(map(str, phone.correct(later, "GB"))) == "02079460000"
    # the US national format leaves its trunk 1 out, so a US first digit gets no such prior
    assert phone.written_prefix("US") == ""
    us = table("1125550142")
    us[0] = 0.0
    us[0, 0], us[0, 1] = 0.004, 0.996  # no US number starts 0 either: the search finds nothing
    assert phone.correct(us, "US") is None


def test_international_numbers_with_plus():
    info = phone.info("442079460018", "US", plus=True)
    assert info.valid and info.e164 == "+442079460018" and info.region == "GB"
    assert not phone.info("442079460018", "US").valid, "without the plus it is a (bad) US number"


@pytest.mark.parametrize(
    "digits,region,e164,national",
    [("2125550142", "US", "+12125550142", "(212) 555-0142"), ("07911123456", "GB", "+447911123456", "07911 123456")],
)
def test_formats_for_the_region(digits, region, e164, national):
    info = phone.info(digits, region)
    assert info.valid and info.e164 == e164 and info.formatted == national


def _field(n: int) -> Field:
    return Field("line", np.zeros((n, 28, 28), np.float32), [(10 * i, 0, 10 * i + 8, 20) for i in range(n)], [False] * n)


def test_read_reports_confidence_alternatives_review_and_correction():
    rec = Recognizer(model=object(), settings=Settings(review_threshold=0.9, default_region="US"))
    probs = table("1125550142", alts={0: (7, 0.35)})
    r = rec.read(_field(10), probs, None)
    assert r.corrected and r.digits == "7125550142" and r.raw_digits == "1125550142"
    assert r.valid and r.e164 == "+17125550142" and r.region == "US"
    first = r.digits_detail[0]
    assert first.digit == "7" and first.confidence == pytest.approx(float(probs[0, 7]))
    assert [a.digit for a in first.alternatives][:2] == ["1", "7"]
    assert r.needs_review, "a corrected digit is below the threshold"
    assert r.confidence == pytest.approx(float(np.prod([probs[i].max() if i else probs[0, 7] for i in range(10)])), rel=1e-4)


def test_confident_valid_reading_needs_no_review():
    rec = Recognizer(model=object(), settings=Settings(review_threshold=0.9))
    r = rec.read(_field(10), table("2125550142", sure=0.99), "US")
    assert not r.needs_review and not r.corrected and r.valid and r.formatted == "(212) 555-0142"


def test_a_number_less_sure_than_the_threshold_needs_review_though_no_digit_is():
    """Ten digits at 0.97 are each above a 0.9 threshold, but all ten are right only about 3 times in 4."""
    rec = Recognizer(model=object(), settings=Settings(review_threshold=0.9))
    r = rec.read(_field(10), table("2125550142", sure=0.97), "US")
    assert not any(d.needs_review for d in r.digits_detail)
    assert r.confidence < 0.9 and r.needs_review
    low = table("2125550142", sure=0.99)
    low[3] = table("5", sure=0.6)[0]
    r = rec.read(_field(10), low, "US")
    assert [d.needs_review for d in r.digits_detail] == [i == 3 for i in range(10)] and r.needs_review


def test_read_checks_the_row_count():
    rec = Recognizer(model=object(), settings=Settings())
    with pytest.raises(ValueError):
        rec.read(_field(3), table("12"), "US")


def test_read_lets_the_model_choose_between_cuts():
    """One blob offered whole (row 1) or split (rows 2, 3): the model's confidence decides."""
    field = Field(
        "line", np.zeros((4, 28, 28), np.float32), [(0, 0, 10, 20), (12, 0, 40, 20)], [False, False],
        choices=[Choice(1, [Option([1], [(12, 0, 40, 20)], 0.0), Option([2, 3], [(12, 0, 25, 20), (26, 0, 40, 20)], -0.5)])],
    )
    rec = Recognizer(model=object(), settings=Settings(), pair_model=None)  # the digit model's table alone
    split_wins = table("4404", sure=0.99)
    split_wins[1] = 0.1  # the whole blob is nothing the model recognises
    r = rec.read(field, split_wins, "US")
    assert r.raw_digits == "404" and len(r.digits_detail) == 3
    whole_wins = table("4804", sure=0.99)
    whole_wins[2:] = 0.1
    r = rec.read(field, whole_wins, "US")
    assert r.raw_digits == "48" and r.digits_detail[1].box == (12, 0, 40, 20)


# --- well formed: what the line search accepts -------------------------------------------------


@pytest.mark.parametrize(
    "digits, region, plus, ok",
    [
        ("2125550142", "US", False, True),
        ("12125550142", "US", False, True),
        ("112125550142", "US", False, False),  # phonenumbers calls this valid; a person never writes it
        ("07911123456", "GB", False, True),
        ("7911123456", "GB", False, False),  # valid, but a British number is written with its trunk 0
        ("612345678", "FR", False, False),
        ("0612345678", "FR", False, True),
        ("447911123456", "GB", True, True),
        ("4407911123456", "GB", True, False),
    ],
)
def test_well_formed_numbers_have_no_invented_digits(digits, region, plus, ok):
    assert phone.well_formed(digits, region, plus) is ok
