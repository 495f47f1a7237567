"""Reading and writing image files, robustly and atomically.

Every reader raises :class:`~synth2real.errors.DataError` naming the file; every writer
writes to a temporary file in the destination folder and renames it into place, so a
killed process never leaves a half-written output behind.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from synth2real.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _open(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()  # force decoding now so truncation is reported here
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown or corrupt format)") from None
    except OSError as e:  # truncated files, broken streams
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
    try:
        with Image.open(path) as im:
            w, h = im.size
            orient = exif_orientation(im)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(path, f"not a readable image ({e})") from None
    if orient in (5, 6, 7, 8):
        w, h = h, w
    return h, w


# -- atomic writing ------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
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
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(path, f"not a readable image ({e})") from None
    with im:
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
        except OSError as e:
            raise DataError(path, f"unreadable or truncated image ({e})") from None
    if info["orientation"] in ROTATING_ORIENTATIONS:
        w, h = h, w
    info["height"], info["width"] = h, w
    return info
