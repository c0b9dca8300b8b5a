"""Turn an upload into units: one per image, per page of a TIFF or PDF, per zip entry (in archive order).

The gateway reads only headers here (``imageio.sniff`` and ``count_pages``); pixels are decoded by the
workers. Two kinds of problem, two answers:

- A problem with the *request* (too many files or bytes, a top-level file of a type we do not read, an
  empty file) raises :class:`~phonereader.imageio.InputError` and the whole request gets that 4xx.
- A problem with one *item* inside it (a corrupt image header, a bad zip entry, a nested archive)
  becomes a unit that is failed from the start, so the rest of the job still runs.

Zip entries are read into memory by name from the archive's directory; an entry name is only ever a
label (``source``), never a path on disk. Junk (directories, ``__MACOSX/``, dot files) is skipped, and
entries, declared sizes and actually decompressed bytes are all capped.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

from api.jobstore import failed_result
from phonereader.config import Settings
from phonereader.imageio import InputError, count_pages, sniff


@dataclass
class Upload:
    """What the job store needs: units (JSON-able descriptors), the raw files they refer to, and the
    units that already failed while expanding."""

    units: list[dict] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    failed: dict[int, dict] = field(default_factory=dict)


@dataclass
class _Page:
    source: str
    ref: dict | None = None  # {"file", "name", "page", "pages"}
    error: InputError | None = None


def expand(files: list[tuple[str, bytes]], kind: str, settings: Settings) -> Upload:
    """files: (name, bytes) in upload order. ``boxes`` makes one unit of everything; other kinds one
    unit per page."""
    if not files:
        raise InputError("no_files", "files: at least one file is required", 422)
    if len(files) > settings.max_files:
        raise InputError("too_many_files", f"files: {len(files)} files is more than the limit of {settings.max_files}", 413)
    total = sum(len(data) for _, data in files)
    if total > settings.max_upload_bytes:
        raise InputError("too_large", f"files: {total:,} bytes is more than the limit of {settings.max_upload_bytes:,}", 413)

    upload, pages = Upload(), []
    budget = _ArchiveBudget(settings)
    for name, data in files:
        name = name or "upload"
        kind_of = sniff(data, name)  # empty or unsupported top-level file: the request is wrong (422/415)
        if kind_of == "zip":
            pages.extend(_zip_pages(name, data, upload, budget, settings))
        else:
            pages.extend(_file_pages(name, name, data, upload, settings, top_level=True))
        if len(pages) > settings.max_items:
            raise InputError("too_many_items", f"files: more than {settings.max_items} items (images, pages, zip entries)", 413)

    if kind == "boxes":
        bad = next((p for p in pages if p.error), None)
        if not pages:
            raise InputError("no_files", "files: the upload holds no images", 422)
        names = [p.source for p in pages]
        source = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
        upload.units.append({"source": source, "refs": [p.ref for p in pages if p.ref]})
        if bad:
            upload.failed[0] = failed_result(bad.error.code, bad.error.message)
        return upload
    for p in pages:
        upload.units.append({"source": p.source, "refs": [p.ref] if p.ref else []})
        if p.error:
            upload.failed[len(upload.units) - 1] = failed_result(p.error.code, p.error.message)
    if not upload.units:
        raise InputError("no_files", "files: the upload holds no images (an empty archive?)", 422)
    return upload


def _file_pages(source: str, name: str, data: bytes, upload: Upload, settings: Settings,
                top_level: bool) -> list[_Page]:
    """One image or paged file -> its pages. Header problems fail the item; too many pages at the top
    level is a 413 for the request."""
    try:
        if not top_level:
            kind_of = sniff(data, name)
            if kind_of == "zip":
                raise InputError("nested_archive", f"{name}: archives inside archives are not read", 415)
        pages = count_pages(data, name, settings)
    except InputError as e:
        if top_level and e.status == 413:
            raise
        return [_Page(source, error=e)]
    upload.blobs.append(bytes(data))
    file_no = len(upload.blobs) - 1
    if pages == 1:
        return [_Page(source, {"file": file_no, "name": name, "page": 0, "pages": 1})]
    return [_Page(f"{source}#{p + 1}", {"file": file_no, "name": name, "page": p, "pages": pages})
            for p in range(pages)]


class _ArchiveBudget:
    """Caps shared by every archive of one request."""

    def __init__(self, settings: Settings):
        self.entries_left = settings.max_archive_entries
        self.bytes_left = settings.max_archive_bytes
        self.settings = settings

    def take_entry(self, archive: str) -> None:
        self.entries_left -= 1
        if self.entries_left < 0:
            raise InputError("too_many_entries",
                             f"{archive}: more than {self.settings.max_archive_entries} entries in the archives", 413)

    def read(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str) -> bytes:
        if info.file_size > self.bytes_left:
            raise InputError("archive_too_large",
                             f"{archive}: unpacks to more than {self.settings.max_archive_bytes:,} bytes", 413)
        with zf.open(info) as f:  # read no more than the budget, whatever the header claims
            data = f.read(self.bytes_left + 1)
        if len(data) > self.bytes_left:
            raise InputError("archive_too_large",
                             f"{archive}: unpacks to more than {self.settings.max_archive_bytes:,} bytes", 413)
        self.bytes_left -= len(data)
        return data


def _junk(name: str) -> bool:
    """Folders, OS clutter and nameless entries (a damaged directory record): skipped, not items."""
    parts = name.replace("\\", "/").split("/")
    return not name or name.endswith("/") or parts[0] == "__MACOSX" or parts[-1].startswith(".") or parts[-1] in ("Thumbs.db", "desktop.ini")


def _zip_pages(archive: str, data: bytes, upload: Upload, budget: _ArchiveBudget, settings: Settings) -> list[_Page]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:  # NotImplementedError: a zip version it cannot read
        return [_Page(archive, error=InputError("bad_archive", f"{archive}: the zip archive cannot be read ({e})", 422))]
    pages: list[_Page] = []
    with zf:
        for info in infos:
            if _junk(info.filename):  # folders too: ZipInfo.is_dir() fails on a nameless entry
                continue
            budget.take_entry(archive)
            source = f"{archive}/{info.filename}"
            if info.flag_bits & 0x1:
                pages.append(_Page(source, error=InputError("encrypted_entry", f"{source}: the entry is encrypted", 422)))
                continue
            try:
                entry = budget.read(zf, info, archive)
            except InputError:
                raise
            except Exception as e:  # bad CRC, unsupported compression, truncated archive: this entry only
                pages.append(_Page(source, error=InputError("bad_archive", f"{source}: the entry cannot be unpacked ({e})", 422)))
                continue
            if not entry:
                pages.append(_Page(source, error=InputError("empty_file", f"{source} is empty (0 bytes)", 422)))
                continue
            pages.extend(_file_pages(source, info.filename, entry, upload, settings, top_level=False))
            if len(pages) > settings.max_items:
                break
    return pages
