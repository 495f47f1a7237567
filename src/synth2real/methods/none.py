"""``none``: the identity, the ``source-only`` baseline of every pilot."""

from __future__ import annotations

import numpy as np

from synth2real.methods.base import Method
from synth2real.methods.registry import register


@register("none", summary="identity: the synthetic image unchanged (baseline)")
class Identity(Method):
    """Return the synthetic image unchanged.

    The baseline every other method is compared against. Takes no parameters.
    """

    def apply(self, image: np.ndarray, label: np.ndarray | None, ref: int) -> np.ndarray:
        return image.copy()
