"""The diffusion presets: named parameter sets of the two diffusion methods (METHOD.md).

| preset | KV swap + sharpening | AdaIN | filtering |
|---|---|---|---|
| ``adain-diffusion`` | no | global, every step | no |
| ``cross-image`` | yes | global, every step | no |
| ``cacti`` | yes | class-wise on steps 5..14, global otherwise | no |
| ``cactif`` | yes | as cacti | yes, p = 0.25 |
| ``styleid`` | StyleID injection | initial latent only | no |

Data only: each method class is named as ``"module:Class"`` and imported when a preset is
first created or described, so registering the presets (done when
``synth2real.methods`` is imported) imports neither torch, diffusers nor
``synth2real.diffusion``. Each preset overrides only what differs from its class's
defaults (the classes' config dataclasses in ``synth2real.diffusion.config``).
"""

from __future__ import annotations

from typing import Any

from synth2real.methods.registry import register_lazy

CROSS_IMAGE = "synth2real.diffusion.cross_image:CrossImageMethod"
STYLEID = "synth2real.diffusion.styleid:StyleIDMethod"

#: name -> (method class, summary, parameter overrides of the class's defaults)
PRESETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "adain-diffusion": (
        CROSS_IMAGE,
        "Stable Diffusion, edit-friendly inversion + global latent AdaIN every step (no attention edit)",
        {"swap": False},
    ),
    "cross-image": (
        CROSS_IMAGE,
        "cross-image attention: style keys/values with sharpening in the decoder + global latent AdaIN",
        {},
    ),
    "cacti": (
        CROSS_IMAGE,
        "CACTI: cross-image attention + class-wise latent AdaIN (steps 5-14); needs reference labels",
        {"adain": "classwise"},
    ),
    "cactif": (
        CROSS_IMAGE,
        "CACTIF: CACTI + selective attention filtering (p=0.25); needs reference labels",
        {"adain": "classwise", "filtering": True},
    ),
    "styleid": (
        STYLEID,
        "StyleID: DDIM inversion, content-query preservation (gamma 0.75), temperature 1.5, initial AdaIN",
        {},
    ),
}

for _name, (_target, _summary, _params) in PRESETS.items():
    register_lazy(_name, _target, summary=_summary, family="diffusion", **_params)
