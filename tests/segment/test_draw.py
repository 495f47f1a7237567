"""The one overlay rule (report thumbnails and evaluate's overlays) and palette PNGs."""

import io

import numpy as np
from PIL import Image

from synth2real.segment.draw import mask_png, overlay


def test_overlay_draws_coloured_classes_only():
    img = np.full((2, 4, 3), 100, np.uint8)
    lab = np.array([[0, 1, 2, 3], [255, 1, 0, 2]], np.uint8)
    palette = [(0, 0, 0), (0, 255, 0), (200, 0, 0), (0, 0, 0)]  # class 3 black too
    out = overlay(img, lab, palette, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert (out[0, 1] == [50, 178, 50]).all()  # 0.5 * 100 + 0.5 * colour, rounded
    assert (out[0, 2] == [150, 50, 50]).all() and (out[1, 3] == out[0, 2]).all()
    # black classes (background here, and class 3) and ignored pixels are left as they are
    for y, x in ((0, 0), (0, 3), (1, 0), (1, 2)):
        assert (out[y, x] == 100).all(), (y, x)
    assert (img == 100).all()  # the input is not modified


def test_overlay_draws_a_coloured_class_0():
    """Cityscapes-like palettes colour class 0 (road): it is drawn like any other class."""
    img = np.zeros((1, 2, 3), np.uint8)
    out = overlay(img, np.array([[0, 1]], np.uint8), [(128, 64, 128), (0, 0, 0)], alpha=0.55)
    assert (out[0, 0] == np.round(0.55 * np.array([128, 64, 128]))).all()
    assert (out[0, 1] == 0).all()


def test_mask_png_keeps_indices_and_palette():
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    im = Image.open(io.BytesIO(mask_png(mask, [(0, 0, 0), (1, 2, 3), (9, 8, 7)])))
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), mask)
    assert im.getpalette()[:9] == [0, 0, 0, 1, 2, 3, 9, 8, 7]
