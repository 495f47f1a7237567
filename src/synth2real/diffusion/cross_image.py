"""Cross-image attention, CACTI, CACTIF and AdaIN-only diffusion: the three-branch walk
(METHOD.md) and :class:`CrossImageMethod`, the method that runs it.

A batch of latents walks the ``T - S`` denoising steps together:
``[out_1 .. out_B, style_1 .. style_U, content_1 .. content_B]``. ``out_b`` starts at its
content's inverted ``x_S`` and uses the content's noise maps; ``content_b`` and the styles
reproduce their own images; in the selected decoder self-attention layers ``out_b`` takes
its style's keys and values (sharpened, optionally filtered against ``content_b``: the
processors of :mod:`.processors`, installed for the walk); after every step ``out`` is
AdaIN-normalised towards its style latent of the same level.

How the work is kept to what the result needs:

- The edit-friendly inversion draws every level ``x_i ~ q(x_i | x_0)`` independently, so
  the style and content rows at step ``i`` are known in advance: they are *fed* their
  inverted ``x_i`` (exactly what sampling with their own noise maps would reproduce), and
  the content's noise map of step ``i`` comes from the very UNet pass the walk makes on
  ``x_i`` anyway. Content inversion and content branch are one and the same pass; nothing
  runs for the skipped steps; the reference code's second "no-swap" UNet pass (unused at
  swap guidance 1) does not exist here.
- References are drawn once per working size (:class:`ReferenceBank`) and their latent
  statistics for every level and class are precomputed, so AdaIN needs no style row:
  ``adain-diffusion`` walks ``[out, content]`` only, and the swap presets add one style
  row per distinct reference in the batch, shared by all the contents that use it.
- No host synchronisation inside the loop (step coefficients are Python floats, indices
  live on the device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from synth2real.diffusion.adain import (
    STD_FLOOR,
    ClassMasks,
    TargetStats,
    adain,
    channel_stats,
    class_masks,
    class_stats,
    classwise_adain,
    labels_to_latent,
    pooled_stats,
)
from synth2real.diffusion.config import CrossImageConfig
from synth2real.diffusion.inversion import Schedule, make_generators, sample_levels
from synth2real.diffusion.layers import AttentionLayer
from synth2real.diffusion.loading import DiffusionModels
from synth2real.diffusion.method import DiffusionMethod, Size, _Batch, fit_to, pixel_seed
from synth2real.diffusion.processors import (
    AttentionEdits,
    FilteredSwapProcessor,
    SwapLayout,
    SwapProcessor,
)
from synth2real.diffusion.quirks import (
    NO_QUIRKS,
    ReferenceQuirks,
    reference_labels_to_latent,
    reference_levels,
)
from synth2real.errors import ConfigError


def draw_levels(
    x0: Tensor,
    schedule: Schedule,
    skip: int,
    seeds: Sequence[int],
    quirks: ReferenceQuirks = NO_QUIRKS,
) -> Tensor:
    """The levels ``S .. T`` of ``x0 (B, C, h, w)``: each image's own draws from its seed
    (:func:`~.inversion.sample_levels`), or with ``quirks.shared_noise`` the reference's
    draws after ``torch.manual_seed(42)`` (:func:`~.quirks.reference_levels`), the same
    for every image. ``(T - S + 1, B, C, h, w)`` float32."""
    if quirks.shared_noise:
        return reference_levels(x0, schedule, skip)
    return sample_levels(x0, schedule, skip, make_generators(seeds))


# ---------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------
@dataclass
class _LevelTargets:
    """AdaIN targets of some references at some levels: ``global_mean, global_std (R, L, C)``;
    class-wise ``mean, std (R, L, K + 1, C)`` and ``source (R, K + 1)`` (None without
    labels)."""

    global_mean: Tensor
    global_std: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None
    source: Tensor | None = None


def _level_targets(
    xs: Tensor, masks: ClassMasks | None, quirks: ReferenceQuirks, *, pool: bool
) -> _LevelTargets:
    """The AdaIN targets of references ``xs (R, L, C, h, w)`` with class masks ``masks``
    (``R`` images; None: global only). A class a reference lacks gets the statistics
    pooled over the other references that have it when ``pool`` (and
    ``quirks.pools_missing_classes``), else the reference's global ones."""
    mean_g, std_g = channel_stats(xs, quirks)
    out = _LevelTargets(mean_g[..., 0, 0], std_g[..., 0, 0])
    if masks is None:
        return out
    r, lv = xs.shape[:2]
    k = masks.num_classes
    stats = [class_stats(xs[:, j], masks) for j in range(lv)]
    mean = torch.stack([s[0] for s in stats], 1)  # (R, L, K+1, C)
    var = torch.stack([s[1] for s in stats], 1)
    count = stats[0][2]  # (R, K+1): pixels the statistics use (same at every level)
    has = quirks.class_present(masks).clone()
    has[:, k] = False  # "no class" is never matched class-wise
    source = torch.where(has, 0, 2).to(torch.int8)
    own = has[:, None, :, None]
    std = quirks.std(var, STD_FLOOR)
    t_mean = torch.where(own, mean, out.global_mean[:, :, None, :])
    t_std = torch.where(own, std, out.global_std[:, :, None, :])
    if pool and quirks.pools_missing_classes and r > 1:
        cnt = count * has.float()
        for ri in range(r):
            others = [o for o in range(r) if o != ri]
            missing = ~has[ri] & (cnt[others].sum(0) > 0)
            if not bool(missing.any()):
                continue
            pm, pv, _ = pooled_stats(
                mean[others], var[others], cnt[others][:, None, :].expand(-1, lv, -1), dim=0
            )  # (L, K+1, C)
            sel = missing[None, :, None]
            t_mean[ri] = torch.where(sel, pm, t_mean[ri])
            t_std[ri] = torch.where(sel, quirks.std(pv, STD_FLOOR), t_std[ri])
            source[ri][missing] = 1
    out.mean, out.std, out.source = t_mean, t_std, source
    return out


