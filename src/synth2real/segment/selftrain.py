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
6. ``L_mix = segmentation_loss(student(x_m), mixed.label, pixel_weight=mixed.weight, ...)``
   (:func:`~synth2real.segment.losses.segmentation_loss` with a weight per pixel).
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
The settings are :class:`~synth2real.segment.recipe_options.SelfTrainConfig` (mixed into
``TrainConfig``); the strong augmentation is :mod:`synth2real.segment.photometric`; the
step inside :func:`~synth2real.segment.train.train` is
:mod:`synth2real.segment.recipes`.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from synth2real.segment.photometric import StrongParams, strong_augment
from synth2real.segment.recipe_options import WEIGHT_SCOPES, SelfTrainConfig

__all__ = [
    "MixedBatch", "SelfTrainConfig", "StrongParams", "choose_classes", "classmix",
    "classmix_masks", "confidence_weight", "ema_alpha", "ema_update", "make_teacher",
    "mix", "pseudo_labels", "step_generator", "strong_augment",
]  # fmt: skip


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
