"""Tiny generated datasets for the segmentation tests (numpy -> PNG in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from synth2real.data.classes import ClassSpec
from synth2real.data.dataset import Dataset, Sample
from synth2real.data.io import read_label_png

CLASSES = ClassSpec(("background", "crack", "blob"), colors=((0, 0, 0), (255, 0, 0), (0, 0, 255)))


class PngDataset(Dataset):
    """``images/<name>.png`` + ``labels/<name>.png`` (index PNG), in test folders."""

    format = "test-png"

    def decode_label(self, sample: Sample) -> np.ndarray:
        return read_label_png(sample.label_path).astype(np.uint8)


def make_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a thin dark line (class 1) and a bright blob (class 2)."""
    base = rng.integers(90, 160, size=3)
    image = np.clip(base + rng.normal(0, 12, size=(h, w, 3)), 0, 255)
    label = np.zeros((h, w), np.uint8)
    # a 2-px line, random orientation
    if rng.random() < 0.5:
        r = int(rng.integers(4, h - 4))
        label[r : r + 2, :] = 1
    else:
        c = int(rng.integers(4, w - 4))
        label[:, c : c + 2] = 1
    # a blob
    cy, cx = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
    rad = int(rng.integers(4, max(5, min(h, w) // 5)))
    yy, xx = np.mgrid[:h, :w]
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2
    label[blob & (label == 0)] = 2
    image[label == 1] = image[label == 1] * 0.35
    image[label == 2] = np.clip(image[label == 2] * 0.5 + 120, 0, 255)
    return image.astype(np.uint8), label


def make_dataset(
    root: Path,
    n: int = 6,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    ignore_border: bool = False,
    classes: ClassSpec = CLASSES,
) -> PngDataset:
    """Write ``n`` scenes of ``size`` (HxW) under ``root`` and return them as a dataset."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        image, label = make_scene(rng, *size)
        if ignore_border:
            label[:2] = classes.ignore_index
        name = f"img_{i:03d}"
        ip, lp = root / "images" / f"{name}.png", root / "labels" / f"{name}.png"
        Image.fromarray(image).save(ip)
        Image.fromarray(label).save(lp)
        samples.append(Sample(name, ip, lp))
    return PngDataset(root, samples, classes)


def make_generic(root: Path, n: int = 6, size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    """The same scenes in the generic layout (``images/``, ``labels/``, ``classes.yaml``)."""
    import yaml

    make_dataset(root, n=n, size=size, seed=seed)
    (root / "classes.yaml").write_text(yaml.safe_dump(CLASSES.to_dict()))
    return root


def tiny_config(**kw):
    """A tiny, fast training run (a 3-level small-unet unless the test asks for another
    model); keyword arguments override its fields."""
    from synth2real.segment.config import TrainConfig

    base = dict(
        iterations=12, batch_size=2, crop=32, device="cpu", warmup=2, save_every=5, num_threads=1,
        model_kwargs={"channels": [8, 16, 32]},
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)
