"""Self-training on unlabelled real images: mean teacher + ClassMix (DACS / DAFormer recipe).

Pure torch building blocks of the recipe of Tranheden et al., "DACS: Domain Adaptation via
Cross-domain Mixed Sampling" (WACV 2021, code github.com/vikolss/DACS) as refined by Hoyer
et al., "DAFormer" (CVPR 2022, code github.com/lhoyer/DAFormer, ``mmseg/models/uda/dacs.py``
and ``mmseg/models/utils/dacs_transforms.py``). Rare-class sampling is in
:mod:`synth2real.segment.rcs`.

Design: one training step ``it`` (0-based) of a run with unlabelled images
--------------------------------------------------------------------------
0. Before the first step (after pretrained weights are loaded): ``teacher =
   make_teacher(student)``, a frozen copy in eval mode.
1. Labelled batch ``x_s, y_s`` (``B`` crops) exactly as a supervised run draws it (with
   rare-class sampling when ``rcs`` is on: see :mod:`synth2real.segment.rcs`).
2. Unlabelled batch ``x_t``: ``B`` crops of the unlabelled images, drawn uniformly with
   ``numpy.random.default_rng([seed, it, 1])`` through :func:`~synth2real.segment.sampling.augment`
   with an all-zero label, so that padding comes back as ``ignore_index``:
   ``valid_t = label != ignore_index``.
3. Supervised loss: ``L_sup = segmentation_loss(student(x_s), y_s)``.
4. Teacher (no grad, eval mode): ``pseudo, conf = pseudo_labels(teacher(x_t))``;
   ``w = confidence_weight(conf, st_pseudo_threshold, valid_t, st_weight_scope)``.
5. ``g = step_generator(seed, it)``; ``masks = classmix_masks(y_s, g, ignore_index)``;
   ``mixed = classmix(x_s, y_s, x_t, pseudo, w, masks, valid_t, ignore_index)``;
   ``x_m = strong_augment(mixed.image, g, cfg)`` (colour jitter + Gaussian blur).
6. ``L_mix = mixed_loss(student(x_m), mixed.label, mixed.weight, ...)``.
7. ``loss = L_sup + st_mix_weight * L_mix``; backward; optimizer step (DAFormer backprops
   the two terms one after the other to save memory; the gradient is the same).
8. ``ema_update(teacher, student, st_ema_alpha, step=it + 1)``.

Resume: the training-state checkpoint must hold, next to the student (``model.*``) and the
optimizer (``optim.*``), the teacher's full ``state_dict`` (``teacher.*``: parameters *and*
buffers, i.e. BatchNorm running statistics and ``num_batches_tracked``) and this config in
its JSON. No random state needs storing: every random choice of step ``it`` is a function
of ``(seed, it)`` (labelled crops ``default_rng([seed, it])`` as now, unlabelled crops
``default_rng([seed, it, 1])``, ClassMix and augmentation :func:`step_generator`), so a
resumed run redraws exactly what an uninterrupted one would. The final model is the
student (DACS and DAFormer evaluate the student).

Config keys carry the prefix ``st_`` (rare-class sampling: ``rcs_``) so that they live in
one flat ``--set`` / ``--budget`` namespace beside :class:`~synth2real.segment.train.TrainConfig`'s
fields without clashing with them (``TrainConfig.color_jitter`` is the supervised crops'
jitter; ``st_jitter_strength`` only touches the mixed images) and without a nested-key parser.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synth2real.errors import ConfigError
from synth2real.segment.losses import LOSSES

WEIGHT_SCOPES = ("image", "batch")


@dataclass
class SelfTrainConfig:
    """Hyper-parameters of self-training; each default with where it comes from.

    Args:
        st_ema_alpha: EMA decay of the teacher, ``alpha_t = min(1 - 1/(t+1), alpha)`` after
            the student's ``t``-th step (default 0.99: DACS ``trainUDA.py``
            ``alpha_teacher = 0.99``, DAFormer ``configs/_base_/uda/dacs.py`` ``alpha=0.99``;
            DAFormer's final 40k-iteration recipe raises it to 0.999, a time constant of
            1000 steps, half a default synth2real run).
        st_pseudo_threshold: a pseudo-label counts as confident when the teacher's max
            softmax probability is ``>=`` this (default 0.968: DACS hard-codes
            ``max_probs.ge(0.968)``, DAFormer ``pseudo_threshold=0.968``).
        st_weight_scope: ``"image"`` (default, as issue 9 asks: one confidence weight per
            mixed image) or ``"batch"`` (what DACS and DAFormer compute: one share over all
            the pixels of the batch).
        st_mix_weight: factor of the mixed-batch loss in ``L_sup + w * L_mix`` (default 1.0:
            DAFormer adds the two losses; DACS ``consistency_weight`` 1).
        st_mix_share: share of a labelled crop's classes that ClassMix pastes, rounded up
            (default 0.5: ClassMix / DACS "half of the classes", ``(n + n % 2) / 2``).
        st_jitter_p: probability that a mixed image is colour-jittered (default 0.8:
            DACS / DAFormer draw ``u ~ U(0, 1)`` and jitter when ``u > 0.2``; DAFormer's
            ``color_jitter_probability=0.2`` is that threshold, not the probability).
        st_jitter_strength: brightness, contrast and saturation factors in
            ``[1 - s, 1 + s]``, hue shift in ``[-s, s]`` of the colour circle (default 0.2:
            DAFormer ``color_jitter_strength=0.2``; DACS used 0.25).
        st_blur_p: probability of a Gaussian blur (default 0.5: DACS / DAFormer blur when
            ``u ~ U(0, 1) > 0.5``).
        st_blur_sigma: ``(min, max)`` of the blur's sigma in pixels, drawn uniformly
            (default ``(0.15, 1.15)``: DACS / DAFormer ``np.random.uniform(0.15, 1.15)``).
        st_blur_kernel_frac: kernel size per axis = the largest odd number
            ``<= ceil(frac * size)`` (default 0.1: DACS / DAFormer
            ``floor(ceil(0.1 n) - 0.5 + ceil(0.1 n) % 2)``; 25 px for a 256 px crop).
    """

    st_ema_alpha: float = 0.99
    st_pseudo_threshold: float = 0.968
    st_weight_scope: str = "image"
    st_mix_weight: float = 1.0
    st_mix_share: float = 0.5
    st_jitter_p: float = 0.8
    st_jitter_strength: float = 0.2
    st_blur_p: float = 0.5
    st_blur_sigma: tuple[float, float] = (0.15, 1.15)
    st_blur_kernel_frac: float = 0.1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"SelfTrainConfig.{name}: {why} (got {getattr(self, name)!r})")

        if not 0 <= self.st_ema_alpha < 1:
            bad("st_ema_alpha", "must be in [0, 1)")
        if not 0 < self.st_pseudo_threshold <= 1:
            bad("st_pseudo_threshold", "must be in (0, 1]")
        if self.st_weight_scope not in WEIGHT_SCOPES:
            bad("st_weight_scope", f"must be one of {WEIGHT_SCOPES}")
        if self.st_mix_weight < 0:
            bad("st_mix_weight", "must be >= 0")
        if not 0 < self.st_mix_share <= 1:
            bad("st_mix_share", "must be in (0, 1]")
        for name in ("st_jitter_p", "st_blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, "must be in [0, 1]")
        if not 0 <= self.st_jitter_strength <= 0.5:
            bad("st_jitter_strength", "must be in [0, 0.5] (a hue shift of 0.5 is a half turn)")
        if len(self.st_blur_sigma) != 2:
            bad("st_blur_sigma", "must be (min, max)")
        lo, hi = (float(v) for v in self.st_blur_sigma)
        if not 0 < lo <= hi:
            bad("st_blur_sigma", "needs 0 < min <= max")
        self.st_blur_sigma = (lo, hi)
        if not 0 < self.st_blur_kernel_frac <= 1:
            bad("st_blur_kernel_frac", "must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["st_blur_sigma"] = list(d["st_blur_sigma"])
        return d


def step_generator(seed: int, iteration: int, stream: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` that depends only on ``(seed, iteration, stream)``.

    Every random draw of the recipe (ClassMix classes, jitter, blur) comes from it, on the
    CPU whatever the device, so a resumed run (or one on another device) draws the same.
    """
    state = np.random.SeedSequence([int(seed), int(iteration), 0x57, int(stream)])
    return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0]) >> 1)


