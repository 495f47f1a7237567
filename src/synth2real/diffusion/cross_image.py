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

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from synth2real.diffusion.adain import (
    STD_FLOOR,
    ClassMasks,
    TargetStats,
    adain,
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
from synth2real.diffusion.quirks import NO_QUIRKS, ReferenceQuirks
from synth2real.errors import ConfigError


# ---------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------
class ReferenceBank:
    """The references' inverted latents and latent statistics at one working size.

    Built once per working size (the latents of a reference at every level ``S .. T``
    are draws from ``q(x_i | x_0)``, independent of the content and of the UNet) and
    reused for every content image.

    Attributes:
        xs: ``(R, L, C, h, w)`` float32 levels ``S .. T`` of each reference (``L = T-S+1``).
        global_mean, global_std: ``(R, L, C)``.
        target_mean, target_std: ``(R, L, K + 1, C)`` class-wise AdaIN targets (``None``
            without labels); classes the reference lacks hold the pooled statistics of
            the other references, or the global ones.
        source: ``(R, K + 1)`` int8, where each target comes from (0 own, 1 pooled, 2 global).
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
    ):
        r = latents.shape[0]
        if len(slots) != r or len(seeds) != r:
            raise ConfigError("reference bank: latents, label maps and seeds differ in length")
        levels = sample_levels(latents, schedule, skip, make_generators(seeds))  # (L, R, ...)
        self.xs = levels.transpose(0, 1).contiguous()
        var, mean = torch.var_mean(self.xs, dim=(3, 4), correction=0)
        self.global_mean, self.global_std = mean, var.sqrt().clamp_min(STD_FLOOR)
        self.num_classes = num_classes
        self.target_mean = self.target_std = self.source = None
        if num_classes > 0 and all(s is not None for s in slots):
            self._class_targets(torch.stack(list(slots)), num_classes, erosion, quirks)

    def _class_targets(self, slots: Tensor, k: int, erosion: int, quirks: ReferenceQuirks) -> None:
        r, lv = self.xs.shape[:2]
        masks = class_masks(slots.to(self.xs.device), k, erosion)
        stats = [class_stats(self.xs[:, j], masks) for j in range(lv)]
        mean = torch.stack([s[0] for s in stats], 1)  # (R, L, K+1, C)
        var = torch.stack([s[1] for s in stats], 1)
        count = stats[0][2]  # (R, K+1): pixels the statistics use (same at every level)
        has = quirks.class_present(masks).clone()
        has[:, k] = False  # "no class" is never matched class-wise
        source = torch.where(has, 0, 2).to(torch.int8)
        own = has[:, None, :, None]
        t_mean = torch.where(own, mean, self.global_mean[:, :, None, :])
        t_var = torch.where(own, var, (self.global_std**2)[:, :, None, :])
        if quirks.pools_missing_classes and r > 1:
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
                t_var[ri] = torch.where(sel, pv, t_var[ri])
                source[ri][missing] = 1
        self.target_mean = t_mean
        self.target_std = t_var.sqrt().clamp_min(STD_FLOOR)
        self.source = source

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


# ---------------------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------------------
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
    style_of_out = torch.tensor([unique.index(int(r)) for r in refs], device=dev)
    ref_ids = torch.tensor([int(r) for r in refs], device=dev)
    style_xs = bank.xs[torch.tensor(unique, device=dev)]  # (U, L, C, h, w)
    timesteps = torch.tensor(schedule.timesteps, device=dev)
    swapping = _swap_processors(cfg, layers, b, len(unique), style_of_out)

    xs_c = sample_levels(content, schedule, skip, make_generators(content_seeds))
    out = xs_c[0].clone()
    with AttentionEdits(models.unet, layers) as edits:
        for j in range(n_steps):
            i = skip + j
            swap = cfg.swap_at(j)
            edits.use(swapping if swap else None)
            if swap:
                batch = torch.cat([out, style_xs[:, j], xs_c[j]])
            else:
                batch = torch.cat([out, xs_c[j]])
            eps = schedule.to_epsilon(models.predict(batch, timesteps[i]), batch, i)
            c_x, c_eps, _ = schedule.ddpm_coefficients(i)
            mu_out = c_x * out + c_eps * eps[:b]
            if quirks.zero_last_noise and j == n_steps - 1:
                out = mu_out  # the reference zeroes the last noise map
            else:
                # = mu_out + sigma_i z_i with the content's noise map of this step,
                # z_i = (x_{i+1} - mu(x_i)) / sigma_i computed from this very pass
                mu_content = c_x * xs_c[j] + c_eps * eps[-b:]
                out = mu_out + (xs_c[j + 1] - mu_content)
            out = _adain_step(out, cfg, quirks, bank, ref_ids, masks, level=j + 1, step=j)
    return out


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
    bank: ReferenceBank,
    ref_ids: Tensor,
    masks: ClassMasks | None,
    *,
    level: int,
    step: int,
) -> Tensor:
    if cfg.adain == "none":
        return out
    if cfg.classwise_at(step):
        return classwise_adain(
            out,
            masks,  # type: ignore[arg-type]
            bank.targets(ref_ids, level),
            quirks=quirks,
        )
    return adain(out, bank.global_mean[ref_ids, level], bank.global_std[ref_ids, level])


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

    def _slots(self, label, size: Size, latent_hw: tuple[int, int]) -> np.ndarray:
        """A label map at latent size (see :func:`~.adain.labels_to_latent`)."""
        classes = self.check_prepared().classes
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
                _, fitted = fit_to(img, lab, size, cfg.reference_fit)
                slots.append(torch.from_numpy(self._slots(fitted, size, latent_hw)).to(m.device))
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
            masks = class_masks(torch.from_numpy(np.stack(slots)).to(m.device), k, cfg.erosion)
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
