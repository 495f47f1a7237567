"""Stable-Diffusion translation methods (StyleID, cross-image attention, CACTI, CACTIF).

Importing this package is free (no torch, no diffusers): the presets are registered
lazily by :mod:`synth2real.diffusion.presets`; the modules below import torch when used.

- :mod:`.loading`: model loading, devices, dtypes, VAE encode/decode with NaN guard.
- :mod:`.inversion`: schedules, edit-friendly DDPM inversion, DDIM inversion.
- :mod:`.adain`: global and class-wise AdaIN on latents.
- :mod:`.layers`: which attention layers are edited, by role and resolution.
- :mod:`.attention`: attention maths (sharpening, CACTIF filtering), chunked.
- :mod:`.processors`: diffusers attention processors driven by one shared state.
- :mod:`.pipeline`: the three-branch (out, style, content) walk.
- :mod:`.styleid`: StyleID.
- :mod:`.method`: ``DiffusionMethod``, the ``Method`` behind every preset.
- :mod:`.tiny`: tiny random SD-layout models for tests and smoke runs.
"""
