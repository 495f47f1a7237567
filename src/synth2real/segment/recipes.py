"""The recipes' parts of a training step: what a step draws, its learning rate, and
self-training's mixed loss (used by :func:`synth2real.segment.train.train`).

A recipe (``TrainConfig.recipe``, one of :data:`~synth2real.segment.config.RECIPES`) is
how the data is used:

- ``mix``: every crop of every step from dataset ``i`` with probability ``weights[i]``;
  one schedule over the run.
- ``finetune``: iterations ``[0, n1)`` (``n1 = cfg.ft_phase1``) as ``mix``; iterations
  ``[n1, iterations)`` from the *last* dataset alone. Each phase has its own schedule as a
  run of its length (:func:`learning_rate`), the second from ``ft_lr_scale * lr``. The
  optimizer (its AdamW moments) carries over between the phases.
- ``selftrain``: ``mix`` plus a ClassMix batch of unlabelled images each step
  (:class:`SelfTrainer`, the design in :mod:`synth2real.segment.selftrain`).

Rare-class sampling (``cfg.rcs``) changes how a crop is drawn inside its dataset, with
any recipe: the dataset is drawn by its mixing weight as before, then a class, an image
holding it and a crop (:mod:`synth2real.segment.rcs`). With ``rcs`` off, a labelled crop
is drawn exactly as before recipes existed (same calls on the same generator).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from synth2real.data.dataset import Dataset
from synth2real.errors import ConfigError
from synth2real.segment.config import TrainConfig
from synth2real.segment.losses import segmentation_loss
from synth2real.segment.rcs import RareClassSampler, class_pixel_counts, crop_with_class
from synth2real.segment.sampling import SampleLoader, augment
from synth2real.segment.selftrain import (
    classmix,
    classmix_masks,
    confidence_weight,
    ema_update,
    make_teacher,
    pseudo_labels,
    step_generator,
    strong_augment,
)


# -- learning rate ---------------------------------------------------------------------------
def _schedule(it: int, n: int, peak: float, cfg: TrainConfig) -> float:
    """Iteration ``it`` of a run of ``n``: linear warm-up, then ``cfg.schedule``."""
    warm = min(cfg.warmup, n // 10)
    if it < warm:
        return peak * (it + 1) / (warm + 1)
    if cfg.schedule == "constant":
        return peak
    t = (it - warm) / max(1, n - warm)
    if cfg.schedule == "poly":
        return peak * (1 - t) ** 0.9
    floor = 0.01 * peak
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))


def learning_rate(it: int, cfg: TrainConfig) -> float:
    """Learning rate of iteration ``it`` (0-based): linear warm-up of
    ``min(warmup, n // 10)`` iterations, then ``cfg.schedule`` to the end of the run of
    ``n`` iterations; for ``finetune``, each phase is such a run (phase 2 peaks at
    ``ft_lr_scale * lr``)."""
    peak = cfg.effective_lr
    if cfg.recipe == "finetune":
        n1 = cfg.ft_phase1
        if it >= n1:
            return _schedule(it - n1, cfg.iterations - n1, cfg.ft_lr_scale * peak, cfg)
        return _schedule(it, n1, peak, cfg)
    return _schedule(it, cfg.iterations, peak, cfg)


def phase(it: int, cfg: TrainConfig) -> int:
    """Fine-tuning phase of iteration ``it``: 1 or 2 (always 1 for the other recipes)."""
    return 2 if cfg.recipe == "finetune" and it >= cfg.ft_phase1 else 1


def check_recipe(cfg: TrainConfig, datasets: list[Dataset], unlabeled: Dataset | None) -> None:
    """Refuse a recipe without what it needs (ConfigError, one line)."""
    if cfg.recipe == "selftrain" and unlabeled is None:
        raise ConfigError(
            "recipe 'selftrain' needs unlabelled real images: give them with --unlabeled "
            "PATH (train(unlabeled=...))"
        )
    if cfg.recipe != "selftrain" and unlabeled is not None:
        raise ConfigError(
            f"unlabelled images (--unlabeled {unlabeled.root}) are used only by recipe "
            f"'selftrain', not {cfg.recipe!r}: add --set recipe=selftrain or drop --unlabeled"
        )
    if unlabeled is not None and len(unlabeled) == 0:
        raise ConfigError(f"--unlabeled {unlabeled.root}: no images")
    if cfg.recipe == "finetune" and len(datasets) < 2:
        raise ConfigError(
            "recipe 'finetune' needs at least 2 datasets (the mix of phase 1, then the last "
            f"one alone: the references), got {len(datasets)}"
        )


def bar_fields(cfg: TrainConfig, it: int, losses: list[float], mix: list[float]) -> dict:
    """What the progress bar shows after the loss: the phase (fine-tuning), the mixed loss
    (self-training)."""

    def avg(v: list[float]) -> str:
        return f"{sum(v[-20:]) / len(v[-20:]):.4f}"

    out = {"loss": avg(losses)}
    if cfg.recipe == "finetune":
        out["phase"] = f"{phase(it, cfg)}/2"
    if mix:
        out["mix"] = avg(mix)
    return out


# -- what a step draws -----------------------------------------------------------------------
class Batch(NamedTuple):
    """One step's crops: ``images BxHxWx3 uint8``, ``labels BxHxW uint8``, ``sources B``
    (the dataset of each crop), and for self-training the unlabelled crops ``target``
    (``BxHxWx3``) with ``target_valid`` (``BxHxW bool``, False on padding)."""

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    target: np.ndarray | None = None
    target_valid: np.ndarray | None = None


class BatchSampler:
    """Draws the crops of step ``it`` from ``(seed, it)`` alone (so resumes redraw them).

    Labelled crops: ``default_rng([seed, it])`` (the dataset by the phase's weights, then
    an image uniformly, or by rare-class sampling). Unlabelled crops:
    ``default_rng([seed, it, 1])``, an image uniformly, the same geometric augmentation
    and no colour jitter (self-training's strong augmentation comes after ClassMix).

    Args:
        loaders: the labelled datasets' loaders.
        probs: their mixing weights (phase 1 of fine-tuning).
        cfg: the run's config.
        num_classes, ignore_index: of the class spec.
        unlabeled: the unlabelled images' loader (``labels=False``), for ``selftrain``.
    """

    def __init__(
        self,
        loaders: Sequence[SampleLoader],
        probs: np.ndarray,
        cfg: TrainConfig,
        num_classes: int,
        ignore_index: int,
        unlabeled: SampleLoader | None = None,
    ):
        self.loaders, self.cfg, self.ignore = list(loaders), cfg, ignore_index
        self.unlabeled = unlabeled
        last = np.zeros(len(self.loaders))
        last[-1] = 1.0
        self.phase_probs = {1: np.asarray(probs), 2: last}
        self.rcs: list[RareClassSampler | None] | None = None
        if cfg.rcs:  # one sampler per dataset that is ever drawn (others are never read)
            used = self.phase_probs[1] + (last if cfg.recipe == "finetune" else 0)
            self.rcs = [
                RareClassSampler(self._counts(loader, num_classes), cfg) if u > 0 else None
                for loader, u in zip(self.loaders, used, strict=True)
            ]

    def _counts(self, loader: SampleLoader, k: int) -> np.ndarray:
        return np.stack(
            [class_pixel_counts(loader.load(i)[1], k, self.ignore) for i in range(len(loader))]
        )

    def _augment(self, image: np.ndarray, label: np.ndarray, rng, jitter: float):
        c = self.cfg
        return augment(
            image,
            label,
            rng,
            crop=c.crop_hw,
            scale_range=c.scale_range,
            hflip=c.hflip,
            vflip=c.vflip,
            jitter=jitter,
            ignore_index=self.ignore,
        )

    def draw(self, it: int) -> Batch:
        cfg, loaders = self.cfg, self.loaders
        probs = self.phase_probs[phase(it, cfg)]
        rng = np.random.default_rng([cfg.seed, it])
        images, labels, sources = [], [], []
        for _ in range(cfg.batch_size):
            d = int(rng.choice(len(loaders), p=probs))
            sampler = self.rcs[d] if self.rcs is not None else None
            if sampler is None:
                i = int(rng.integers(len(loaders[d])))
                image, label = loaders[d].load(i)
                img, lab = self._augment(image, label, rng, cfg.color_jitter)
            else:
                c, i = sampler.draw(rng)
                image, label = loaders[d].load(i)
                (img, lab), _ = crop_with_class(
                    lambda image=image, label=label: self._augment(
                        image, label, rng, cfg.color_jitter
                    ),
                    c,
                    sampler.crop_threshold(c, i),
                    cfg.rcs_crop_retries,
                )
            images.append(img)
            labels.append(lab)
            sources.append(d)
        batch = Batch(np.stack(images), np.stack(labels), np.asarray(sources))
        if self.unlabeled is None:
            return batch
        rng_t = np.random.default_rng([cfg.seed, it, 1])
        target, valid = [], []
        for _ in range(cfg.batch_size):
            image, zeros = self.unlabeled.load(int(rng_t.integers(len(self.unlabeled))))
            img, lab = self._augment(image, zeros, rng_t, 0.0)
            target.append(img)
            valid.append(lab != self.ignore)
        return batch._replace(target=np.stack(target), target_valid=np.stack(valid))


# -- self-training ---------------------------------------------------------------------------
class SelfTrainer:
    """The mean teacher and the ClassMix loss of one self-training run.

    Args:
        student: the model being trained (on its device, in its memory format).
        cfg: the run's config (``st_*`` keys).
        ignore_index: of the class spec.
        teacher_state: a stored teacher ``state_dict`` (resume), else the teacher starts
            as a copy of the student.
    """

    def __init__(
        self,
        student: nn.Module,
        cfg: TrainConfig,
        ignore_index: int,
        teacher_state: dict[str, torch.Tensor] | None = None,
    ):
        self.cfg, self.ignore = cfg, ignore_index
        self.teacher = make_teacher(student)
        if teacher_state is not None:
            self.teacher.load_state_dict(teacher_state)
            self.teacher.eval()

    def mixed_loss(
        self,
        student: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_t: torch.Tensor,
        valid_t: torch.Tensor,
        it: int,
        autocast: Callable[[], object],
        **loss_kw,
    ) -> torch.Tensor:
        """``L_mix`` of step ``it`` (steps 4-6 of the design in
        :mod:`synth2real.segment.selftrain`); ``autocast()`` is the run's AMP context and
        ``loss_kw`` the supervised loss's options (``loss``, ``class_weights``,
        ``dice_weight``)."""
        cfg, ign = self.cfg, self.ignore
        with torch.no_grad(), autocast():
            t_logits = self.teacher(x_t)
        pseudo, conf = pseudo_labels(t_logits)
        w = confidence_weight(conf, cfg.st_pseudo_threshold, valid_t, cfg.st_weight_scope)
        g = step_generator(cfg.seed, it)
        masks = classmix_masks(y, g, ign, cfg.st_mix_share)
        mixed = classmix(x, y, x_t, pseudo, w, masks, valid_t, ign)
        x_m = strong_augment(mixed.image, g, cfg)
        with autocast():
            logits = student(x_m)
        return segmentation_loss(
            logits, mixed.label, ignore_index=ign, pixel_weight=mixed.weight, **loss_kw
        )

    def update(self, student: nn.Module, it: int) -> float:
        """The EMA step after optimizer step ``it`` (0-based); returns the decay used."""
        return ema_update(self.teacher, student, self.cfg.st_ema_alpha, it + 1)
