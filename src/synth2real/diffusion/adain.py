"""AdaIN on latents: global and class-wise, as pure functions of tensors and label maps.

Latents are ``(B, C, h, w)`` float; statistics are per channel, computed in float32 with
the population standard deviation, floored at :data:`STD_FLOOR` (so a class of one pixel
does not divide by zero). Label maps at latent size are ``(B, h, w)`` int64 *slots*:
class indices ``0 .. K-1`` and ``K`` for pixels of no class (the label map's
``ignore_index``).

Global AdaIN (METHOD.md): per channel ``(x - mean(x)) / std(x) * std(s) + mean(s)``.

Class-wise AdaIN (CACTI): for each class ``c`` the pixels of ``c`` get
``(x - mu_c(x)) / sigma_c(x) * sigma_c(s) + mu_c(s)``. Our default (the corrected form):

- statistics of a class are computed over its *eroded* mask (boundary pixels left out)
  when that keeps at least :data:`MIN_ERODED_SHARE` of the class's pixels, else over the
  whole class (thin and small classes: statistics of a few interior pixels, applied to
  all the class's pixels, would scale the others without bound);
- the transform applies to *every* pixel of the class, eroded or not; where the
  statistics come from the eroded mask (a subset of the pixels transformed), the source
  standard deviation is floored at :data:`RELATIVE_STD_FLOOR` times the image's own
  (per channel). Over the whole class no pixel lies more than ``sqrt(n - 1)`` standard
  deviations from the mean, so nothing can blow up there; over a subset a near-constant
  interior would scale the rim by up to ``1 / STD_FLOOR`` without the floor;
- a class missing from the chosen reference takes the statistics pooled over the other
  references that have it; a class no reference has, and pixels of no class, get global
  AdaIN (the image's global statistics mapped to the reference's).

A :class:`~synth2real.diffusion.quirks.ReferenceQuirks` reproduces the reference code
instead: a sigma offset (1.0 in the reference) added to both standard deviations;
statistics over the eroded masks whatever they keep, ``sqrt(var + 1e-5)``; the image
border eroded; pixels removed by the erosion, of classes missing from the reference, of
no class and of classes with index >= 19 left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from synth2real.diffusion.quirks import NO_QUIRKS, ReferenceQuirks
from synth2real.errors import ConfigError

#: standard deviations are floored here (latents of SD have std ~1).
STD_FLOOR = 1e-5
#: a class's statistics use its eroded mask only when that keeps this share of its pixels
MIN_ERODED_SHARE = 0.5
#: class-wise AdaIN's source std is at least this times the image's std (per channel)
RELATIVE_STD_FLOOR = 0.01


# ---------------------------------------------------------------------------------------
# global statistics
# ---------------------------------------------------------------------------------------
def channel_stats(x: Tensor, quirks: ReferenceQuirks = NO_QUIRKS) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of ``x (..., h, w)`` over the last two axes: two
    ``(..., 1, 1)`` float32 tensors; the population std floored at :data:`STD_FLOOR`
    (with ``quirks.reference_statistics``: the reference's ``sqrt(var_unbiased + 1e-5)``)."""
    xf = x.float()
    var, mean = torch.var_mean(
        xf, dim=(-2, -1), keepdim=True, correction=quirks.variance_correction
    )
    return mean, quirks.std(var, STD_FLOOR)


def adain(
    x: Tensor,
    target_mean: Tensor,
    target_std: Tensor,
    *,
    sigma_offset: float = 0.0,
    quirks: ReferenceQuirks = NO_QUIRKS,
) -> Tensor:
    """Global AdaIN of ``x (B, C, h, w)`` to per-channel target statistics.

    Args:
        x: latents.
        target_mean, target_std: ``(B or 1, C, 1, 1)`` (or ``(B, C)``) statistics to reach.
        sigma_offset: added to both standard deviations (0 = plain AdaIN).
        quirks: how ``x``'s statistics are computed (:func:`channel_stats`).

    Returns:
        float32 latents whose per-channel mean and std (with ``sigma_offset = 0``) equal
        the targets.
    """
    mean, std = channel_stats(x, quirks)
    tm = target_mean.float().reshape(target_mean.shape[0], -1, 1, 1)
    ts = target_std.float().reshape(target_std.shape[0], -1, 1, 1)
    return (x.float() - mean) / (std + sigma_offset) * (ts + sigma_offset) + tm


