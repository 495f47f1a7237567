"""Training losses for segmentation with rare, thin classes (pure torch).

Default ``"ce+dice"``: pixel-wise cross-entropy plus soft Dice averaged over the classes
present in the batch's target. Cross-entropy alone is dominated by the frequent class
(background is ~97 % of the pixels of a crack image), so a model can score a low loss
while predicting no crack at all; the Dice term weighs each present class equally,
whatever its pixel count. Optional class-weighted cross-entropy uses weights from the
training set's pixel frequencies (median-frequency balancing, clipped).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("ce+dice", "ce", "dice")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """``1 - mean_c Dice_c`` over the classes present in ``target``.

    Args:
        logits: ``BxKxHxW`` float.
        target: ``BxHxW`` int64 class indices; ``ignore_index`` pixels are left out of
            both the prediction and the target sums.
        ignore_index: label value to skip.

    Returns:
        scalar; ``0`` (with a gradient path) when no pixel is labelled.
    """
    k = logits.shape[1]
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    probs = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    onehot = F.one_hot(torch.where(valid, target, 0), k).permute(0, 3, 1, 2).float()
    onehot = onehot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return 1.0 - dice[present].mean()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int,
    loss: str = "ce+dice",
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """The training loss.

    Args:
        logits: ``BxKxHxW`` float.
        target: ``BxHxW`` int64 class indices with ``ignore_index``.
        ignore_index: label value to skip.
        loss: ``"ce+dice"`` (default), ``"ce"`` or ``"dice"``.
        class_weights: ``K`` float weights of the cross-entropy term, or ``None``.
        dice_weight: factor of the Dice term in ``"ce+dice"``.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    total = logits.sum() * 0.0
    if loss in ("ce", "ce+dice"):
        if bool((target != ignore_index).any()):
            w = (
                class_weights.to(logits.device, torch.float32)
                if class_weights is not None
                else None
            )
            total = total + F.cross_entropy(
                logits.float(), target, weight=w, ignore_index=ignore_index
            )
    if loss in ("dice", "ce+dice"):
        total = total + (dice_weight if loss == "ce+dice" else 1.0) * soft_dice_loss(
            logits, target, ignore_index
        )
    return total


def class_weights_from_frequencies(freq: np.ndarray, max_weight: float = 10.0) -> np.ndarray:
    """Median-frequency balancing: ``w_c = median(f) / f_c``, clipped to ``max_weight``.

    Args:
        freq: ``K`` pixel shares (or counts) of each class in the training data.
        max_weight: upper bound of any weight (a class of 0.1 % of the pixels would
            otherwise get a weight in the hundreds and make training unstable).

    Returns:
        ``K float32``; classes absent from the data get weight 1.
    """
    f = np.asarray(freq, dtype=np.float64)
    if f.sum() <= 0:
        return np.ones_like(f, dtype=np.float32)
    f = f / f.sum()
    present = f > 0
    med = float(np.median(f[present]))
    w = np.ones_like(f)
    w[present] = np.minimum(med / f[present], max_weight)
    return w.astype(np.float32)