def _take(masks: ClassMasks, idx: Tensor) -> ClassMasks:
    return ClassMasks(
        slots=masks.slots[idx],
        weights=masks.weights[idx],
        present=masks.present[idx],
        eroded_present=masks.eroded_present[idx],
        from_eroded=masks.from_eroded[idx],
        kept=masks.kept[idx],
        num_classes=masks.num_classes,
    )


class ReferenceBank:
    """The references' inverted latents and latent statistics at one working size.

    Built once per working size (the latents of a reference at every level ``S .. T``
    are draws from ``q(x_i | x_0)``, independent of the content and of the UNet) and
    reused for every content image.

    Args:
        latents: ``(R, C, h, w)`` clean latents of the references.
        slots: one ``(h, w)`` slot map per reference (None without labels).
        schedule, skip: the walk's schedule and ``S``.
        seeds: one seed per reference (its levels are drawn from it).
        num_classes: ``K`` (0: no class-wise targets).
        erosion: erosion iterations of the class masks.
        quirks: the reference code's behaviours (statistics, erosion, pooling, draws).
        levels: ``(T - S + 1, R, C, h, w)`` levels to use instead of drawing them (for
            example another implementation's inversion); ``levels[-1]`` is ``x_0``.

    Attributes:
        xs: ``(R, L, C, h, w)`` float32 levels ``S .. T`` of each reference (``L = T-S+1``).
        global_mean, global_std: ``(R, L, C)``.
        target_mean, target_std: ``(R, L, K + 1, C)`` class-wise AdaIN targets (``None``
            without labels); classes the reference lacks hold the pooled statistics of
            the other references, or the global ones.
        source: ``(R, K + 1)`` int8, where each target comes from (0 own, 1 pooled, 2 global).
        masks: the references' class masks at latent size (None without labels).
        num_classes: ``K`` (0 without labels).
    """

    def __init__(
        self,
        latents: Tensor,
        slots: Sequence[Tensor | None],
        schedule: Schedule,
        skip: int,
        seeds: Sequence[int],
        *,
        num_classes: int = 0,
        erosion: int = 1,
        quirks: ReferenceQuirks = NO_QUIRKS,
        levels: Tensor | None = None,
    ):
        r = latents.shape[0]
        if len(slots) != r or len(seeds) != r:
            raise ConfigError("reference bank: latents, label maps and seeds differ in length")
        if levels is None:
            levels = draw_levels(latents, schedule, skip, seeds, quirks)  # (L, R, ...)
        elif levels.shape[0] != schedule.num_steps - skip + 1 or levels.shape[1] != r:
            raise ConfigError(
                f"reference bank: levels of shape {tuple(levels.shape)} for {r} references "
                f"and {schedule.num_steps - skip + 1} levels"
            )
        self.xs = levels.float().transpose(0, 1).contiguous()
        self.quirks = quirks
        self.num_classes = num_classes
        self.masks: ClassMasks | None = None
        if num_classes > 0 and all(s is not None for s in slots):
            stacked = torch.stack(list(slots)).to(self.xs.device)  # type: ignore[arg-type]
            self.masks = class_masks(stacked, num_classes, erosion, quirks)
        t = _level_targets(self.xs, self.masks, quirks, pool=True)
        self.global_mean, self.global_std = t.global_mean, t.global_std
        self.target_mean, self.target_std, self.source = t.mean, t.std, t.source

    def __len__(self) -> int:
        return self.xs.shape[0]

    @property
    def labelled(self) -> bool:
        return self.target_mean is not None

    def targets(self, refs: Tensor, level: int) -> TargetStats:
        """Class-wise targets at ``level`` (0 = level ``S``) for references ``refs (B,)``."""
        if self.target_mean is None:
            raise ConfigError("class-wise AdaIN needs label maps for every reference")
        return TargetStats(
            mean=self.target_mean[refs, level],
            std=self.target_std[refs, level],
            source=self.source[refs],
            global_mean=self.global_mean[refs, level],
            global_std=self.global_std[refs, level],
        )

    def targets_of(
        self, latents: Tensor, refs: Tensor
    ) -> tuple[Tensor, Tensor, TargetStats | None]:
        """AdaIN targets of other latents of the references ``refs (U,)``:
        ``latents (U, C, h, w)`` (the reference quirk: the style rows' posterior means
        after the last step). Nothing is pooled. Returns the global mean and std
        ``(U, C)`` and the class-wise targets (None without labels)."""
        masks = None if self.masks is None else _take(self.masks, refs)
        t = _level_targets(latents[:, None].float(), masks, self.quirks, pool=False)
        gm, gs = t.global_mean[:, 0], t.global_std[:, 0]
        if t.mean is None:
            return gm, gs, None
        return gm, gs, TargetStats(t.mean[:, 0], t.std[:, 0], t.source, gm, gs)  # type: ignore[index]