# ---------------------------------------------------------------------------------------
# label maps at latent size
# ---------------------------------------------------------------------------------------
def label_slots(label: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Map a ``HxW uint8`` label map to slots: classes keep their index, everything else
    (``ignore_index`` or any value >= ``num_classes``) becomes ``num_classes``."""
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise ConfigError(f"label map must be HxW, got shape {lab.shape}")
    slots = lab.astype(np.int64)
    slots[(slots >= num_classes) | (lab == ignore_index)] = num_classes
    return slots


def labels_to_latent(
    label: np.ndarray,
    working_hw: tuple[int, int],
    latent_hw: tuple[int, int],
    num_classes: int,
    ignore_index: int = 255,
    thin_share: float = 0.0,
) -> np.ndarray:
    """Bring a label map to latent size: nearest-neighbour resize to the working size,
    then one slot per ``f x f`` block (``f`` = working / latent size).

    Each block takes its majority slot (ties: lowest index; "no class" wins only where it
    is the majority). With ``thin_share > 0``, a block where some classes cover at least
    that share takes the rarest of them in the image instead, so thin classes (cracks,
    poles) survive at latent size rather than vanishing under the majority.

    Args:
        label: ``HxW uint8`` class indices (any size).
        working_hw: ``(H', W')`` the image is translated at.
        latent_hw: ``(h, w)`` of its latent; ``H' / h == W' / w`` must be an integer.
        num_classes: ``K``.
        ignore_index: label of pixels of no class.
        thin_share: share of a block in ``(0, 1]`` from which a rarer class wins it;
            0 = plain majority.

    Returns:
        ``(h, w)`` int64 slots in ``0 .. K`` (``K`` = no class).
    """
    (wh, ww), (h, w) = working_hw, latent_hw
    if wh % h or ww % w or wh // h != ww // w:
        raise ConfigError(
            f"working size {working_hw} is not a whole multiple of latent {latent_hw}"
        )
    if not 0.0 <= thin_share <= 1.0:
        raise ConfigError(f"thin_share must be in [0, 1], got {thin_share}")
    f = wh // h
    slots = label_slots(label, num_classes, ignore_index)
    if slots.shape != (wh, ww):
        slots = cv2.resize(slots.astype(np.int32), (ww, wh), interpolation=cv2.INTER_NEAREST)
        slots = slots.astype(np.int64)
    k1 = num_classes + 1
    block = (np.arange(wh)[:, None] // f) * w + (np.arange(ww)[None, :] // f)
    counts = np.bincount((block * k1 + slots).ravel(), minlength=h * w * k1).reshape(h * w, k1)
    out = counts.argmax(axis=1)
    if thin_share > 0:
        total = counts.sum(0).astype(np.float64)  # pixels of each slot in the image
        rarity = np.where(np.arange(k1) < num_classes, -total, -np.inf)  # "no class" never
        cand = counts >= thin_share * f * f
        score = np.where(cand, rarity[None, :], -np.inf)
        has = np.isfinite(score).any(axis=1)
        out = np.where(has, score.argmax(axis=1), out)
    return out.reshape(h, w).astype(np.int64)


def erode_slots(slots: Tensor, iterations: int = 1, *, border_erodes: bool = False) -> Tensor:
    """Which pixels survive an erosion of their own class's mask.

    A pixel survives one iteration when its 4 neighbours (3x3 cross, as
    ``scipy.ndimage.binary_erosion``'s default) belong to its class and survived too.
    By default the image border does not erode (it is not a class boundary); with
    ``border_erodes`` outside the image counts as another class, as in
    ``binary_erosion``'s default ``border_value=0`` (the reference code).

    Args:
        slots: ``(B, h, w)`` int64 slots.
        iterations: erosion steps (0 = keep everything).
        border_erodes: pixels on the image border erode.

    Returns:
        ``(B, h, w)`` bool.
    """
    keep = torch.ones_like(slots, dtype=torch.bool)
    if iterations <= 0:
        return keep
    pad = torch.nn.functional.pad
    if border_erodes:
        lab = pad(slots[:, None].float(), (1, 1, 1, 1), value=-1.0)[:, 0]
    else:
        lab = pad(slots[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0]
    same = torch.ones_like(keep)
    center = slots.float()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = lab[:, 1 + dy : lab.shape[1] - 1 + dy, 1 + dx : lab.shape[2] - 1 + dx]
        same &= nb == center
    for _ in range(iterations):
        if border_erodes:
            k = pad(keep[:, None].float(), (1, 1, 1, 1), value=0.0)[:, 0]
        else:
            k = pad(keep[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0]
        nb_keep = torch.ones_like(keep)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nb_keep &= k[:, 1 + dy : k.shape[1] - 1 + dy, 1 + dx : k.shape[2] - 1 + dx] > 0.5
        keep = keep & same & nb_keep
    return keep


# ---------------------------------------------------------------------------------------
# class statistics
# ---------------------------------------------------------------------------------------
@dataclass
class ClassMasks:
    """Per-image class membership at latent size, computed once per content batch.

    Attributes:
        slots: ``(B, h, w)`` int64 slots (``K`` = no class).
        weights: ``(B, K + 1, h * w)`` float32 0/1: the pixels each class's statistics are
            computed over (the eroded mask where it keeps at least
            :data:`MIN_ERODED_SHARE` of the class, else the whole class; with
            ``quirks.classwise_loop`` the eroded mask whenever it keeps a pixel).
        present: ``(B, K + 1)`` bool, the class has at least one pixel.
        eroded_present: ``(B, K + 1)`` bool, the class keeps a pixel after erosion.
        from_eroded: ``(B, K + 1)`` bool, the class's statistics use its eroded mask (a
            subset of the pixels they are applied to).
        kept: ``(B, h, w)`` bool, the pixel survived the erosion.
        num_classes: ``K``.
    """

    slots: Tensor
    weights: Tensor
    present: Tensor
    eroded_present: Tensor
    from_eroded: Tensor
    kept: Tensor
    num_classes: int


def class_masks(
    slots: Tensor, num_classes: int, erosion: int = 1, quirks: ReferenceQuirks = NO_QUIRKS
) -> ClassMasks:
    """Statistics masks for ``slots (B, h, w)`` (see :class:`ClassMasks`); ``quirks``:
    the reference's erosion (``border_erodes``) and masks (``classwise_loop``)."""
    b, h, w = slots.shape
    k1 = num_classes + 1
    flat = slots.reshape(b, h * w)
    onehot = torch.zeros((b, k1, h * w), dtype=torch.float32, device=slots.device)
    onehot.scatter_(1, flat[:, None, :], 1.0)
    kept = erode_slots(slots, erosion, border_erodes=quirks.border_erodes)
    eroded = onehot * kept.reshape(b, 1, h * w).float()
    n_eroded = eroded.sum(-1, keepdim=True)
    has_eroded = n_eroded > 0
    if quirks.classwise_loop:
        use_eroded = has_eroded
    else:
        use_eroded = n_eroded >= MIN_ERODED_SHARE * onehot.sum(-1, keepdim=True)
        use_eroded &= has_eroded
    weights = torch.where(use_eroded, eroded, onehot)
    return ClassMasks(
        slots=slots,
        weights=weights,
        present=onehot.sum(-1) > 0,
        eroded_present=has_eroded[..., 0],
        from_eroded=use_eroded[..., 0] & (n_eroded[..., 0] < onehot.sum(-1)),
        kept=kept,
        num_classes=num_classes,
    )


def class_stats(x: Tensor, masks: ClassMasks) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class channel statistics of ``x (B, C, h, w)`` over ``masks.weights``.

    Returns:
        ``mean (B, K + 1, C)``, ``var (B, K + 1, C)`` (population) and ``count (B, K + 1)``
        float32; absent classes have count 0, mean 0 and var 0.
    """
    b, c, h, w = x.shape
    xf = x.float().reshape(b, c, h * w)
    wts = masks.weights
    count = wts.sum(-1)
    denom = count.clamp_min(1.0)[..., None]
    mean = torch.bmm(wts, xf.transpose(1, 2)) / denom  # (B, K+1, C)
    # two-pass variance: every weighted pixel belongs to its own slot's class
    mean_pix = torch.gather(mean, 1, masks.slots.reshape(b, h * w, 1).expand(b, h * w, c))
    centered = (xf.transpose(1, 2) - mean_pix) ** 2  # (B, N, C)
    var = torch.bmm(wts, centered) / denom
    return mean, var, count


def pooled_stats(
    mean: Tensor, var: Tensor, count: Tensor, dim: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Pool statistics of several groups along ``dim`` (weighted by pixel counts).

    ``mean, var: (..., G, ..., C)``, ``count: (..., G, ...)`` matching without ``C``.
    Returns the pooled ``mean``, population ``var`` and total ``count``; groups of count 0
    do not contribute (a pool with no pixels has mean 0, var 0).
    """
    n = count.unsqueeze(-1)
    total = n.sum(dim)
    safe = total.clamp_min(1.0)
    m = (mean * n).sum(dim) / safe
    second = ((var + (mean - m.unsqueeze(dim)) ** 2) * n).sum(dim) / safe
    return m, second, total.squeeze(-1)


@dataclass
class TargetStats:
    """What class-wise AdaIN aims at, for each content image of a batch, at one step.

    Attributes:
        mean, std: ``(B, K + 1, C)`` float32 targets per slot (read where ``source`` is
            0 or 1).
        source: ``(B, K + 1)`` int8: 0 = the chosen reference's own class statistics,
            1 = pooled over the other references, 2 = global (no reference has the class,
            or no class).
        global_mean, global_std: ``(B, C)`` the chosen reference's global statistics.
    """

    mean: Tensor
    std: Tensor
    source: Tensor
    global_mean: Tensor
    global_std: Tensor


def classwise_adain(
    x: Tensor,
    masks: ClassMasks,
    target: TargetStats,
    *,
    quirks: ReferenceQuirks = NO_QUIRKS,
) -> Tensor:
    """Class-wise AdaIN of ``x (B, C, h, w)`` (see the module docstring).

    Args:
        x: latents of the images being translated.
        masks: their class masks at latent size (:func:`class_masks`).
        target: the statistics to reach (:class:`TargetStats`).
        quirks: the reference code's statistics, sigma offset and untouched pixels;
            default none.

    Returns:
        float32 latents.
    """
    b, c, h, w = x.shape
    xf = x.float()
    mean, var, _ = class_stats(xf, masks)
    g_mean, g_std = channel_stats(xf, quirks)  # (B, C, 1, 1)
    g_mean, g_std = g_mean[:, :, 0, 0], g_std[:, :, 0, 0]
    std = quirks.std(var, STD_FLOOR)
    if not quirks.classwise_loop:  # bounded gain where the statistics are a subset's
        floored = torch.maximum(std, RELATIVE_STD_FLOOR * g_std[:, None, :])
        std = torch.where(masks.from_eroded[..., None], floored, std)

    use_global = (target.source == 2)[..., None]  # (B, K+1, 1)
    src_mean = torch.where(use_global, g_mean[:, None, :], mean)
    src_std = torch.where(use_global, g_std[:, None, :], std)
    tgt_mean = torch.where(use_global, target.global_mean.float()[:, None, :], target.mean.float())
    tgt_std = torch.where(use_global, target.global_std.float()[:, None, :], target.std.float())

    idx = masks.slots.reshape(b, 1, h * w).expand(b, c, h * w)

    def per_pixel(t: Tensor) -> Tensor:  # (B, K+1, C) -> (B, C, h, w)
        return torch.gather(t.transpose(1, 2), 2, idx).reshape(b, c, h, w)

    offset = quirks.sigma_offset
    out = (xf - per_pixel(src_mean)) / (per_pixel(src_std) + offset) * (
        per_pixel(tgt_std) + offset
    ) + per_pixel(tgt_mean)
    return quirks.keep_untouched(out, xf, masks, target.source)
