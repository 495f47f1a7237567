"""Segmentation scores from a confusion matrix (pure numpy, no model, no files).

Conventions:
- ``confusion[t, p]`` counts pixels of *target* class ``t`` predicted as class ``p``
  (rows: truth, columns: prediction); pixels whose target is ``ignore_index`` (or any value
  ``>= num_classes``) are not counted.
- IoU of class ``c`` = ``TP / (TP + FP + FN)``. A class absent from both the target and the
  prediction (``TP + FP + FN == 0``) has IoU ``NaN``: there is nothing to score, and it is
  left out of the mean. mIoU is the mean over the other classes (``nanmean``), so a class
  that only appears in the prediction counts with IoU 0.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = 255
) -> np.ndarray:
    """Count (target, prediction) pairs.

    Args:
        pred: predicted class indices, any shape, integer dtype, values ``0..num_classes-1``.
        target: true class indices, same shape; ``ignore_index`` (and values
            ``>= num_classes``) are skipped.
        num_classes: K.
        ignore_index: label value to skip (``None``: only out-of-range values are skipped).

    Returns:
        ``KxK int64`` matrix, ``cm[t, p]``.

    Raises:
        ValueError: shapes differ, or ``pred`` holds a value outside ``0..K-1``.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    k = int(num_classes)
    t = target.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    keep = (t >= 0) & (t < k)
    if ignore_index is not None:
        keep &= t != ignore_index
    t, p = t[keep], p[keep]
    if p.size and (p.min() < 0 or p.max() >= k):
        raise ValueError(f"prediction holds values outside 0..{k - 1}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)``, ``K float64``; ``NaN`` for absent classes."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of :func:`iou_from_confusion` over classes present in target or prediction
    (``NaN`` when no pixel was scored)."""
    iou = iou_from_confusion(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Share of scored pixels predicted correctly (``NaN`` when none was scored)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")
