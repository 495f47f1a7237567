"""Label images with a trained model (e.g. unlabelled references for class-wise methods)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth2real.data.dataset import Dataset
from synth2real.progress import progress_bar
from synth2real.segment.infer import as_model, predict_mask
from synth2real.segment.models import SegmentationModel


def predict_labels(
    checkpoint: str | Path | SegmentationModel,
    images: Sequence[np.ndarray] | Dataset,
    *,
    device: str = "auto",
    tile: int | None = 1024,
    progress: bool = False,
) -> list[np.ndarray]:
    """Predicted label maps, one ``HxW uint8`` (class indices) per image, at its own size.

    Args:
        checkpoint: a checkpoint file or a model.
        images: ``HxWx3 uint8`` RGB images, or a dataset (its images are read).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        tile: largest side inferred at once (default 1024).
        progress: show a progress bar.
    """
    model, meta, _ = as_model(checkpoint, device)
    max_size = (meta or {}).get("train_config", {}).get("max_size")
    out = []
    n = len(images)
    with progress_bar(n, "predicting labels", enabled=progress) as bar:
        for i in range(n):
            img = images.image(i) if isinstance(images, Dataset) else images[i]
            out.append(predict_mask(model, img, tile=tile, max_size=max_size))
            bar.advance()
    return out
