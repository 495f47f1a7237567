"""Every diffusion preset still computes the numbers recorded in
``tests/diffusion/data/golden.npz`` (``tests/diffusion/golden.py``). Recorded when the
package was split into one method class per pipeline (bitwise the numbers from before),
and again when the walk presets' FreeU became the reference's form and class-wise AdaIN
stopped blowing up small classes (docs/DIFFUSION.md, "Outputs that changed"); ``styleid``
did not move."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from tests.diffusion.golden import CHEAP, run_case

DATA = Path(__file__).parent / "data" / "golden.npz"
# Same machine: bitwise equal. Elsewhere CPU kernels may round differently, so a latent
# element may move by float noise (and a rare one further, where a quantile or a floored
# standard deviation amplifies it); any change of behaviour moves nearly all of them.
RTOL = ATOL = 1e-4
SHARE = 0.99


def close_share(have: np.ndarray, want: np.ndarray) -> float:
    return float(np.isclose(have, want, rtol=RTOL, atol=ATOL).mean())


@pytest.mark.parametrize("case", CHEAP)
def test_final_latents_equal_the_recorded_ones(case, tiny_model_dir):
    stored = np.load(DATA)
    got = run_case(case, tiny_model_dir)
    keys = sorted(k.split("/")[1] for k in stored.files if k.startswith(f"{case}/"))
    assert keys and keys == sorted(k for k in got if k.startswith("latent"))
    for key in keys:
        want, have = stored[f"{case}/{key}"], got[key]
        assert have.shape == want.shape, (case, key)
        assert close_share(have, want) >= SHARE, (case, key, float(np.abs(have - want).max()))


def test_the_comparison_tells_the_presets_apart():
    """The criterion is sensitive: no two recorded cases pass it against each other."""
    stored = np.load(DATA)
    for a, b in combinations(CHEAP, 2):
        shares = [close_share(stored[f"{a}/latent{i}"], stored[f"{b}/latent{i}"]) for i in range(6)]
        assert max(shares) < 0.5, (a, b, shares)
