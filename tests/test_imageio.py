"""Safe decoding: every odd-but-valid file reads as the same ink; every broken one gets a clear InputError."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from phonereader.config import Settings
from phonereader.imageio import InputError, count_pages, load_page, sniff
from tests.fixtures.images import BAR, H, W, awkward_corpus, broken_corpus, multipage_tiff, pdf, png_with_size

LIMITS = Settings(max_pixels=4_000_000, max_pages=5)


@pytest.mark.parametrize("name", sorted(broken_corpus()))
def test_broken_file_gets_a_clear_error(name):
    data, code, status = broken_corpus()[name]
    with pytest.raises(InputError) as err:
        count_pages(data, name, LIMITS)
        load_page(data, name, 0, LIMITS)
    assert (err.value.code, err.value.status) == (code, status)
    assert name in err.value.message or code == "empty_file"


@pytest.mark.parametrize("name", sorted(awkward_corpus()))
def test_awkward_encodings_decode_to_the_same_ink(name):
    data = awkward_corpus()[name]
    assert count_pages(data, name, LIMITS) == 1
    ink = load_page(data, name, 0, LIMITS)
    assert ink.dtype == np.float32 and ink.shape == (H, W)
    assert ink.min() >= 0 and ink.max() <= 1
    assert ink[BAR].mean() > 0.85, "the dark bar is ink"
    paper = np.ones((H, W), bool)
    paper[BAR[0].start - 2 : BAR[0].stop + 2, BAR[1].start - 2 : BAR[1].stop + 2] = False
    assert ink[paper].mean() < 0.08, "paper (and transparent canvas) is not ink"


def test_transparent_canvas_is_composited_on_white_not_black():
    ink = load_page(awkward_corpus()["canvas-rgba.png"], "c.png", 0, LIMITS)
    assert ink[0, 0] == 0.0 and ink[BAR].min() == 1.0


def test_multipage_tiff_pages_are_separate_and_capped():
    data = multipage_tiff(3)
    assert count_pages(data, "scan.tiff", LIMITS) == 3
    rows = [int(np.argmax(load_page(data, "scan.tiff", k, LIMITS)[:, 20])) for k in range(3)]
    assert rows == [10, 11, 12]
    with pytest.raises(InputError) as err:
        load_page(data, "scan.tiff", 3, LIMITS)
    assert err.value.code == "no_such_page"
    with pytest.raises(InputError) as err:
        count_pages(multipage_tiff(7), "big.tiff", LIMITS)
    assert (err.value.code, err.value.status) == ("too_many_pages", 413)


def test_pdf_pages_render_with_the_ink():
    data = pdf(2)
    assert sniff(data, "a.pdf") == "pdf"
    assert count_pages(data, "a.pdf", LIMITS) == 2
    ink = load_page(data, "a.pdf", 1, LIMITS)
    assert ink.ndim == 2 and ink.max() > 0.8 and np.median(ink) < 0.1


def test_pdf_render_respects_the_pixel_cap():
    small = Settings(max_pixels=20_000)
    ink = load_page(pdf(1), "a.pdf", 0, small)
    assert ink.size <= 20_000


def test_pixel_cap_is_checked_before_decoding():
    data = png_with_size(60_000, 60_000)  # 3.6 gigapixels claimed, 100 bytes sent
    with pytest.raises(InputError) as err:
        load_page(data, "x.png", 0, Settings())
    assert err.value.status == 413


def test_input_error_pickles_for_worker_boundaries():
    import pickle

    e = pickle.loads(pickle.dumps(InputError("truncated", "a.png: cut off", 422)))
    assert (e.code, e.message, e.status) == ("truncated", "a.png: cut off", 422)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(0, 2))
def test_fuzz_mutated_png_never_crashes(noise, where):
    """Random bytes spliced into a valid PNG: either an ink map or an InputError, nothing else."""
    data = awkward_corpus()["gray.png"]
    cut = [8, 33, len(data) // 2][where]
    mutated = data[:cut] + noise + data[cut + len(noise) :]
    try:
        ink = load_page(mutated, "fuzz.png", 0, LIMITS)
    except InputError as e:
        assert e.status in (413, 415, 422)
    else:
        assert ink.dtype == np.float32 and ink.ndim == 2 and 0 <= ink.min() and ink.max() <= 1


MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"%PDF-1.7\n"]


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=400))
def test_fuzz_random_bodies_behind_real_magic(magic, body):
    """Hostile bytes behind every supported signature: decoders must fail with InputError, never crash."""
    data = magic + body
    try:
        n = count_pages(data, "fuzz", LIMITS)
        ink = load_page(data, "fuzz", 0, LIMITS)
    except InputError as e:
        assert e.status in (413, 415, 422)
    else:
        assert n >= 1 and ink.ndim == 2
