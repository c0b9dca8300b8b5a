"""Fuzzing what strangers can send: the HTTP API from its OpenAPI schema (schemathesis), and the image
and archive decoders (hypothesis). The promise under test is the same everywhere: a clear 4xx (or an
``InputError``), never a 500, a hang or another exception.

The API runs in-process on fakeredis with a queue that only records (no workers), which is all the
gateway's own code needs. Case counts default to CI-sized runs; ``PHONEREADER_FUZZ_EXAMPLES`` raises
them (``PHONEREADER_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py -s`` prints how many were tried).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter

import fakeredis
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.uploads import expand
from phonereader.config import Settings
from phonereader.imageio import InputError, count_pages, load_page
from tests.fixtures.images import awkward_corpus, multipage_tiff, pdf, zipped

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow narrates the corrupt files we make
EXAMPLES = int(os.environ.get("PHONEREADER_FUZZ_EXAMPLES", "0")) or None
TRIED: Counter = Counter()
LIMITS = Settings(max_pixels=4_000_000, max_pages=5, max_archive_entries=50, max_archive_bytes=8 * 2**20,
                  max_upload_bytes=8 * 2**20, sync_timeout_s=0.05, _env_file=None)


def examples(ci: int) -> int:
    return EXAMPLES or ci


# --- the API, from its OpenAPI schema ----------------------------------------------------------------------


class RecordingQueue:
    async def depth(self) -> dict[str, int]:
        return {"high": 0, "bulk": 0}

    async def send(self, job_id: str, units: list[int]) -> int:
        return len(units)


def _app():
    return create_app(LIMITS, client=fakeredis.FakeAsyncRedis(), queue=RecordingQueue())


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())
schema.config.generation.update(max_examples=examples(40))


@schema.parametrize()
@hsettings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_500(case):
    response = case.call()
    probe = case.method.upper() != case.operation.method.upper()  # schemathesis also tries undocumented methods
    TRIED["api: undocumented method probes" if probe else f"api: {case.method.upper()} {case.path}"] += 1
    # 503 (not ready: no worker here; queue full) and 504 (result not ready in time) are answers the schema
    # documents, always with Retry-After; a 500 or any other 5xx is a bug.
    assert response.status_code != 500, response.text
    if response.status_code in (503, 504):
        assert "retry-after" in response.headers, response.headers
    else:
        case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400 and case.path != "/api/ready":  # ready answers its own Ready body
        # every refusal is the documented JSON error that names the problem
        body = response.json()
        assert {"error", "message"} <= set(body), body


# --- the decoders: valid files of every format, mutated -------------------------------------------------------


def seeds() -> dict[str, bytes]:
    files = dict(awkward_corpus())
    files["scan.tiff"] = multipage_tiff(3)
    files["two.pdf"] = pdf(2)
    return files


SEEDS = seeds()

mutation = st.tuples(
    st.sampled_from(["overwrite", "insert", "delete", "truncate"]),
    st.floats(0, 1),  # where, as a fraction of the file
    st.binary(min_size=1, max_size=64),
)


def mutate(data: bytes, ops) -> bytes:
    for op, where, noise in ops:
        at = int(where * len(data))
        if op == "overwrite":
            data = data[:at] + noise + data[at + len(noise) :]
        elif op == "insert":
            data = data[:at] + noise + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + len(noise) :]
        else:
            data = data[: max(1, at)]
    return data


def assert_ink_or_input_error(data: bytes, name: str) -> None:
    try:
        pages = count_pages(data, name, LIMITS)
        for page in range(min(pages, 3)):
            ink = load_page(data, name, page, LIMITS)
            assert ink.dtype == np.float32 and ink.ndim == 2 and ink.size <= LIMITS.max_pixels
            assert 0 <= float(ink.min()) and float(ink.max()) <= 1
    except InputError as e:
        assert 400 <= e.status < 500 and e.message


@hsettings(max_examples=examples(250), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(SEEDS)), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_files_of_every_format_decode_or_fail_with_input_error(name, ops):
    TRIED["decoder mutated file"] += 1
    assert_ink_or_input_error(mutate(SEEDS[name], ops), name)


@hsettings(max_examples=examples(150), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=2048))
def test_random_bytes_decode_or_fail_with_input_error(data):
    TRIED["decoder random bytes"] += 1
    assert_ink_or_input_error(data, "random.bin")


# --- archives: the upload expansion, with mutated zips and hostile entry names -----------------------------------


ZIP_SEED = zipped([("a.png", SEEDS["gray.png"]), ("dir/b.tiff", SEEDS["scan.tiff"]), ("c.pdf", SEEDS["two.pdf"])])
entry_names = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "C:\\x.png", "a/../../b.png",
                     "\x00.png", "con.png", "./.hidden.png", "~/.ssh/id_rsa", "%2e%2e/x.png"]),
)


def assert_expands_or_fails(files: list[tuple[str, bytes]]) -> None:
    try:
        upload = expand(files, "auto", LIMITS)
    except InputError as e:
        assert 400 <= e.status < 500 and e.message
        return
    assert len(upload.units) >= 1
    for unit in upload.units:
        assert isinstance(unit["source"], str)
        for ref in unit["refs"]:
            assert 0 <= ref["file"] < len(upload.blobs)


@hsettings(max_examples=examples(150), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_zip_uploads_expand_or_fail_with_input_error(ops):
    TRIED["archive mutated zip"] += 1
    assert_expands_or_fails([("upload.zip", mutate(ZIP_SEED, ops))])


@hsettings(max_examples=examples(100), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(entry_names, st.sampled_from(["gray.png", "scan.tiff"])), min_size=1, max_size=6))
def test_hostile_entry_names_are_only_labels(entries):
    TRIED["archive hostile names"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names are part of the point
            data = zipped([(name, SEEDS[seed]) for name, seed in entries])
    except (ValueError, UnicodeEncodeError, IndexError):
        return  # zipfile itself refuses to write such a name (or normalises it to nothing)
    assert_expands_or_fails([("upload.zip", data)])


def test_zz_report_cases_tried(capsys):
    """Runs last in this module (by name): prints how many cases each fuzz target tried."""
    if not TRIED:
        pytest.skip("run with the other tests of this module to count cases")
    with capsys.disabled():
        print("\nfuzz cases tried (none gave a 500 or an unexpected exception):")
        for what, n in sorted(TRIED.items()):
            print(f"  {n:6d}  {what}")
        print(f"  {sum(TRIED.values()):6d}  in all")
