"""Small synthetic scenes for the method tests (numpy only, no files)."""

from __future__ import annotations

import cv2
import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.methods import References

CLASSES = ClassSpec(("background", "road", "crack"))


def scene(h: int, w: int, seed: int, *, tint=(0, 0, 0), crack: bool = True):
    """A 3-class scene: noisy background, a road band, thin crack polylines.

    Returns ``(image HxWx3 uint8, label HxW uint8)``; colours stay inside the gamut so
    transfers are not distorted by clipping.
    """
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    label[h // 3 : 2 * h // 3, : max(1, w // 2)] = 1
    if crack:
        for _ in range(3):
            p0 = (0, int(rng.integers(0, h)))
            p1 = (w - 1, int(rng.integers(0, h)))
            cv2.line(label, p0, p1, 2, 2)
    base = np.array([[120, 125, 110], [90, 90, 95], [55, 50, 50]], np.float64) + np.asarray(tint)
    noise = np.array([18, 10, 6], np.float64)
    img = base[label] + rng.normal(0, 1, (h, w, 3)) * noise[label][..., None]
    return np.clip(img, 0, 255).astype(np.uint8), label


def references(
    sizes=((60, 80), (75, 50), (90, 90)), tint=(25, -10, 5), seed=10, **kw
) -> References:
    """Labelled references of different sizes with a colour cast."""
    imgs, labs = [], []
    for i, (h, w) in enumerate(sizes):
        im, lab = scene(h, w, seed + i, tint=tint, **kw)
        imgs.append(im)
        labs.append(lab)
    return References(imgs, labs, [f"ref{i}" for i in range(len(imgs))], CLASSES)


def lab(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float64 CIELAB, computed independently of synth2real."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).astype(np.float64)


def pooled_stats(refs: References, cls: int | None, space=lab):
    """Area-weighted pooled mean and std over the references' pixels of ``cls`` (None: all)."""
    vals, weights = [], []
    for im, lb in zip(refs.images, refs.labels, strict=True):
        x = space(im).reshape(-1, 3)
        m = np.ones(len(x), bool) if cls is None else (lb.reshape(-1) == cls)
        vals.append(x[m])
        weights.append(np.full(m.sum(), 1.0 / (im.shape[0] * im.shape[1])))
    v, w = np.concatenate(vals), np.concatenate(weights)
    mean = np.average(v, axis=0, weights=w)
    std = np.sqrt(np.average((v - mean) ** 2, axis=0, weights=w))
    return mean, std
