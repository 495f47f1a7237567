"""The reference code's behaviours that differ from docs/METHOD.md, gathered in one place.

The official CACTIF code does a few things the method description does not (see
docs/DIFFUSION.md, "The reference code's quirks and our defaults"). Our defaults follow
METHOD.md; a :class:`ReferenceQuirks` asks for the reference's behaviour instead, one
field per behaviour, so that results can be compared with the reference's. The methods
build it from their ``reference_quirks`` and ``adain_sigma_offset`` parameters
(:meth:`ReferenceQuirks.from_params`) and hand the one object to the code it changes:
the reference bank (class presence, pooling), class-wise AdaIN (sigma offset, untouched
pixels) and the walk (last noise map).

Imports torch only when a quirk is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from synth2real.diffusion.adain import ClassMasks

#: the reference code handles only Cityscapes' 19 classes.
REFERENCE_NUM_CLASSES = 19


@dataclass(frozen=True)
class ReferenceQuirks:
    """Which of the reference code's behaviours to reproduce (all off: METHOD.md's).

    Attributes:
        sigma_offset: added to both standard deviations of class-wise AdaIN,
            ``(x - mu) / (sigma + o) * (sigma_s + o) + mu_s`` (the reference: 1.0).
        classwise_loop: class-wise AdaIN as the reference's loop over its classes: only
            pixels that survive the erosion, of a class below
            :data:`REFERENCE_NUM_CLASSES` that the chosen reference has (where its eroded
            mask keeps a pixel), are transformed; every other pixel (eroded away, of a
            class missing from the reference, of no class) keeps its value, and nothing
            is pooled over the other references.
        zero_last_noise: the last noise map is zero, so the walk ends on the posterior
            mean of its last step instead of exactly on ``x_0``.
    """

    sigma_offset: float = 0.0
    classwise_loop: bool = False
    zero_last_noise: bool = False

    @classmethod
    def from_params(
        cls, reference_quirks: bool, adain_sigma_offset: float | None = None
    ) -> ReferenceQuirks:
        """From the methods' parameters: ``reference_quirks`` turns every quirk on (sigma
        offset 1.0); ``adain_sigma_offset``, when given, sets the offset either way."""
        offset = 1.0 if reference_quirks else 0.0
        if adain_sigma_offset is not None:
            offset = float(adain_sigma_offset)
        on = bool(reference_quirks)
        return cls(sigma_offset=offset, classwise_loop=on, zero_last_noise=on)

    # -- class-wise AdaIN ------------------------------------------------------------------
    def class_present(self, masks: ClassMasks) -> Tensor:
        """``(B, K + 1)`` bool: the classes a reference counts as its own (the reference
        counts a class only where its eroded mask keeps a pixel)."""
        return masks.eroded_present if self.classwise_loop else masks.present

    @property
    def pools_missing_classes(self) -> bool:
        """Whether a class missing from a reference takes the other references' statistics."""
        return not self.classwise_loop

    def keep_untouched(self, out: Tensor, x: Tensor, masks: ClassMasks, source: Tensor) -> Tensor:
        """Class-wise AdaIN's result ``out`` with the pixels the reference leaves alone
        reset to their input ``x`` (with ``classwise_loop``; else ``out`` itself).

        Args:
            out: ``(B, C, h, w)`` float32 transformed latents.
            x: ``(B, C, h, w)`` float32 latents before the transform.
            masks: the contents' class masks.
            source: ``(B, K + 1)`` int8 where each class's target comes from (0 = the
                chosen reference's own statistics).
        """
        if not self.classwise_loop:
            return out
        import torch

        b, _, h, w = out.shape
        slot_ok = source == 0
        slot_ok[:, min(masks.num_classes, REFERENCE_NUM_CLASSES) :] = False
        pix_ok = torch.gather(slot_ok, 1, masks.slots.reshape(b, h * w)).reshape(b, 1, h, w)
        pix_ok = pix_ok & masks.kept[:, None]
        return torch.where(pix_ok, out, x)


#: METHOD.md's behaviour everywhere.
NO_QUIRKS = ReferenceQuirks()
