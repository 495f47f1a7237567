"""The reference code's behaviours that differ from docs/METHOD.md, gathered in one place.

The official CACTIF code and the authors' StyleID diffusers port do a few things the
method descriptions do not (docs/DIFFUSION.md, "The reference code's quirks and our
defaults"; each one measured against the official code by ``benchmarks/parity_probe.py``).
Our defaults follow METHOD.md; a :class:`ReferenceQuirks` asks for the reference's
behaviour instead, one field per behaviour, so that results can be compared with the
reference's. The methods build it once from their parameters
(:meth:`ReferenceQuirks.for_walk` from ``reference_quirks``, ``adain_sigma_offset`` and
``shared_noise``; :meth:`ReferenceQuirks.for_styleid` from StyleID's ``reference_quirks``)
and hand the one object to the code it changes: the reference bank and class-wise AdaIN
(erosion, statistics, sigma offset, untouched pixels, label maps at latent size), the
walk (noise draws, swap steps, last step) and StyleID (initial AdaIN, layers, output).

What only the reference does lives here too: its noise draws (:func:`reference_levels`),
its label path (:func:`reference_labels_to_latent`) and the port's initial AdaIN
(:func:`port_adain`). Imports torch only when a quirk is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from synth2real.diffusion.adain import ClassMasks
    from synth2real.diffusion.inversion import Schedule

#: the reference code handles only Cityscapes' 19 classes.
REFERENCE_NUM_CLASSES = 19
#: added to every variance by the reference's AdaIN statistics (``calc_mean_std``).
REFERENCE_VAR_EPS = 1e-5
#: ``torch.manual_seed`` of the reference's ``utils/adain.py`` (and ``run.py``'s seed).
REFERENCE_SEED = 42
#: the StyleID port's initial AdaIN divides by ``std + PORT_STD_EPS`` (unbiased std).
PORT_STD_EPS = 1e-4
#: the StyleID port injects in the last five decoder self-attention layers (its layers
#: 7..11 of 12: SD 1.5's ``up_blocks.2.attentions.1/2`` and ``up_blocks.3.attentions.*``).
PORT_LAYER_COUNT = 5
#: the reference's swap counter lags one step and its swap range starts at 1: denoising
#: step 1 never swaps (and step 0 only on images after the first of a run).
REFERENCE_NO_SWAP_STEPS = (1,)


@dataclass(frozen=True)
class ReferenceQuirks:
    """Which of the reference code's behaviours to reproduce (all off: METHOD.md's).

    The three-branch walk (the official CACTIF code):

    Attributes:
        sigma_offset: added to both standard deviations of class-wise AdaIN,
            ``(x - mu) / (sigma + o) * (sigma_s + o) + mu_s`` (the reference: 1.0).
        classwise_loop: class-wise AdaIN as the reference's loop over its classes: only
            pixels that survive the erosion, of a class below
            :data:`REFERENCE_NUM_CLASSES` that the chosen reference has (where its eroded
            mask keeps a pixel), are transformed, with statistics over the eroded masks
            however few pixels they keep; every other pixel (eroded away, of a class
            missing from the reference, of no class) keeps its value, and nothing is
            pooled over the other references.
        border_erodes: the class masks are eroded as ``scipy.ndimage.binary_erosion``
            does by default (``border_value=0``): pixels on the image border erode.
        reference_statistics: standard deviations are ``sqrt(var + 1e-5)``, with the
            unbiased variance in global AdaIN and the population variance in class-wise
            AdaIN (``calc_mean_std`` and ``calc_mean_std_smooth``), instead of the
            population std floored at 1e-5.
        zero_last_noise: the last noise map is zero for every row: the walk ends on the
            posterior mean of its last step instead of exactly on ``x_0``, and the last
            AdaIN aims at the style's posterior mean (the reference's style row after
            its last step), not at the style's ``x_0``.
        no_swap_steps: denoising steps that never swap, whatever ``swap_steps`` says
            (:data:`REFERENCE_NO_SWAP_STEPS`: the reference's lagging step counter).
        reference_labels: label maps reach latent size as the reference's
            ``process_label`` does (:func:`reference_labels_to_latent`): references as
            colour PNGs (bicubic resizes, exact palette match, so boundary and thin-class
            pixels become "no class"), contents as index PNGs (nearest), instead of
            :func:`~.adain.labels_to_latent`.
        shared_noise: every image (content or reference) draws its levels as the
            reference's inversion does right after ``torch.manual_seed(42)``
            (:func:`reference_levels`): in the official CACTI/CACTIF runs the class-wise
            AdaIN reseeds torch's global generator, so every style and every content
            image but a run's first get exactly these draws.

    StyleID (the authors' diffusers port):

    Attributes:
        port_initial_adain: the initial AdaIN as the port's:
            ``(c - mean_c) / (std_c + 1e-4) * std_s + mean_s`` with unbiased stds
            (:func:`port_adain`).
        port_layers: inject in the port's layers only, the last
            :data:`PORT_LAYER_COUNT` decoder self-attention layers (SD 1.5: not
            ``up_blocks.2.attentions.0``).
        x0_output: return the last step's predicted clean latent (what the port decodes)
            instead of the last DDIM step's result.
    """

    sigma_offset: float = 0.0
    classwise_loop: bool = False
    border_erodes: bool = False
    reference_statistics: bool = False
    zero_last_noise: bool = False
    no_swap_steps: tuple[int, ...] = ()
    reference_labels: bool = False
    shared_noise: bool = False
    port_initial_adain: bool = False
    port_layers: bool = False
    x0_output: bool = False

    @classmethod
    def for_walk(
        cls,
        reference_quirks: bool,
        adain_sigma_offset: float | None = None,
        shared_noise: bool = False,
    ) -> ReferenceQuirks:
        """From the three-branch walk's parameters: ``reference_quirks`` turns every walk
        quirk on (sigma offset 1.0) but ``shared_noise``, which is its own parameter;
        ``adain_sigma_offset``, when given, sets the offset either way."""
        on = bool(reference_quirks)
        offset = 1.0 if on else 0.0
        if adain_sigma_offset is not None:
            offset = float(adain_sigma_offset)
        return cls(
            sigma_offset=offset,
            classwise_loop=on,
            border_erodes=on,
            reference_statistics=on,
            zero_last_noise=on,
            no_swap_steps=REFERENCE_NO_SWAP_STEPS if on else (),
            reference_labels=on,
            shared_noise=bool(shared_noise),
        )

    #: the name the methods used before StyleID had quirks of its own
    from_params = for_walk

    @classmethod
    def for_styleid(cls, reference_quirks: bool) -> ReferenceQuirks:
        """From StyleID's ``reference_quirks``: every port quirk on, or none."""
        on = bool(reference_quirks)
        return cls(port_initial_adain=on, port_layers=on, x0_output=on)

    # -- statistics ------------------------------------------------------------------------
    @property
    def variance_correction(self) -> int:
        """Bessel's correction of the variance in *global* AdaIN (1 = unbiased)."""
        return 1 if self.reference_statistics else 0

    def std(self, var: Tensor, floor: float) -> Tensor:
        """Standard deviations from variances: ``sqrt(var + 1e-5)`` with
        ``reference_statistics``, else ``sqrt(var)`` floored at ``floor``."""
        if self.reference_statistics:
            return (var + REFERENCE_VAR_EPS).sqrt()
        return var.sqrt().clamp_min(floor)

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

    # -- the walk --------------------------------------------------------------------------
    def swaps(self, step: int, planned: bool) -> bool:
        """Whether the walk swaps at denoising ``step`` where ``swap_steps`` says
        ``planned``."""
        return planned and step not in self.no_swap_steps


#: METHOD.md's behaviour everywhere.
NO_QUIRKS = ReferenceQuirks()


# ---------------------------------------------------------------------------------------
# what only the reference does
# ---------------------------------------------------------------------------------------
def reference_levels(x0: Tensor, schedule: Schedule, skip: int, seed: int = REFERENCE_SEED):
    """The levels ``S .. T`` the reference's inversion draws for each image of
    ``x0 (B, C, h, w)`` right after ``torch.manual_seed(seed)``.

    ``utils/ddpm_inversion.sample_xts_from_x0`` draws ``randn_like(x0)`` for one image
    ``(1, C, h, w)`` on torch's global generator once per level, from the last level
    (the smallest timestep) up to the first, and keeps ``x0`` as level ``T``. Here each
    image gets a fresh generator on ``x0``'s device seeded with ``seed`` and the same
    sequence of draws (all ``T`` levels, the skipped ones too, since they move the
    stream): the CPU numbers of a CPU run; on CUDA those of the reference's GPU runs,
    whose global CUDA generator ``torch.manual_seed`` seeds the same way.

    Returns:
        ``(T - S + 1, B, C, h, w)`` float32, as :func:`~.inversion.sample_levels`.
    """
    import torch

    schedule.check_skip(skip)
    b = x0.shape[0]
    t = schedule.num_steps
    x0 = x0.float()
    levels = torch.empty((t - skip + 1, *x0.shape), dtype=torch.float32, device=x0.device)
    for row in range(b):
        g = torch.Generator(x0.device).manual_seed(int(seed))
        for i in reversed(range(t)):
            noise = torch.randn(
                (1, *x0.shape[1:]), generator=g, dtype=torch.float32, device=x0.device
            )
            if i >= skip:
                a = schedule.abar(i)
                levels[i - skip, row] = math.sqrt(a) * x0[row] + math.sqrt(1.0 - a) * noise[0]
    levels[-1] = x0
    return levels


def reference_crop_box(height: int, width: int, aspect: float) -> tuple[float, ...]:
    """The reference's ``image_utils.load_size`` crop of an ``height x width`` image to
    ``aspect`` = width / height (left and right, or top and bottom, equally; float
    offsets, which PIL rounds)."""
    if width / float(height) > aspect:
        new_width = int(aspect * height)
        offset = (width - new_width) / 2
        return (offset, 0, width - offset, height)
    new_height = int(width / aspect)
    offset = (height - new_height) / 2
    return (0, offset, width, height - offset)


def reference_labels_to_latent(
    label: np.ndarray,
    working_hw: tuple[int, int],
    latent_hw: tuple[int, int],
    num_classes: int,
    ignore_index: int = 255,
    *,
    colors: list[tuple[int, int, int]] | None = None,
    crop: bool = True,
) -> np.ndarray:
    """A label map at latent size the way the reference's ``utils/mask_utils.process_label``
    makes it (``load_size``: crop to the working aspect and resize to the working size,
    then resize to the latent size; PIL's default filters).

    With ``colors`` (the reference's style labels, colour PNGs): the classes are drawn in
    these colours (pixels of no class black), both resizes are bicubic, and a latent
    pixel keeps a class only where its colour is exactly that class's (boundary and
    thin-class pixels blend into other colours and become "no class"). Without (its
    content labels, index PNGs): both resizes are nearest neighbour (one source pixel per
    latent pixel). Only the first :data:`REFERENCE_NUM_CLASSES` classes are known, as in
    the reference.

    Args:
        label: ``HxW uint8`` class indices (``ignore_index`` = no class), any size.
        working_hw, latent_hw: ``(H', W')`` and ``(h, w)``; at 512 x 1024 and 64 x 128
            this is the reference exactly.
        num_classes: ``K``.
        ignore_index: label of pixels of no class.
        colors: one RGB colour per class (a colour label PNG), or None (an index PNG).
        crop: crop to the working aspect first, as the reference does (False: stretch).

    Returns:
        ``(h, w)`` int64 slots in ``0 .. K`` (``K`` = no class).
    """
    from PIL import Image

    lab = np.asarray(label)
    known = min(num_classes, REFERENCE_NUM_CLASSES)
    valid = (lab < known) & (lab != ignore_index)
    (wh, ww), (h, w) = working_hw, latent_hw
    if colors is None:
        img = Image.fromarray(np.where(valid, lab, 255).astype(np.uint8), "L")
        resample = Image.Resampling.NEAREST
    else:
        palette = np.zeros((256, 3), np.uint8)
        palette[:known] = np.asarray(colors[:known], np.uint8)
        rgb = palette[np.where(valid, lab, 255)]
        img = Image.fromarray(rgb, "RGB")
        resample = Image.Resampling.BICUBIC
    if crop:
        img = img.crop(reference_crop_box(lab.shape[0], lab.shape[1], ww / float(wh)))
    img = img.resize((ww, wh), resample).resize((w, h), resample)
    out = np.full((h, w), num_classes, np.int64)
    small = np.asarray(img)
    if colors is None:
        ok = small < known
        out[ok] = small[ok]
        return out
    for c in reversed(range(known)):  # a colour used twice: the first class, as list.index
        out[np.all(small == palette[c], axis=-1)] = c
    return out


def port_adain(content: Tensor, style: Tensor) -> Tensor:
    """The StyleID port's initial AdaIN of ``content (B, C, h, w)`` towards ``style``
    (``(B or 1, C, h, w)``): ``(c - mean_c) / (std_c + 1e-4) * std_s + mean_s``, per
    channel, with ``torch.std``'s unbiased estimate."""
    c, s = content.float(), style.float()
    mc, sc = c.mean(dim=(2, 3), keepdim=True), c.std(dim=(2, 3), keepdim=True)
    ms, ss = s.mean(dim=(2, 3), keepdim=True), s.std(dim=(2, 3), keepdim=True)
    return (c - mc) / (sc + PORT_STD_EPS) * ss + ms
