"""Reading and writing image files, robustly and atomically.

Every reader raises :class:`~synth2real.errors.DataError` naming the file; every writer
writes to a temporary file in the destination folder and renames it into place, so a
killed process never leaves a half-written output behind. Written files get the mode a
plain ``open()`` gives (``0o666`` less the umask).

Pillow's decompression-bomb guard is kept: an image of more than twice
``PIL.Image.MAX_IMAGE_PIXELS`` pixels (about 179 megapixels by default; a corrupt or
hostile header can claim billions) is a ``DataError`` naming the file, and one above
the limit itself is read after a warning on the ``synth2real.data`` logger that names
the file, once per file, instead of Pillow's ``DecompressionBombWarning``.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import struct
import threading
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from synth2real.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

log = logging.getLogger("synth2real.data")


# -- opening images ------------------------------------------------------------------------
#: ``warnings.catch_warnings`` swaps process-wide state: threads take turns around it.
#: Only images whose PNG or JPEG header does not show them to be small take that path.
_OPEN_LOCK = threading.Lock()
_NOTED_LARGE: set[str] = set()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (they carry the size): C0..CF but DHT, JPG and DAC
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_size(source: str | Path | IO[bytes]) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header, read without Pillow; ``None`` for
    other formats or unreadable headers (the caller then lets Pillow decide)."""
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                return _png_or_jpeg_size(f)
        pos = source.tell()
        try:
            return _png_or_jpeg_size(source)
        finally:
            source.seek(pos)
    except (OSError, ValueError, struct.error):
        return None


def _png_or_jpeg_size(f: IO[bytes]) -> tuple[int, int] | None:
    start = f.tell()
    head = f.read(24)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    if head[:2] != b"\xff\xd8":
        return None
    f.seek(start + 2)
    for _ in range(1000):  # segments before the frame header (APPn, DQT, ...)
        b = f.read(1)
        if b != b"\xff":
            return None
        while b == b"\xff":  # fill bytes
            b = f.read(1)
        if not b or b[0] in (0xD9, 0xDA):  # end of image, start of scan: no frame header
            return None
        if 0xD0 <= b[0] <= 0xD7 or b[0] == 0x01:  # markers without a length
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if b[0] in _JPEG_SOF:
            h, w = struct.unpack(">xHH", f.read(5))
            return w, h
        f.seek(length - 2, 1)
    return None


def _pixel_limit() -> int | None:
    """Pillow's decompression-bomb error threshold (twice ``MAX_IMAGE_PIXELS``)."""
    m = Image.MAX_IMAGE_PIXELS
    return None if m is None else 2 * int(m)


def check_pixel_count(path: str | Path, width: int, height: int, what: str = "") -> None:
    """Raise a ``DataError`` naming ``path`` when a ``width x height`` raster would be
    above Pillow's decompression-bomb limit (used for sizes read from annotations)."""
    limit = _pixel_limit()
    if limit is not None and width * height > limit:
        raise DataError(
            path,
            f"{what}size {height}x{width} (HxW, {width * height:,} pixels) is above the "
            f"{limit:,}-pixel limit for safe decoding (PIL.Image.MAX_IMAGE_PIXELS x 2)",
        )


def open_image(source: str | Path | IO[bytes], path: str | Path, what: str = "") -> Image.Image:
    """``PIL.Image.open(source)`` (lazy: pixels are decoded on first use) with errors
    that name ``path``.

    ``what`` prefixes the messages (``"object 3 (cracks): bitmap: "`` for an image
    inside an annotation file). Images above Pillow's decompression-bomb limit are a
    ``DataError``; images between the warning and the error threshold are opened, with
    one warning on the ``synth2real.data`` logger naming ``path``.
    """
    path = Path(path)
    prefix = f"{what}: " if what else ""
    size = _header_size(source)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        if size is not None and (limit is None or size[0] * size[1] <= limit):
            im = Image.open(source)  # Pillow has nothing to warn about: no lock needed
        else:
            with _OPEN_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(source)
    except FileNotFoundError:
        raise DataError(path, f"{prefix}file not found") from None
    except Image.DecompressionBombError as e:
        raise DataError(
            path,
            f"{prefix}image too large to decode safely ({e}); if it is a genuine image, "
            "downscale it first",
        ) from None
    except UnidentifiedImageError:
        raise DataError(path, f"{prefix}not a readable image (unknown or corrupt format)") from None
    except OSError as e:
        raise DataError(path, f"{prefix}not a readable image ({e})") from None
    w, h = im.size
    if limit is not None and w * h > limit:
        key = f"{path}\0{what}"
        with _OPEN_LOCK:
            first = key not in _NOTED_LARGE
            _NOTED_LARGE.add(key)
        if first:
            log.warning(
                "%s: %s%dx%d (WxH) image of %.0f megapixels, above Pillow's %.0f-megapixel "
                "decompression-bomb warning limit; reading it anyway (about %.1f GiB as RGB)",
                path, prefix, w, h, w * h / 1e6, limit / 1e6, w * h * 3 / 2**30,
            )  # fmt: skip
    return im


