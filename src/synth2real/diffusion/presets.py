"""The diffusion presets: named parameter sets of one ``DiffusionMethod`` (METHOD.md).

| preset | KV swap + sharpening | AdaIN | filtering |
|---|---|---|---|
| ``adain-diffusion`` | no | global, every step | no |
| ``cross-image`` | yes | global, every step | no |
| ``cacti`` | yes | class-wise on steps 5..14, global otherwise | no |
| ``cactif`` | yes | as cacti | yes, p = 0.25 |
| ``styleid`` | StyleID injection | initial latent only | no |

This module imports neither torch nor diffusers: registering the presets (done when
``synth2real.methods`` is imported) costs nothing; the method class is imported when a
preset is first created or described.
"""

from __future__ import annotations

from typing import Any

from synth2real.methods.registry import register_lazy

TARGET = "synth2real.diffusion.method:DiffusionMethod"

#: name -> (summary, parameter overrides of ``DiffusionMethod``'s defaults)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "adain-diffusion": (
        "Stable Diffusion, edit-friendly inversion + global latent AdaIN every step (no attention edit)",
        {"pipeline": "three-branch", "swap": False, "adain": "global", "filtering": False},
    ),
    "cross-image": (
        "cross-image attention: style keys/values with sharpening in the decoder + global latent AdaIN",
        {"pipeline": "three-branch", "swap": True, "adain": "global", "filtering": False},
    ),
    "cacti": (
        "CACTI: cross-image attention + class-wise latent AdaIN (steps 5-14); needs reference labels",
        {"pipeline": "three-branch", "swap": True, "adain": "classwise", "filtering": False},
    ),
    "cactif": (
        "CACTIF: CACTI + selective attention filtering (p=0.25); needs reference labels",
        {"pipeline": "three-branch", "swap": True, "adain": "classwise", "filtering": True},
    ),
    "styleid": (
        "StyleID: DDIM inversion, content-query preservation (gamma 0.75), temperature 1.5, initial AdaIN",
        {"pipeline": "styleid", "adain": "global", "skip": 0, "freeu": False},
    ),
}


def _register() -> None:
    for name, (summary, params) in PRESETS.items():
        register_lazy(name, TARGET, summary=summary, family="diffusion", **params)


_register()