# ---------------------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------------------
@dataclass
class WalkStep:
    """What the walk hands its callback after each denoising step.

    Attributes:
        step: the denoising step (0 = step ``S``).
        before: ``(B, C, h, w)`` the out latents after the step, before AdaIN.
        after: the out latents after AdaIN (what the next step starts from).
        swapped: whether the step swapped keys and values.
    """

    step: int
    before: Tensor
    after: Tensor
    swapped: bool


#: called after every denoising step of :func:`cross_image_walk`
WalkCallback = Callable[[WalkStep], None]


def cross_image_walk(
    models: DiffusionModels,
    layers: Sequence[AttentionLayer],
    schedule: Schedule,
    cfg: CrossImageConfig,
    content: Tensor,
    content_seeds: Sequence[int],
    bank: ReferenceBank,
    refs: Sequence[int],
    masks: ClassMasks | None = None,
    *,
    content_levels: Tensor | None = None,
    callback: WalkCallback | None = None,
) -> Tensor:
    """Translate a batch of content latents.

    Args:
        models: loaded models.
        layers: the edited layers of ``models.unet`` (they get the swap processors while
            the walk swaps, and their own processors back afterwards).
        schedule: the ``num_inference_steps`` schedule.
        cfg: the walk's parameters (``skip``, ``swap``, ``sharpen``, ``swap_steps``,
            ``filtering``, ``filter_p``, ``adain``, ``classwise_steps``, the quirks,
            ``attention_chunk``).
        content: ``(B, C, h, w)`` float32 clean latents of the content images.
        content_seeds: one seed per content image (its levels are drawn from it).
        bank: the references at this working size.
        refs: the reference index of each content image.
        masks: class masks of the contents at latent size (class-wise AdaIN only).
        content_levels: ``(T - S + 1, B, C, h, w)`` levels of the contents to walk from
            instead of drawing them (``[-1]`` = ``x_0``; for example another
            implementation's inversion).
        callback: called after every step with a :class:`WalkStep`.

    Returns:
        ``(B, C, h, w)`` float32 clean latents of the translations.
    """
    b = content.shape[0]
    if len(refs) != b or len(content_seeds) != b:
        raise ConfigError("cross_image_walk: content, refs and seeds differ in length")
    if cfg.adain == "classwise" and (masks is None or not bank.labelled):
        raise ConfigError("class-wise AdaIN needs label maps for the contents and every reference")
    skip = cfg.skip
    n_steps = schedule.num_steps - skip
    quirks = cfg.quirks
    dev = content.device
    unique = list(dict.fromkeys(int(r) for r in refs))
    u = len(unique)
    unique_ids = torch.tensor(unique, device=dev)
    style_of_out = torch.tensor([unique.index(int(r)) for r in refs], device=dev)
    ref_ids = torch.tensor([int(r) for r in refs], device=dev)
    style_xs = bank.xs[unique_ids]  # (U, L, C, h, w)
    timesteps = torch.tensor(schedule.timesteps, device=dev)
    swapping = _swap_processors(cfg, layers, b, u, style_of_out)

    if content_levels is None:
        xs_c = draw_levels(content, schedule, skip, content_seeds, quirks)
    elif tuple(content_levels.shape) != (n_steps + 1, *content.shape):
        raise ConfigError(
            f"content_levels of shape {tuple(content_levels.shape)}, expected "
            f"{(n_steps + 1, *content.shape)}"
        )
    else:
        xs_c = content_levels.float()
    out = xs_c[0].clone()
    with AttentionEdits(models.unet, layers) as edits:
        for j in range(n_steps):
            i = skip + j
            swap = cfg.swap_at(j)
            # the reference zeroes the last noise map of every row: its out row ends on
            # the posterior mean, and so does the style row its last AdaIN aims at
            last_mean = quirks.zero_last_noise and j == n_steps - 1
            edits.use(swapping if swap else None)
            if swap or last_mean:
                batch = torch.cat([out, style_xs[:, j], xs_c[j]])
            else:
                batch = torch.cat([out, xs_c[j]])
            eps = schedule.to_epsilon(models.predict(batch, timesteps[i]), batch, i)
            c_x, c_eps, _ = schedule.ddpm_coefficients(i)
            mu_out = c_x * out + c_eps * eps[:b]
            if last_mean:
                before = mu_out
                mu_style = c_x * style_xs[:, j] + c_eps * eps[b : b + u]
                gm, gs, cls = bank.targets_of(mu_style, unique_ids)
                targets = _StepTargets(
                    gm[style_of_out],
                    gs[style_of_out],
                    None if cls is None else _rows(cls, style_of_out),
                )
            else:
                # = mu_out + sigma_i z_i with the content's noise map of this step,
                # z_i = (x_{i+1} - mu(x_i)) / sigma_i computed from this very pass
                mu_content = c_x * xs_c[j] + c_eps * eps[-b:]
                before = mu_out + (xs_c[j + 1] - mu_content)
                targets = _StepTargets.from_bank(bank, ref_ids, j + 1)
            out = _adain_step(before, cfg, quirks, targets, masks, step=j)
            if callback is not None:
                callback(WalkStep(step=j, before=before, after=out, swapped=swap))
    return out


