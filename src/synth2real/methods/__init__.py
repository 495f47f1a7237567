"""Translation methods: the interface, the registry, and one file per method.

Importing this package registers every built-in method. Classical methods live here;
diffusion presets are registered lazily (their code is in ``synth2real.diffusion``).
"""

import importlib

from synth2real.methods.base import Method, References
from synth2real.methods.registry import create_method, describe, list_methods, register

__all__ = ["Method", "References", "create_method", "describe", "list_methods", "register"]

# built-in methods (each import registers its names)
from synth2real.methods import none  # noqa: E402,F401

# diffusion presets last, so they are listed after the classical methods; registering
# them imports neither torch nor diffusers (the class is resolved on first use)
importlib.import_module("synth2real.diffusion.presets")
