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


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``1 - mean_c Dice_c`` over the classes present in ``target``.

    Args:
        logits: ``BxKxHxW`` float.
        target: ``BxHxW`` int64 class indices; ``ignore_index`` pixels are left out of
            both the prediction and the target sums.
        ignore_index: label value to skip.
        pixel_weight: ``BxHxW`` weights in ``[0, 1]`` (``None``: all 1). The Dice sums
            are weighted (``sum w p t``, ``sum w p + sum w t``) and the result is scaled
            by the mean weight of the labelled pixels, so that a uniform weight ``q``
            scales the loss by about ``q`` (up to the smoothing term).

    Returns:
        scalar; ``0`` (with a gradient path) when no pixel is labelled.
    """
    k = logits.shape[1]
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    m = valid.unsqueeze(1)
    w = m if pixel_weight is None else pixel_weight.float().unsqueeze(1) * m
    probs = logits.float().softmax(dim=1) * w
    onehot = F.one_hot(torch.where(valid, target, 0), k).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * (onehot * m)).sum(dims)
    denom = probs.sum(dims) + (onehot * w).sum(dims)
    present = (onehot * m).sum(dims) > 0
    dice = (2 * inter + 1.0) / (denom + 1.0)
    out = 1.0 - dice[present].mean()
    if pixel_weight is not None:
        out = out * (w.sum() / valid.sum())
    return out


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int,
    loss: str = "ce+dice",
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss.

    Args:
        logits: ``BxKxHxW`` float.
        target: ``BxHxW`` int64 class indices with ``ignore_index``.
        ignore_index: label value to skip.
        loss: ``"ce+dice"`` (default), ``"ce"`` or ``"dice"``.
        class_weights: ``K`` float weights of the cross-entropy term, or ``None``.
        dice_weight: factor of the Dice term in ``"ce+dice"``.
        pixel_weight: ``BxHxW`` weights in ``[0, 1]`` (self-training's ClassMix batch:
            1 on pasted pixels, the confidence weight on pseudo-labelled ones), or
            ``None`` (all 1: the plain loss). Cross-entropy becomes ``sum(w * ce) / n``
            over the labelled pixels, ``n`` their count (or their summed class weights),
            so a uniform weight ``q`` scales it by ``q`` as in DAFormer; Dice: see
            :func:`soft_dice_loss`. With ``w = 1`` the loss equals the plain one.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    total = logits.sum() * 0.0
    valid = target != ignore_index
    if loss in ("ce", "ce+dice"):
        if bool(valid.any()):
            w = (
                class_weights.to(logits.device, torch.float32)
                if class_weights is not None
                else None
            )
            if pixel_weight is None:
                total = total + F.cross_entropy(
                    logits.float(), target, weight=w, ignore_index=ignore_index
                )
            else:
                ce = F.cross_entropy(
                    logits.float(), target, weight=w, ignore_index=ignore_index, reduction="none"
                )
                n = w[torch.where(valid, target, 0)][valid].sum() if w is not None else valid.sum()
                total = total + (pixel_weight.float() * valid * ce).sum() / n
    if loss in ("dice", "ce+dice"):
        total = total + (dice_weight if loss == "ce+dice" else 1.0) * soft_dice_loss(
            logits, target, ignore_index, pixel_weight
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