# -- mean teacher ----------------------------------------------------------------------------
def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` in eval mode: the teacher at step 0 (DAFormer
    ``_init_ema_weights`` copies the student's parameters before the first step)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.grad = None
    teacher.requires_grad_(False)
    return teacher.eval()


def ema_alpha(step: int, alpha: float) -> float:
    """Decay of the EMA update after the student's ``step``-th optimizer step (``>= 1``).

    ``min(1 - 1/(step + 1), alpha)``: DAFormer ``_update_ema(local_iter)``, called with the
    number of steps done. Until ``1 - 1/(step+1)`` reaches ``alpha`` the teacher is the plain
    mean of the initial student and the ``step`` students since ("use the true average
    until the exponential average is more correct", DACS). DACS calls it with the 0-based
    iteration after the step, i.e. ``min(1 - 1/step, alpha)`` (its first update copies the
    student); we follow DAFormer.
    """
    if step < 1:
        raise ValueError(f"step counts optimizer steps and starts at 1, got {step}")
    return min(1.0 - 1.0 / (step + 1), float(alpha))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float, step: int) -> float:
    """Move ``teacher`` towards ``student``: ``t <- a t + (1 - a) s``, ``a = ema_alpha(step, alpha)``.

    Parameters are averaged as in DACS / DAFormer. Floating-point buffers (BatchNorm
    running mean and variance) are averaged the same way and integer buffers
    (``num_batches_tracked``) copied: DACS and DAFormer leave buffers alone because their
    teacher runs in train mode (BatchNorm on batch statistics); ours runs in eval mode
    (issue 9), where the running statistics are used and must follow the averaged weights
    (timm's ``ModelEmaV2`` averages them too). The teacher is left in eval mode.

    Returns:
        the decay ``a`` used.

    Raises:
        ValueError: the two models have different parameter or buffer names.
    """
    a = ema_alpha(step, alpha)
    for kind, t_items, s_items in (
        ("parameter", teacher.named_parameters(), student.named_parameters()),
        ("buffer", teacher.named_buffers(), student.named_buffers()),
    ):
        t_items, s_items = list(t_items), list(s_items)
        if [n for n, _ in t_items] != [n for n, _ in s_items]:
            raise ValueError(f"teacher and student have different {kind} names")
        for (_, t), (_, s) in zip(t_items, s_items, strict=True):
            if t.is_floating_point():
                t.mul_(a).add_(s.detach().to(t.dtype), alpha=1.0 - a)
            else:
                t.copy_(s)
    teacher.eval()
    return a


# -- pseudo-labels and their weight ----------------------------------------------------------
def pseudo_labels(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher logits ``BxKxHxW`` -> ``(labels BxHxW int64, confidence BxHxW float32)``.

    ``confidence`` is the max softmax probability (computed in float32), ``labels`` its
    argmax (DAFormer: ``torch.max(torch.softmax(ema_logits, dim=1), dim=1)``).
    """
    conf, labels = logits.detach().float().softmax(dim=1).max(dim=1)
    return labels, conf


def confidence_weight(
    conf: torch.Tensor,
    threshold: float,
    valid: torch.Tensor | None = None,
    scope: str = "image",
) -> torch.Tensor:
    """Loss weight of the pseudo-labelled pixels: the share of confident pixels.

    Args:
        conf: ``BxHxW`` teacher confidence (:func:`pseudo_labels`).
        threshold: confident when ``conf >= threshold`` (``ge`` as in DACS / DAFormer).
        valid: ``BxHxW bool`` pixels that belong to the unlabelled image (``False`` on crop
            padding); they alone are counted, in numerator and denominator. ``None``: all.
        scope: ``"image"``: one share per image; ``"batch"``: one share over the batch
            (DACS / DAFormer), repeated for every image.

    Returns:
        ``B float32`` in ``[0, 1]``; 0 for an image without valid pixels.
    """
    if scope not in WEIGHT_SCOPES:
        raise ValueError(f"scope must be one of {WEIGHT_SCOPES}, got {scope!r}")
    if valid is None:
        valid = torch.ones_like(conf, dtype=torch.bool)
    sure = ((conf >= threshold) & valid).flatten(1).sum(1).float()
    total = valid.flatten(1).sum(1).float()
    if scope == "batch":
        sure, total = sure.sum().expand_as(sure), total.sum().expand_as(total)
    return torch.where(total > 0, sure / total.clamp_min(1), torch.zeros_like(sure))


# -- ClassMix --------------------------------------------------------------------------------
def choose_classes(
    label: torch.Tensor, generator: torch.Generator, ignore_index: int, share: float = 0.5
) -> torch.Tensor:
    """The classes of one label map ``HxW`` that ClassMix pastes (a 1-D CPU int64 tensor).

    ``ceil(share * n)`` of the ``n`` classes present, uniformly without replacement (DACS:
    ``np.random.choice(n, (n + n % 2) / 2, replace=False)``, i.e. ``ceil(n / 2)``: one of
    two classes, two of three). ``ignore_index`` is never a candidate (DACS and DAFormer
    keep it among the candidates; pasting it would paste "don't know" pixels, e.g. the crop
    padding). DAFormer's ``get_class_masks`` draws from the classes of the whole batch; we
    use the image's own, as DACS does.
    """
    classes = torch.unique(label).cpu()
    classes = classes[classes != ignore_index]
    n = classes.numel()
    k = math.ceil(round(share * n, 9))
    return classes[torch.randperm(n, generator=generator)[:k]].long()


def classmix_masks(
    labels: torch.Tensor, generator: torch.Generator, ignore_index: int, share: float = 0.5
) -> torch.Tensor:
    """``BxHxW bool``: the pixels of each labelled crop ``labels[b]`` whose class was chosen
    by :func:`choose_classes` (True: paste the labelled pixel onto the unlabelled image)."""
    masks = [
        torch.isin(lab, choose_classes(lab, generator, ignore_index, share).to(lab.device))
        for lab in labels
    ]
    return torch.stack(masks)


def mix(mask: torch.Tensor, pasted: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``pasted`` where ``mask`` (``BxHxW bool``) else ``base``; both ``BxCxHxW`` or ``BxHxW``."""
    m = mask.unsqueeze(1) if pasted.ndim == 4 else mask
    return torch.where(m, pasted, base)


class MixedBatch(NamedTuple):
    """The ClassMix batch: ``image BxCxHxW``, ``label BxHxW int64``, ``weight BxHxW float32``."""

    image: torch.Tensor
    label: torch.Tensor
    weight: torch.Tensor


def classmix(
    source_image: torch.Tensor,
    source_label: torch.Tensor,
    target_image: torch.Tensor,
    pseudo_label: torch.Tensor,
    target_weight: torch.Tensor,
    mask: torch.Tensor,
    target_valid: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> MixedBatch:
    """Paste the masked labelled pixels onto the unlabelled images.

    Args:
        source_image, target_image: ``BxCxHxW`` labelled / unlabelled crops.
        source_label: ``BxHxW`` labels of the labelled crops.
        pseudo_label: ``BxHxW`` teacher labels of the unlabelled crops.
        target_weight: ``B`` (:func:`confidence_weight`) or ``BxHxW`` pixel weights of the
            pseudo-labels.
        mask: ``BxHxW bool`` (:func:`classmix_masks`).
        target_valid: ``BxHxW bool`` pixels of the unlabelled image (``False``: padding,
            labelled ``ignore_index`` in the mix). ``None``: all.
        ignore_index: label of pixels left out of the loss.

    Returns:
        :class:`MixedBatch`: the label is the pasted label where ``mask``, else the
        pseudo-label; the weight is 1 on pasted pixels (ground truth) and the target weight
        elsewhere (DACS / DAFormer ``gt_pixel_weight`` and ``pseudo_weight``).
    """
    pseudo = pseudo_label.long()
    if target_valid is not None:
        pseudo = torch.where(target_valid, pseudo, torch.full_like(pseudo, ignore_index))
    w = target_weight.float().to(mask.device)
    if w.ndim == 1:
        w = w.view(-1, 1, 1).expand(mask.shape)
    return MixedBatch(
        mix(mask, source_image, target_image),
        mix(mask, source_label.long(), pseudo),
        torch.where(mask, torch.ones_like(w), w),
    )


def mixed_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    pixel_weight: torch.Tensor,
    *,
    ignore_index: int,
    loss: str = "ce+dice",
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """:func:`~synth2real.segment.losses.segmentation_loss` with a weight per pixel.

    Cross-entropy: ``sum(w * ce) / n`` over the labelled pixels, ``n`` their count (or
    their summed class weights), so a uniform weight ``q`` scales the loss by ``q`` as in
    DAFormer (mmseg's ``weight_reduce_loss`` divides by all pixels, ignored ones included).
    Dice: the soft Dice sums weighted by ``w`` (low-confidence pixels count less than
    pasted ones), times the mean weight of the labelled pixels so that it scales with ``q``
    too. With ``w = 1`` both equal ``segmentation_loss`` exactly.

    Args:
        logits: ``BxKxHxW``; target: ``BxHxW`` int64; pixel_weight: ``BxHxW`` in ``[0, 1]``.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    k = logits.shape[1]
    valid = target != ignore_index
    w = pixel_weight.float() * valid
    total = logits.sum() * 0.0
    n_valid = valid.sum()
    if not bool(n_valid > 0):
        return total
    if loss in ("ce", "ce+dice"):
        cw = class_weights.to(logits.device, torch.float32) if class_weights is not None else None
        ce = F.cross_entropy(
            logits.float(), target, weight=cw, ignore_index=ignore_index, reduction="none"
        )
        denom = cw[torch.where(valid, target, 0)][valid].sum() if cw is not None else n_valid
        total = total + (w * ce).sum() / denom
    if loss in ("dice", "ce+dice"):
        probs = logits.float().softmax(dim=1)
        onehot = F.one_hot(torch.where(valid, target, 0), k).permute(0, 3, 1, 2).float()
        wk = w.unsqueeze(1)
        dims = (0, 2, 3)
        inter = (probs * onehot * wk).sum(dims)
        denom_d = (probs * wk).sum(dims) + (onehot * wk).sum(dims)
        present = (onehot * valid.unsqueeze(1)).sum(dims) > 0
        dice = (2 * inter + 1.0) / (denom_d + 1.0)
        term = (w.sum() / n_valid) * (1.0 - dice[present].mean())
        total = total + (dice_weight if loss == "ce+dice" else 1.0) * term
    return total


# -- DACS strong augmentation (photometric, on the mixed images) ----------------------------
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x * factor`` clipped to ``[0, 1]`` (``x``: ``...x3xHxW`` RGB in ``[0, 1]``)."""
    return (x * factor).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the image's mean grey level: ``factor`` 0 gives a flat grey image."""
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    return (factor * x + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey image: ``factor`` 0 gives grey, 1 the input."""
    return (factor * x + (1 - factor) * _gray(x)).clamp(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``...x3xHxW`` RGB in ``[0, 1]`` -> HSV with hue in ``[0, 1)`` (a full turn is 1)."""
    r, g, b = x.unbind(-3)
    v, _ = x.max(dim=-3)
    c = v - x.min(dim=-3).values
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(
        v == r,
        ((g - b) / safe) % 6,
        torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = torch.where(c > 0, h / 6, torch.zeros_like(h)) % 1.0
    s = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return torch.stack((h, s, v), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: ``f(n) = v - v s clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n + 6 h) mod 6`` for ``n = 5, 3, 1`` (R, G, B)."""
    h, s, v = x.unbind(-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * h) % 6
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=-3)


def adjust_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (``1/3``: red -> green)."""
    if shift == 0:
        return x
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(-3)
    return hsv_to_rgb(torch.stack(((h + shift) % 1.0, s, v), dim=-3)).clamp(0, 1)


def blur_kernel_size(size: int, frac: float = 0.1) -> int:
    """The largest odd number ``<= ceil(frac * size)`` (at least 1): DACS / DAFormer's
    ``floor(ceil(0.1 n) - 0.5 + ceil(0.1 n) % 2)``."""
    c = max(1, math.ceil(round(frac * size, 9)))
    return c if c % 2 else c - 1


def gaussian_kernel1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian taps ``exp(-x^2 / 2 sigma^2)`` at ``x = -(size-1)/2 .. (size-1)/2``."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * float(sigma) ** 2))
    return (k / k.sum()).float()


def gaussian_blur(
    images: torch.Tensor, sigma: torch.Tensor | float, kernel_size: tuple[int, int]
) -> torch.Tensor:
    """Separable Gaussian blur of ``BxCxHxW`` with one sigma per image, reflect padding
    (kornia ``GaussianBlur2d``'s default border, used by DACS / DAFormer).

    Args:
        images: ``BxCxHxW`` float.
        sigma: ``B`` sigmas in pixels (or one for all).
        kernel_size: odd ``(kh, kw)``; 1 leaves that axis unchanged.
    """
    b, c, h, w = images.shape
    sig = torch.as_tensor(sigma, dtype=torch.float64).flatten().expand(b)
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kernel_size}")
    x = images.reshape(1, b * c, h, w)
    for size, axis in ((kh, 0), (kw, 1)):
        if size == 1:
            continue
        taps = torch.stack([gaussian_kernel1d(size, float(s)) for s in sig])
        taps = taps.repeat_interleave(c, 0).to(images.device, images.dtype)
        shape = (b * c, 1, size, 1) if axis == 0 else (b * c, 1, 1, size)
        pad = (0, 0, size // 2, size // 2) if axis == 0 else (size // 2, size // 2, 0, 0)
        x = F.conv2d(F.pad(x, pad, mode="reflect"), taps.view(shape), groups=b * c)
    return x.reshape(b, c, h, w)


def jitter_factors(u: torch.Tensor, strength: float) -> torch.Tensor:
    """Uniform draws ``u`` (``...x4`` in ``[0, 1)``) -> ``(brightness, contrast, saturation,
    hue)``: the factors uniform in ``[max(0, 1 - s), 1 + s]``, ``[1 - s, 1 + s]`` (twice),
    the hue shift in ``[-s, s]`` turns (torchvision / kornia ``ColorJitter`` ranges)."""
    s = float(strength)
    lo = torch.tensor([max(0.0, 1 - s), 1 - s, 1 - s, -s], dtype=u.dtype)
    hi = torch.tensor([1 + s, 1 + s, 1 + s, s], dtype=u.dtype)
    return lo + (hi - lo) * u


class StrongParams(NamedTuple):
    """The random choices of :func:`strong_augment` for a batch of ``B`` images.

    Attributes:
        jitter: ``B bool``, colour-jitter this image.
        factors: ``Bx4 float64`` brightness, contrast, saturation factors and hue shift
            (:func:`jitter_factors`).
        order: ``Bx4 int64`` the order in which those four are applied (a permutation).
        blur: ``B bool``, blur this image.
        sigma: ``B float64`` blur sigma in pixels.
    """

    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


def draw_strong_params(
    batch: int, generator: torch.Generator, cfg: SelfTrainConfig
) -> StrongParams:
    """Draw :class:`StrongParams` from ``generator`` (the step's CPU generator,
    :func:`step_generator`); the same values are drawn whatever the probabilities.

    Per image (DACS / DAFormer decide jitter and blur once per batch, with factors and
    sigma per image; here each image decides for itself): jitter with probability
    ``st_jitter_p`` (never when ``st_jitter_strength`` is 0), the four colour ops in a
    random order (as torchvision's and kornia's ``ColorJitter``), blur with probability
    ``st_blur_p`` with sigma ``~U(st_blur_sigma)``.
    """
    u_jit = torch.rand(batch, generator=generator, dtype=torch.float64)
    u_fac = torch.rand(batch, 4, generator=generator, dtype=torch.float64)
    order = torch.rand(batch, 4, generator=generator).argsort(dim=1)
    u_blur = torch.rand(batch, generator=generator, dtype=torch.float64)
    u_sig = torch.rand(batch, generator=generator, dtype=torch.float64)
    lo, hi = cfg.st_blur_sigma
    return StrongParams(
        (u_jit < cfg.st_jitter_p) & (cfg.st_jitter_strength > 0),
        jitter_factors(u_fac, cfg.st_jitter_strength),
        order,
        u_blur < cfg.st_blur_p,
        lo + (hi - lo) * u_sig,
    )


def apply_strong(
    images: torch.Tensor, params: StrongParams, kernel_frac: float = 0.1
) -> torch.Tensor:
    """Colour jitter, then Gaussian blur, as chosen by ``params``.

    Args:
        images: ``Bx3xHxW`` float RGB in ``[0, 1]``.
        params: :class:`StrongParams` for ``B`` images.
        kernel_frac: blur kernel size per axis :func:`blur_kernel_size` of the crop's
            height and width with this fraction.

    Returns:
        a new ``Bx3xHxW`` tensor.
    """
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    out = images.clone()
    for i in torch.nonzero(params.jitter).flatten().tolist():
        f = params.factors[i].tolist()
        x = out[i]
        for j in params.order[i].tolist():
            x = ops[j](x, f[j])
        out[i] = x
    blur = torch.nonzero(params.blur).flatten()
    ks = (
        blur_kernel_size(images.shape[2], kernel_frac),
        blur_kernel_size(images.shape[3], kernel_frac),
    )
    if blur.numel() and ks != (1, 1):
        idx = blur.to(out.device)
        out[idx] = gaussian_blur(out[idx], params.sigma[blur], ks)
    return out


def strong_augment(
    images: torch.Tensor, generator: torch.Generator, cfg: SelfTrainConfig
) -> torch.Tensor:
    """DACS's ``strongTransform`` after the mix: :func:`draw_strong_params`, then
    :func:`apply_strong` (``images``: ``Bx3xHxW`` in ``[0, 1]``; returns a new tensor).

    The per-op formulas are torchvision's definitions; kornia 0.5, which DAFormer pins,
    may differ in detail (not verified here).
    """
    params = draw_strong_params(images.shape[0], generator, cfg)
    return apply_strong(images, params, cfg.st_blur_kernel_frac)