@dataclass
class _StepTargets:
    """One step's AdaIN targets for each out row: global ``mean, std (B, C)`` and the
    class-wise targets (None without labels)."""

    global_mean: Tensor
    global_std: Tensor
    classwise: TargetStats | None

    @classmethod
    def from_bank(cls, bank: ReferenceBank, refs: Tensor, level: int) -> _StepTargets:
        return cls(
            bank.global_mean[refs, level],
            bank.global_std[refs, level],
            bank.targets(refs, level) if bank.labelled else None,
        )


def _rows(t: TargetStats, idx: Tensor) -> TargetStats:
    return TargetStats(
        t.mean[idx], t.std[idx], t.source[idx], t.global_mean[idx], t.global_std[idx]
    )


def _swap_processors(
    cfg: CrossImageConfig,
    layers: Sequence[AttentionLayer],
    n_out: int,
    n_style: int,
    style_of_out: Tensor,
) -> dict[str, SwapProcessor] | None:
    """The processors of the swapped steps, per layer key (None without swap)."""
    if not cfg.swap:
        return None
    layout = SwapLayout(n_out, n_style, style_of_out, cfg.sharpen, cfg.attention_chunk)
    if cfg.filtering:
        return {
            layer.key: FilteredSwapProcessor(layer.key, layout, cfg.filter_p) for layer in layers
        }
    return {layer.key: SwapProcessor(layer.key, layout) for layer in layers}


def _adain_step(
    out: Tensor,
    cfg: CrossImageConfig,
    quirks: ReferenceQuirks,
    targets: _StepTargets,
    masks: ClassMasks | None,
    *,
    step: int,
) -> Tensor:
    if cfg.adain == "none":
        return out
    if cfg.classwise_at(step):
        return classwise_adain(out, masks, targets.classwise, quirks=quirks)  # type: ignore[arg-type]
    return adain(out, targets.global_mean, targets.global_std, quirks=quirks)


