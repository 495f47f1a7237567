"""Small data builders shared by the diffusion tests."""

from __future__ import annotations

import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.methods.base import References


def blobs(h: int, w: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image and a label map of ``k`` rectangular regions (HxW uint8)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    for c in range(1, k):
        y, x = rng.integers(0, h), rng.integers(0, w)
        label[y : y + max(4, h // 3), x : x + max(4, w // 3)] = c
    base = rng.integers(0, 255, (k, 3))
    image = base[label].astype(np.float64) + rng.normal(0, 12, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_references(n: int = 2, h: int = 64, w: int = 64, k: int = 3, seed: int = 10) -> References:
    images, labels = zip(*(blobs(h, w, k, seed + i) for i in range(n)), strict=True)
    names = tuple(f"c{i}" for i in range(k))
    return References(list(images), list(labels), [f"ref{i}" for i in range(n)], ClassSpec(names))