def _open(path: Path) -> Image.Image:
    im = open_image(path, path)
    try:
        im.load()  # force decoding now so truncation is reported here
    except (OSError, Image.DecompressionBombError) as e:  # truncated files, broken streams
        raise DataError(path, f"unreadable or truncated image ({e})") from None
    return im


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``HxWx3 uint8 RGB``.

    Handles what real folders contain: EXIF orientation is applied (as a viewer shows
    the photo); grayscale and palette images are converted to RGB; RGBA/LA images are
    composited onto black and their alpha dropped; 16-bit images are scaled to 8 bits
    (``v >> 8``).

    Raises:
        DataError: the file is missing, truncated, or not an image.
    """
    path = Path(path)
    im = _open(path)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # pragma: no cover - corrupt EXIF blocks
        warnings.warn(f"{path}: ignoring unreadable EXIF orientation ({e})", stacklevel=2)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.int64)
        if im.mode == "I" and arr.max(initial=0) <= 255:
            arr8 = arr.astype(np.uint8)
        else:
            arr8 = np.clip(arr >> 8, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr8[..., None], 3, axis=2))
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        arr8 = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255)
        return np.repeat(arr8.astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.dtype != np.uint8:  # 48-bit RGB PNGs decode as uint16 in some Pillow builds
        arr = np.clip(arr.astype(np.int64) >> 8, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _label_array(im: Image.Image, path: Path) -> np.ndarray:
    if im.mode in ("P", "L"):
        return np.asarray(im, dtype=np.uint8)
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8)  # 0/1
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise DataError(path, "label ids outside 0..65535")
        return arr.astype(np.uint16)
    if im.mode in ("RGB", "RGBA"):
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    if im.mode in ("LA", "PA"):
        return np.asarray(im.convert("L") if im.mode == "LA" else im.convert("P"), dtype=np.uint8)
    raise DataError(path, f"unsupported label image mode {im.mode!r}")


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG *without* colour conversion.

    Returns ``HxW`` integer ids for index/grayscale/palette PNGs (the palette index, not
    its colour; 16-bit PNGs keep their values as ``uint16``) and ``HxWx3 uint8`` for RGB
    colour-coded labels (alpha dropped). EXIF orientation is *not* applied: label maps
    are stored the way the pixels are.

    Raises:
        DataError: the file is missing, truncated or not an image.
    """
    path = Path(path)
    return _label_array(_open(path), path)


def read_label_raw(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Like :func:`read_label_png`, plus the palette of palette-mode files.

    Returns:
        ``(raw, palette)``: ``raw`` as :func:`read_label_png`; ``palette`` a ``256x3
        uint8`` array for palette-mode (``P``) files, else ``None``.
    """
    path = Path(path)
    im = _open(path)
    palette = None
    if im.mode == "P":
        pal = im.getpalette() or []
        pal = (list(pal[:768]) + [0] * 768)[:768]
        palette = np.asarray(pal, dtype=np.uint8).reshape(256, 3)
    return _label_array(im, path), palette


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` as displayed (EXIF rotation applied), reading only the header."""
    path = Path(path)
    with open_image(path, path) as im:
        w, h = im.size
        orient = exif_orientation(im)
    if orient in ROTATING_ORIENTATIONS:
        w, h = h, w
    return h, w


# -- atomic writing ------------------------------------------------------------------------
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_TEMP_FLAGS |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _temp_file(path: Path) -> tuple[int, str]:
    """Create a new hidden temporary file beside ``path``: ``(fd, name)``.

    Like ``tempfile.mkstemp`` (exclusive creation, random name) but with the mode a plain
    ``open()`` would give (``0o666`` less the umask), not mkstemp's ``0o600``: the
    temporary file becomes the output.
    """
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` byte for byte, atomically (never touches ``src``)."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(dst)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode ``HxWx3 uint8`` (or ``HxW``) as PNG or JPEG bytes."""
    if image.dtype != np.uint8:
        raise TypeError(f"expected uint8 image, got {image.dtype}")
    buf = io.BytesIO()
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    elif fmt == "png":
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unsupported output image format {fmt!r} (png or jpg)")
    return buf.getvalue()


def write_image_atomic(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write ``image`` (``HxWx3 uint8``) to ``path``; the format follows the extension."""
    path = Path(path)
    atomic_write_bytes(path, encode_image(image, path.suffix or "png", quality))


# -- header facts --------------------------------------------------------------------------
#: EXIF orientation values that swap width and height
ROTATING_ORIENTATIONS = (5, 6, 7, 8)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8) of an opened image; 1 when absent or unreadable."""
    try:
        o = int(im.getexif().get(0x0112, 1))
    except Exception:  # corrupt EXIF blocks must not stop reading
        return 1
    return o if 1 <= o <= 8 else 1


def verify_image(path: str | Path) -> dict:
    """Fully decode ``path`` to prove it is readable; return facts about it.

    JPEGs are decoded at reduced DCT scale (every byte is still read, so truncation is
    still found) to keep scanning fast.

    Returns:
        ``{"height", "width"}`` as displayed (EXIF applied), ``"stored_height"``,
        ``"stored_width"``, ``"mode"`` (Pillow mode), ``"format"``, ``"orientation"``.

    Raises:
        DataError: the file is missing, truncated or not an image.
    """
    path = Path(path)
    with open_image(path, path) as im:
        w, h = im.size
        info = {
            "stored_height": h,
            "stored_width": w,
            "mode": im.mode,
            "format": im.format or "",
            "orientation": exif_orientation(im),
        }
        if im.format == "JPEG":
            im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))
        try:
            im.load()
        except (OSError, Image.DecompressionBombError) as e:
            raise DataError(path, f"unreadable or truncated image ({e})") from None
    if info["orientation"] in ROTATING_ORIENTATIONS:
        w, h = h, w
    info["height"], info["width"] = h, w
    return info
