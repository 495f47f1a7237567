"""Score a segmentation model on a labelled dataset, at every image's own resolution.

Per-class IoU, mIoU (over classes present in the target or the prediction: a class
absent from both has IoU ``NaN`` and is left out of the mean), pixel accuracy and the
confusion matrix, accumulated over all pixels of all images (not averaged per image).
Pixels labelled ``ignore_index`` are not scored.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synth2real.data.dataset import Dataset
from synth2real.data.io import atomic_write_bytes, write_image_atomic
from synth2real.errors import ConfigError, DataError
from synth2real.guard import check_output
from synth2real.progress import progress_bar
from synth2real.segment import metrics
from synth2real.segment.checkpoint import resolve_checkpoint
from synth2real.segment.draw import mask_png, overlay
from synth2real.segment.infer import as_model, predict_mask
from synth2real.segment.models import SegmentationModel


@dataclass
class EvalResult:
    """Scores of one model on one dataset.

    Attributes:
        class_names: K names.
        iou: ``K float64`` per-class IoU (``NaN``: class absent from target and prediction).
        miou: mean of the non-NaN IoUs.
        pixel_accuracy: share of scored pixels predicted right.
        confusion: ``KxK int64``, ``confusion[target, prediction]``.
        seconds: wall time of the evaluation.
        num_images: images scored.
    """

    class_names: list[str]
    iou: np.ndarray
    miou: float
    pixel_accuracy: float
    confusion: np.ndarray
    seconds: float
    num_images: int = 0

    def iou_of(self, name: str) -> float:
        """IoU of the class called ``name``."""
        return float(self.iou[self.class_names.index(name)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``NaN`` becomes ``None``)."""

        def num(v: float) -> float | None:
            return None if v is None or math.isnan(v) else float(v)

        return {
            "class_names": list(self.class_names),
            "iou": {n: num(v) for n, v in zip(self.class_names, self.iou, strict=True)},
            "miou": num(self.miou),
            "pixel_accuracy": num(self.pixel_accuracy),
            "confusion": self.confusion.tolist(),
            "seconds": self.seconds,
            "num_images": self.num_images,
        }


def evaluate(
    checkpoint_or_model: str | Path | SegmentationModel,
    dataset: Dataset,
    *,
    device: str = "auto",
    save_dir: str | Path | None = None,
    progress: bool = True,
    tile: int | None = 1024,
    max_size: int | None | Literal["train"] = "train",
) -> EvalResult:
    """Predict every image of ``dataset`` at its own size and score against its labels.

    Args:
        checkpoint_or_model: a checkpoint file (``model.safetensors``), the ``train`` output
            folder holding it, or a model.
        dataset: a labelled dataset with the checkpoint's classes.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        save_dir: when given, writes ``masks/<name>.png`` (index PNG with the class
            palette) and ``overlays/<name>.jpg`` (prediction blended over the image,
            see :func:`synth2real.segment.draw.overlay`),
            and ``scores.json``, atomically.
        progress: show a progress bar.
        tile: largest side inferred at once; larger images are tiled (default 1024).
        max_size: ``"train"`` (default): infer at the checkpoint's training ``max_size``
            when an image is larger (probabilities upsampled, scores at full size);
            an int: that cap; ``None``: always full size.

    Returns:
        :class:`EvalResult`.

    Raises:
        ConfigError: unlabelled dataset, classes that differ from the checkpoint's, or a
            ``save_dir`` that is, lies in or contains the dataset or the checkpoint.
        DataError: an unreadable image or label, or a label of another size.
    """
    t0 = time.perf_counter()
    if save_dir is not None:  # never into the data or beside the checkpoint it reads
        ckpt = (  # the file: a train folder may hold its predictions
            resolve_checkpoint(checkpoint_or_model)
            if isinstance(checkpoint_or_model, (str, Path))
            else None
        )
        inputs = {"the dataset": dataset, "the checkpoint": ckpt}
        check_output(save_dir, inputs, option="save_dir")
    model, meta, _dev = as_model(checkpoint_or_model, device)
    classes = dataset.classes
    if meta is not None and list(meta["classes"]["names"]) != list(classes.names):
        raise ConfigError(
            f"the checkpoint was trained on classes {meta['classes']['names']}, "
            f"the dataset {dataset.root} has {list(classes.names)}"
        )
    if model.num_classes != classes.num_classes:
        raise ConfigError(
            f"model has {model.num_classes} classes, dataset {dataset.root} has {classes.num_classes}"
        )
    if not dataset.has_labels:
        raise ConfigError(f"evaluate needs labels; {dataset.root} has unlabelled images")
    if max_size == "train":
        max_size = (meta or {}).get("train_config", {}).get("max_size")
    k = classes.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    palette = classes.palette()
    save = Path(save_dir) if save_dir is not None else None
    with progress_bar(len(dataset), "evaluating", enabled=progress) as bar:
        for s in dataset.samples:
            image, label = dataset.pair(s)  # DataError naming the file on a size mismatch
            if label is None:
                raise DataError(s.image_path, "evaluate needs a label map for every image")
            pred = predict_mask(model, image, tile=tile, max_size=max_size)
            cm += metrics.confusion_matrix(pred, label, k, classes.ignore_index)
            if save is not None:
                atomic_write_bytes(save / "masks" / f"{s.name}.png", mask_png(pred, palette))
                write_image_atomic(
                    save / "overlays" / f"{s.name}.jpg", overlay(image, pred, palette)
                )
            bar.advance()
    iou = metrics.iou_from_confusion(cm)
    result = EvalResult(
        class_names=list(classes.names),
        iou=iou,
        miou=metrics.mean_iou(cm),
        pixel_accuracy=metrics.pixel_accuracy(cm),
        confusion=cm,
        seconds=time.perf_counter() - t0,
        num_images=len(dataset),
    )
    if save is not None:
        atomic_write_bytes(
            save / "scores.json", (json.dumps(result.to_dict(), indent=1) + "\n").encode()
        )
    return result
