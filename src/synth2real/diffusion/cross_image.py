"""``CrossImageMethod``: the ``Method`` that runs the three-branch walk
(:func:`~.walk.cross_image_walk`) for the presets ``adain-diffusion``, ``cross-image``,
``cacti`` and ``cactif``: label maps brought to latent size, one
:class:`~.bank.ReferenceBank` per working size, batches of contents walked together."""

from __future__ import annotations

import numpy as np
import torch

from synth2real.diffusion.adain import class_masks, labels_to_latent
from synth2real.diffusion.bank import ReferenceBank
from synth2real.diffusion.config import CrossImageConfig
from synth2real.diffusion.method import DiffusionMethod, Size, _Batch, fit_to, pixel_seed
from synth2real.diffusion.quirks import reference_labels_to_latent
from synth2real.diffusion.walk import cross_image_walk


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
