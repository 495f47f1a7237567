"""A tiny pilot problem generated in code: three generic-layout datasets of 32x32 images.

Synthetic images: flat blue-grey background, bright straight lines (class ``line``).
Real images: a warm, darker, noisy background with dark lines. Small enough that a whole
pilot (a few iterations per run) takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synth2real.data.classes import ClassSpec, save_class_spec
from synth2real.data.io import write_image_atomic

CLASSES = ClassSpec(names=("background", "line"), colors=((0, 0, 0), (255, 0, 0)))
SIZE = 32


def _scene(rng: np.random.Generator, real: bool, h: int = SIZE, w: int = SIZE):
    label = np.zeros((h, w), np.uint8)
    for _ in range(2):
        if rng.random() < 0.5:
            label[int(rng.integers(2, h - 2)), :] = 1
        else:
            label[:, int(rng.integers(2, w - 2))] = 1
    if real:
        bg = np.array([150, 110, 80], np.float32)
        fg = np.array([40, 30, 25], np.float32)
    else:
        bg = np.array([90, 110, 160], np.float32)
        fg = np.array([240, 240, 240], np.float32)
    img = np.where(label[..., None] == 1, fg, bg)
    if real:
        img = img + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), label


def write_dataset(root: Path, n: int, real: bool, seed: int, prefix: str) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, lab = _scene(rng, real)
        write_image_atomic(root / "images" / f"{prefix}{i:02d}.png", img)
        write_image_atomic(root / "labels" / f"{prefix}{i:02d}.png", lab)
    save_class_spec(CLASSES, root / "classes.yaml")
    return root


def make_tiny_pilot_data(root: Path) -> dict[str, Path]:
    """``{"source", "references", "test"}`` folders under ``root`` (6 / 2 / 3 images)."""
    return {
        "source": write_dataset(root / "synthetic", 6, real=False, seed=0, prefix="s"),
        "references": write_dataset(root / "real", 2, real=True, seed=1, prefix="r"),
        "test": write_dataset(root / "real_test", 3, real=True, seed=2, prefix="t"),
    }


#: a budget that trains in well under a second per run on a CPU
TINY_BUDGET = {
    "iterations": 3,
    "batch_size": 2,
    "crop": 32,
    "model_kwargs": {"channels": [4, 8]},
    "warmup": 0,
    "cache": False,
}