# ---------------------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------------------
class CrossImageMethod(DiffusionMethod):
    """Stable-Diffusion style transfer by the three-branch walk: cross-image attention,
    CACTI, CACTIF and AdaIN-only diffusion (docs/METHOD.md, docs/DIFFUSION.md).

    Parameters: :class:`~synth2real.diffusion.config.CrossImageConfig` (the presets
    ``adain-diffusion``, ``cross-image``, ``cacti`` and ``cactif`` set ``swap``,
    ``adain`` and ``filtering``). Each reference is encoded and drawn once per working
    size (:class:`ReferenceBank`); content images are translated in batches that share
    one style row per distinct reference.
    """

    config_class = CrossImageConfig
    pipeline = "three-branch"
    config: CrossImageConfig

    def __init__(self, **params):
        self._banks: dict[Size, ReferenceBank] = {}
        super().__init__(**params)
        # class-wise AdaIN needs a label map for every reference
        self.needs_reference_labels = self.config.adain == "classwise"  # type: ignore[misc]

    def _drop_reference_caches(self) -> None:
        super()._drop_reference_caches()
        self._banks.clear()

    def _prepare_size(self, size: Size) -> None:
        self._bank(size)

    def _default_seeds(self, images) -> list[int]:
        return [pixel_seed(self.config.seed, img, "content") for img in images]

    def reference_indices(self, ref: int) -> list[int]:
        """References that shape the output for chosen ``ref``: all of them with class-wise
        AdaIN (a class missing from ``ref`` takes statistics pooled over the others),
        else ``ref`` alone."""
        refs = self.check_prepared()
        if self.config.adain == "classwise" and self.config.quirks.pools_missing_classes:
            return list(range(len(refs)))
        return [ref]

    def _slots(
        self, label, size: Size, latent_hw: tuple[int, int], *, reference: bool = False
    ) -> np.ndarray:
        """A label map at latent size (see :func:`~.adain.labels_to_latent`; with
        ``reference_quirks``, the reference's path, :func:`~.quirks.reference_labels_to_latent`:
        a reference's label as a colour PNG, cropped as ``reference_fit`` says, a
        content's as an index PNG, stretched as its image is)."""
        classes = self.check_prepared().classes
        if self.config.quirks.reference_labels:
            return reference_labels_to_latent(
                label,
                size,
                latent_hw,
                classes.num_classes,
                classes.ignore_index,
                colors=classes.palette() if reference else None,
                crop=reference and self.config.reference_fit == "crop",
            )
        return labels_to_latent(
            label,
            size,
            latent_hw,
            classes.num_classes,
            classes.ignore_index,
            self.config.thin_share,
        )

    def _bank(self, size: Size) -> ReferenceBank:
        if size not in self._banks:
            cfg = self.config
            refs = self.check_prepared()
            m = self.models
            lats = self._reference_latents(size)
            classwise = cfg.adain == "classwise"
            latent_hw = (lats.shape[2], lats.shape[3])
            slots: list[torch.Tensor | None] = []
            for img, lab in zip(refs.images, refs.labels, strict=True):
                if lab is None or not classwise:
                    slots.append(None)
                    continue
                if not cfg.quirks.reference_labels:  # (the reference's path fits it itself)
                    _, lab = fit_to(img, lab, size, cfg.reference_fit)
                slot = self._slots(lab, size, latent_hw, reference=True)
                slots.append(torch.from_numpy(slot).to(m.device))
            seeds = [pixel_seed(cfg.seed, img, "reference") for img in refs.images]
            self._banks[size] = ReferenceBank(
                lats,
                slots,
                self._schedule,  # type: ignore[arg-type]
                cfg.skip,
                seeds,
                num_classes=refs.classes.num_classes if classwise else 0,
                erosion=cfg.erosion,
                quirks=cfg.quirks,
            )
        return self._banks[size]

    def _translate_latents(self, batch: _Batch, content: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        m = self.models
        bank = self._bank(batch.size)
        masks = None
        if cfg.adain == "classwise":
            hw = (content.shape[2], content.shape[3])
            slots = [self._slots(lab, batch.size, hw) for lab in batch.labels]
            k = self.check_prepared().classes.num_classes
            masks = class_masks(
                torch.from_numpy(np.stack(slots)).to(m.device), k, cfg.erosion, cfg.quirks
            )
        return cross_image_walk(
            m,
            self._layers,
            self._schedule,  # type: ignore[arg-type]
            cfg,
            content,
            batch.seeds,
            bank,
            batch.refs,
            masks,
        )
