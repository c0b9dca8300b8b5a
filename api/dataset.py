"""The corrections data set on disk, in the PNG-folder layout ``training.data.read_png_folder`` reads::

    <corrections_dir>/
        training/<label>/<job>-<item>-<pos>.png    28x28 model input (white on black, already normalised)
        originals/<label>/<job>-<item>-<pos>.png   the digit as written, cut from the upload
        manifest.jsonl                             one line per sample: file, label, from, job, item, unit,
                                                   field, position, model_version, time

File names are built here from the job id (checked against ``api.jobstore.ID_RE``) and integers only,
never from anything else a client sent. Files are created exclusively: a sample is never overwritten.
``training.extra`` reads this folder (or the zip ``GET /api/corrections/export`` makes of it).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from api.jobstore import ID_RE

MANIFEST = "manifest.jsonl"


@dataclass
class Sample:
    label: str
    wrong: str  # what the model read
    job: str
    item: int
    unit: int
    field: int | None
    position: int
    model_version: str
    time: float

    @property
    def stem(self) -> str:
        if not ID_RE.match(self.job):
            raise ValueError("not a job id")
        return f"{self.job}-{int(self.item)}-{int(self.position)}"


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:  # exclusive: a duplicate can never replace a sample
        f.write(data)


def save(root: Path, sample: Sample, model_input, original_png: bytes) -> str:
    """Write one sample (both PNGs and its manifest line); returns its path relative to ``root``."""
    if not (len(sample.label) == 1 and sample.label.isdigit()):
        raise ValueError("a label is one digit")
    buf = io.BytesIO()
    Image.fromarray(model_input, "L").save(buf, "PNG")
    rel = f"training/{sample.label}/{sample.stem}.png"
    _write_new(root / rel, buf.getvalue())
    if original_png:
        _write_new(root / f"originals/{sample.label}/{sample.stem}.png", original_png)
    line = json.dumps({"file": rel, **asdict(sample), "from": sample.wrong}) + "\n"
    fd = os.open(root / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write() of a short line with O_APPEND: lines from concurrent gateways do not interleave
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return rel


def export_zip(root: Path) -> Path:
    """A zip of the data set in a temporary file (the caller deletes it): PNG folders and the manifest."""
    fd, name = tempfile.mkstemp(suffix=".zip", prefix="corrections-")
    os.close(fd)
    with zipfile.ZipFile(name, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for sub in ("training", "originals"):
            for path in sorted((root / sub).glob("[0-9]/*.png")):
                zf.write(path, path.relative_to(root).as_posix())
        if (root / MANIFEST).is_file():
            zf.write(root / MANIFEST, MANIFEST, compress_type=zipfile.ZIP_DEFLATED)
    return Path(name)
