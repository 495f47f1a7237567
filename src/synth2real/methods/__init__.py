"""Translation methods: the interface, the registry, and one file per method.

Importing this package registers every built-in method: the classical ones here, and the
diffusion presets as data (:mod:`.presets`; their classes are in ``synth2real.diffusion``
and imported when a preset is first created or described).
"""

from synth2real.methods.base import Method, References
from synth2real.methods.registry import create_method, describe, list_methods, register

__all__ = ["Method", "References", "create_method", "describe", "list_methods", "register"]

# Built-in methods: each import registers its names; this order is the order in which
# `synth2real methods` lists them (baseline first, then cheapest to costliest, the
# diffusion presets last).
import importlib as _importlib  # noqa: E402

for _module in ("none", "reinhard", "histmatch", "fda", "presets"):
    _importlib.import_module(f"synth2real.methods.{_module}")
