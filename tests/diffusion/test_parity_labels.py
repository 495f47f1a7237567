"""Label maps at latent size: the official ``utils/mask_utils.process_label`` (what the
CACTIF code gives its class-wise AdaIN) against synth2real's reference path
(``quirks.reference_labels_to_latent``, used with ``reference_quirks``), on a colour
label PNG as the reference reads its style labels (Cityscapes' RGBA ``*_color.png``) and
a palette PNG of GTA5 ids as it reads its content labels. Both must be equal pixel for
pixel at the reference's size (512 x 1024, latents 64 x 128)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.diffusion.reference import loader

K = 19  # the reference's classes (Cityscapes' train ids)


def _label(h: int, w: int, seed: int) -> np.ndarray:
    """Train ids: blocks, a thin 'pole' (5) line, a no-class (255) patch, on the border too."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    for c in rng.integers(1, K, 8):
        y, x = rng.integers(0, h - 40), rng.integers(0, w - 60)
        lab[y : y + rng.integers(20, h // 2), x : x + rng.integers(30, w // 2)] = c
    lab[:, w // 2 : w // 2 + 3] = 5
    lab[: h // 10, : w // 8] = 255
    return lab


def _official(path, palette) -> np.ndarray:
    _, small = loader.cactif().utils_mask_utils.process_label(path, palette)
    out = small.astype(np.int64)
    out[out == 255] = K
    return out


@pytest.mark.parametrize("hw", [(600, 1000), (512, 1024), (1052, 1914)])
def test_colour_labels_reach_latent_size_as_in_the_reference(tmp_path, hw):
    from synth2real.diffusion.quirks import reference_labels_to_latent

    ref = loader.cactif()  # skips without the reference code
    palette = ref.palettes.CITYSCAPES
    lab = _label(*hw, seed=hw[0])
    rgba = np.zeros((*hw, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., :3] = np.concatenate([np.array(palette, np.uint8), np.zeros((237, 3), np.uint8)])[lab]
    path = tmp_path / "label_gtFine_color.png"
    Image.fromarray(rgba, "RGBA").save(path)
    colors = [tuple(c) for c in palette]
    mine = reference_labels_to_latent(lab, (512, 1024), (64, 128), K, colors=colors)
    official = _official(path, palette)
    assert np.array_equal(mine, official)
    assert (official == K).sum() > 0  # boundary pixels became "no class" in both


@pytest.mark.parametrize("hw", [(1052, 1914), (512, 1024)])
def test_index_labels_reach_latent_size_as_in_the_reference(tmp_path, hw):
    from synth2real.diffusion.quirks import reference_labels_to_latent

    ref = loader.cactif()
    gta = ref.palettes.GTA  # GTA5's raw id of each train id
    lab = _label(*hw, seed=hw[1])
    raw = np.where(lab < K, np.array(gta + [0] * (256 - len(gta)))[np.minimum(lab, K)], 0)
    img = Image.fromarray(raw.astype(np.uint8), "P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    path = tmp_path / "00001.png"
    img.save(path)
    mine = reference_labels_to_latent(lab, (512, 1024), (64, 128), K)
    assert np.array_equal(mine, _official(path, gta))
