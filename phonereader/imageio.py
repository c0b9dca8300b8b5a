"""Safe decoding of untrusted bytes into ink maps.

The gateway calls :func:`sniff` and :func:`count_pages` to expand an upload into items before it queues
anything, and a worker calls :func:`load_page` per item. Everything here treats the bytes as hostile:
the type comes from magic bytes (never the file name), the pixel count is checked from the header
*before* any pixels are decoded (a 100-byte PNG can claim 10^10 pixels), and every decoder error is
turned into an :class:`InputError` that names what is wrong, so one bad file fails one item, never
the process. No torch here: the gateway imports this module.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PDF_DPI = 250  # handwriting stays legible and a page stays a few megapixels
MAX_PDF_BYTES_SCAN = 1024  # "%PDF-" may follow a little junk; readers accept it within the first KiB


class InputError(ValueError):
    """A problem with one user's file. ``code`` is machine-readable, ``message`` names the problem;
    ``status`` is the HTTP status the gateway answers (413 too large, 415 unsupported, 422 undecodable)."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def __reduce__(self):  # survive pickling across Celery / multiprocessing boundaries
        return (type(self), (self.code, self.message, self.status))

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message}


_MAGIC: list[tuple[bytes, int, str]] = [  # (signature, offset, type)
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"II+\x00", 0, "tiff"),  # BigTIFF
    (b"MM\x00+", 0, "tiff"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"PK\x03\x04", 0, "zip"),
    (b"PK\x05\x06", 0, "zip"),  # an empty archive
]
IMAGE_TYPES = ("png", "jpeg", "tiff", "gif", "bmp", "webp")
PAGED_TYPES = ("tiff", "pdf")


def sniff(data: bytes, name: str = "") -> str:
    """The file's type from its magic bytes; the name only appears in error messages."""
    label = name or "the file"
    if not data:
        raise InputError("empty_file", f"{label} is empty (0 bytes)", 422)
    head = bytes(data[:MAX_PDF_BYTES_SCAN])
    for magic, offset, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if b"%PDF-" in head:
        return "pdf"
    raise InputError(
        "unsupported_type",
        f"{label} is not a supported file (expected PNG, JPEG, TIFF, GIF, BMP, WebP, PDF or ZIP)",
        415,
    )


def count_pages(data: bytes, name: str, settings) -> int:
    """Pages one file expands into: frames of a TIFF, pages of a PDF, 1 for other images.

    Reads headers only. Raises InputError when the file cannot be read or has more pages than
    ``settings.max_pages``; each page's pixel count is checked later, when it is loaded.
    """
    kind = sniff(data, name)
    if kind == "zip":
        raise InputError("unsupported_type", f"{name}: a zip archive is a bundle of files, not a page", 415)
    if kind == "pdf":
        with _open_pdf(data, name) as pdf:
            n = len(pdf)
    elif kind == "tiff":
        with _open_image(data, name) as im:
            n = _count_frames(im, settings.max_pages + 1)
    else:
        with _open_image(data, name):
            n = 1
    if n == 0:
        raise InputError("no_pages", f"{name} has no pages", 422)
    if n > settings.max_pages:
        raise InputError("too_many_pages", f"{name} has more than {settings.max_pages} pages", 413)
    return n


def load_page(data: bytes, name: str, page: int, settings) -> np.ndarray:
    """One page as an (H, W) float32 ink map in [0, 1] (1 = ink, 0 = paper).

    Transparent pixels are composited onto white first (a canvas PNG's background is transparent,
    and a naive grayscale conversion turns it black, i.e. all ink). EXIF orientation is applied.
    """
    kind = sniff(data, name)
    if kind == "zip":
        raise InputError("unsupported_type", f"{name}: a zip archive is a bundle of files, not a page", 415)
    if page < 0:
        raise InputError("no_such_page", f"{name}: page {page} does not exist", 422)
    if kind == "pdf":
        return _load_pdf_page(data, name, page, settings)
    with _open_image(data, name) as im:
        if page > 0:
            if kind != "tiff" or page >= _count_frames(im, min(page + 1, settings.max_pages + 1)):
                raise InputError("no_such_page", f"{name}: page {page + 1} does not exist", 422)
            if page >= settings.max_pages:
                raise InputError("too_many_pages", f"{name} has more than {settings.max_pages} pages", 413)
            _decode(lambda: im.seek(page), name, data)
        _check_pixels(im, name, settings.max_pixels)
        return _decode(lambda: _to_ink(im), name, data)


