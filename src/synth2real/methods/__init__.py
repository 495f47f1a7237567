"""Translation methods: the interface, the registry, and one file per method.

Importing this package registers every built-in method. Classical methods live here;
diffusion presets are registered lazily (their code is in ``synth2real.diffusion``).
"""

from synth2real.methods.base import Method, References
from synth2real.methods.registry import create_method, describe, list_methods, register

__all__ = ["Method", "References", "create_method", "describe", "list_methods", "register"]

# Built-in methods: each import registers its names; this order is the order in which
# `synth2real methods` lists them (baseline first, then cheapest to costliest).
import importlib as _importlib  # noqa: E402

for _module in ("none", "reinhard", "histmatch", "fda"):
    _importlib.import_module(f"synth2real.methods.{_module}")

# diffusion presets last; registering them imports neither torch nor diffusers (the
# class is resolved when a preset is first created or described)
_importlib.import_module("synth2real.diffusion.presets")
