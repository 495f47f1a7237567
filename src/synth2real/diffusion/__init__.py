"""Stable-Diffusion translation methods (StyleID, cross-image attention, CACTI, CACTIF).

Importing this package is free (no torch, no diffusers); the modules below import torch
when used. The presets are data in :mod:`synth2real.methods.presets`, registered without
importing any of this.

- :mod:`.config`: the parameters of each pipeline (defaults and docs, once).
- :mod:`.method`: ``DiffusionMethod``, what both methods share behind ``Method``.
- :mod:`.cross_image`: ``CrossImageMethod``, the method of the three-branch walk
  (adain-diffusion, cross-image, cacti, cactif).
- :mod:`.walk`: the three-branch walk itself (``cross_image_walk``).
- :mod:`.bank`: ``ReferenceBank``, the references' levels and AdaIN targets.
- :mod:`.styleid`: StyleID and ``StyleIDMethod``.
- :mod:`.processors`: diffusers attention processors, one class per behaviour.
- :mod:`.attention`: chunked attention maths (sharpening, temperature).
- :mod:`.filtering`: CACTIF's selective attention filtering.
- :mod:`.adain`: global and class-wise AdaIN on latents.
- :mod:`.quirks`: the reference code's behaviours, gathered in ``ReferenceQuirks``.
- :mod:`.inversion`: schedules, edit-friendly DDPM inversion, DDIM inversion.
- :mod:`.layers`: which attention layers are edited, by role and resolution.
- :mod:`.loading`: model loading, devices, dtypes, VAE encode/decode with NaN guard.
"""