# --- images -------------------------------------------------------------------------------------


class _open_image:
    """Context manager: Pillow opens lazily (header only); every failure becomes an InputError."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name

    def __enter__(self) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # odd metadata is not the user's problem...
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # ...a bomb is
                self.im = Image.open(io.BytesIO(self.data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError("too_many_pixels", f"{self.name}: image dimensions are too large", 413) from None
        except UnidentifiedImageError:
            if _lacks_trailer(self.data):
                raise InputError("truncated", f"{self.name}: the image data is truncated", 422) from None
            raise InputError("not_an_image", f"{self.name}: the image header cannot be read", 422) from None
        except Exception as e:  # any decoder failure on hostile bytes is the file's fault
            raise _decode_error(e, self.name, self.data) from None
        return self.im

    def __exit__(self, *exc) -> None:
        self.im.close()


def _lacks_trailer(data: bytes) -> bool:
    """Formats with an end marker tell a cut-off file from a corrupt one."""
    tail = bytes(data[-16:])
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    if data[:3] == b"\xff\xd8\xff":
        return b"\xff\xd9" not in tail
    if data[:4] == b"GIF8":
        return not tail.endswith(b";")
    return False


def _decode_error(e: Exception, name: str, data: bytes = b"") -> InputError:
    text = str(e).lower()
    if isinstance(e, InputError):
        return e
    truncated = isinstance(e, EOFError) or any(t in text for t in ("truncated", "premature end", "broken data stream"))
    if truncated or (data and _lacks_trailer(data)):
        return InputError("truncated", f"{name}: the image data is truncated", 422)
    if isinstance(e, MemoryError):
        return InputError("too_many_pixels", f"{name}: the image is too large to decode", 413)
    return InputError("not_an_image", f"{name}: the image cannot be decoded ({type(e).__name__})", 422)


def _decode(fn, name: str, data: bytes = b""):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF/metadata; not the user's problem
            return fn()
    except InputError:
        raise
    except Exception as e:
        raise _decode_error(e, name, data) from None


def _count_frames(im: Image.Image, limit: int) -> int:
    """Frames of a multi-frame image, counting no further than ``limit`` (a looped IFD chain is finite)."""
    n = 0
    try:
        while n < limit:
            im.seek(n)
            n += 1
    except EOFError:
        pass
    except Exception as e:
        raise _decode_error(e, getattr(im, "filename", "") or "the file") from None
    finally:
        try:
            im.seek(0)
        except Exception:
            pass
    return n


def _check_pixels(im: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse before decoding, from the header's size. A big JPEG decodes at 1/2..1/8 scale instead:
    libjpeg's DCT scaling never materialises the full-size image, so the cap still holds."""
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InputError("not_an_image", f"{name}: the image has no pixels ({w}x{h})", 422)
    if w * h <= max_pixels:
        return
    if im.format == "JPEG":
        for scale in (2, 4, 8):
            if (w // scale) * (h // scale) <= max_pixels:
                im.draft(im.mode if im.mode in ("L", "RGB") else None, (w // scale, h // scale))
                if im.size[0] * im.size[1] <= max_pixels:
                    return
    raise InputError(
        "too_many_pixels", f"{name}: {w}x{h} pixels is more than the limit of {max_pixels:,} pixels", 413
    )


def _to_ink(im: Image.Image) -> np.ndarray:
    """Decode to luminance on white, whatever the mode, and invert to ink."""
    im.load()
    im = ImageOps.exif_transpose(im) or im
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _wide_gray(im)
    else:
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB" if mode != "1" else "L")
        elif mode in ("RGBa", "La", "PA"):
            im = im.convert("RGBA")
        elif mode in ("RGB", "L") and "transparency" in im.info:  # tRNS colour key
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA"):
            alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
            lum = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            gray = lum * alpha + (1.0 - alpha)  # composite onto white paper
        else:
            gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(1.0 - np.clip(gray, 0.0, 1.0), dtype=np.float32)


def _wide_gray(im: Image.Image) -> np.ndarray:
    """16-bit, 32-bit and float grayscale: scale by the type's range (min-max would amplify noise on a blank page)."""
    a = np.asarray(im, dtype=np.float64) if im.mode != "I;16B" else np.asarray(im.convert("I"), dtype=np.float64)
    if im.mode == "F":
        top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0 if np.nanmax(a) <= 255.0 else 65535.0
    elif im.mode.startswith("I;16"):
        top = 65535.0
    else:
        peak = float(a.max()) if a.size else 0.0
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else max(peak, 1.0)
    a = np.nan_to_num(a, nan=top, posinf=top, neginf=0.0)
    return (np.clip(a, 0, top) / top).astype(np.float32)


# --- PDF ---------------------------------------------------------------------------------------


class _open_pdf:
    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name

    def __enter__(self):
        import pypdfium2 as pdfium

        try:
            self.pdf = pdfium.PdfDocument(bytes(self.data))
        except pdfium.PdfiumError as e:
            text = str(e).lower()
            if "password" in text:
                raise InputError("encrypted_pdf", f"{self.name}: the PDF is password-protected", 422) from None
            raise InputError("not_a_pdf", f"{self.name}: the PDF cannot be read ({e})", 422) from None
        except Exception as e:
            raise InputError("not_a_pdf", f"{self.name}: the PDF cannot be read ({type(e).__name__})", 422) from None
        return self.pdf

    def __exit__(self, *exc) -> None:
        self.pdf.close()


def _load_pdf_page(data: bytes, name: str, page: int, settings) -> np.ndarray:
    """Render at PDF_DPI, or lower when the page is so large that the pixel cap would be exceeded."""
    with _open_pdf(data, name) as pdf:
        n = len(pdf)
        if page >= min(n, settings.max_pages):
            if page >= settings.max_pages:
                raise InputError("too_many_pages", f"{name} has more than {settings.max_pages} pages", 413)
            raise InputError("no_such_page", f"{name}: page {page + 1} does not exist (it has {n})", 422)
        try:
            p = pdf[page]
            w_pt, h_pt = p.get_size()
            if not (w_pt > 0 and h_pt > 0):
                raise InputError("not_a_pdf", f"{name}: page {page + 1} has no size", 422)
            scale = PDF_DPI / 72.0
            if w_pt * h_pt * scale * scale > settings.max_pixels:
                scale = float(np.sqrt(settings.max_pixels / (w_pt * h_pt))) * 0.999
            if max(w_pt, h_pt) * scale < 16:
                raise InputError("too_many_pixels", f"{name}: page {page + 1} is too large to render", 413)
            bitmap = p.render(scale=scale, grayscale=True, fill_color=(255, 255, 255, 255))
            gray = bitmap.to_numpy()
        except InputError:
            raise
        except Exception as e:
            raise InputError("not_a_pdf", f"{name}: page {page + 1} cannot be rendered ({type(e).__name__})", 422) from None
    gray = np.asarray(gray)
    if gray.ndim == 3:
        gray = gray[..., :3].mean(axis=2) if gray.shape[2] >= 3 else gray[..., 0]
    return np.ascontiguousarray(1.0 - gray.astype(np.float32) / 255.0, dtype=np.float32)
