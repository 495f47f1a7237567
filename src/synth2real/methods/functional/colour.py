"""Image plumbing shared by the classical methods: checks of the array conventions,
CIELAB conversions, rounding back to ``uint8`` and blending.

The conventions are those of :mod:`synth2real.methods.functional`.
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_SLOTS = 256  # one row per possible uint8 label value


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Raise ``ValueError`` unless ``image`` is ``HxWx3 uint8``; returns it contiguous."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"{what}: expected an HxWx3 RGB array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8, got {image.dtype}")
    return np.ascontiguousarray(image)


def check_label(label: np.ndarray, image: np.ndarray, what: str = "label") -> np.ndarray:
    """Raise ``ValueError`` unless ``label`` is ``HxW uint8`` of the image's size."""
    if not isinstance(label, np.ndarray) or label.shape != image.shape[:2]:
        raise ValueError(
            f"{what}: shape {getattr(label, 'shape', None)} differs from the image's {image.shape[:2]}"
        )
    if label.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 class indices, got {label.dtype}")
    return np.ascontiguousarray(label)


_UNIT_LUT = np.arange(256, dtype=np.float32) / np.float32(255)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` RGB -> ``HxWx3 float32`` CIELAB (L 0..100)."""
    x = cv2.LUT(image, _UNIT_LUT)  # uint8 -> float32 in [0, 1] in one pass
    return cv2.cvtColor(x, cv2.COLOR_RGB2Lab, dst=x)


def rgb_to_lab_where(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """:func:`rgb_to_lab` of the pixels where ``where`` (``HxW bool``) is True; 0 elsewhere.

    The conversion is per pixel, so the values equal a full conversion's; converting a
    sparse region this way costs a fraction of the whole image. Falls back to the full
    conversion when the region covers most of the image.
    """
    idx = np.flatnonzero(where.reshape(-1))
    if idx.size > 0.6 * where.size:
        return rgb_to_lab(image)
    out = np.zeros(image.shape, np.float32)
    if idx.size:
        px = image.reshape(-1, 3)[idx].reshape(-1, 1, 3)
        out.reshape(-1, 3)[idx] = rgb_to_lab(px).reshape(-1, 3)
    return out


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """``HxWx3 float32`` CIELAB -> ``HxWx3 uint8`` RGB (out-of-gamut colours clipped)."""
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return unit_to_uint8(rgb)


def unit_to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in ``[0, 1]`` (values outside are clipped) -> ``uint8``, rounded.

    ``x`` is clipped below in place; ``cv2.convertScaleAbs`` then scales, rounds to
    nearest and saturates at 255 in one pass.
    """
    np.maximum(x, 0, out=x)
    return cv2.convertScaleAbs(x, alpha=255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round to nearest and clip to ``0..255``: the float -> uint8 path of values in 0..255."""
    if x.dtype != np.float32 or not x.flags.writeable:
        x = x.astype(np.float32)
    np.maximum(x, 0, out=x)
    return cv2.convertScaleAbs(x)


def blend(original: np.ndarray, transformed: np.ndarray, strength: float) -> np.ndarray:
    """``(1 - strength) * original + strength * transformed`` on uint8 images (rounded)."""
    if strength >= 1.0:
        return transformed
    if strength <= 0.0:
        return original.copy()
    return cv2.addWeighted(transformed, float(strength), original, 1.0 - float(strength), 0.0)


def to_colorspace(image: np.ndarray, color_space: str) -> np.ndarray:
    """``uint8`` RGB -> float32 working space: ``"lab"`` (CIELAB) or ``"rgb"`` (0..255)."""
    if color_space == "lab":
        return rgb_to_lab(image)
    if color_space == "rgb":
        return image.astype(np.float32)
    raise ValueError(f"unknown colour space {color_space!r} (lab or rgb)")
