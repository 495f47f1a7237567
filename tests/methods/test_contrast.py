"""The contrast-preserving class-wise variants (``*-cwc``): thin classes stay visible."""

import cv2
import numpy as np
import pytest

from synth2real.data.classes import ClassSpec
from synth2real.errors import ConfigError
from synth2real.methods import References, create_method
from synth2real.methods import functional as F

CS = ClassSpec(("background", "crack"))


def content(h=96, w=160, seed=0):
    """Synthetic road: a left-to-right brightness ramp crossed by flat dark cracks.

    The cracks have one colour everywhere, so on the left they are barely darker than the
    road and on the right much darker: a plain class-wise transfer maps the crack class to
    one pooled crack colour and the road to the pooled road colours independently.
    """
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    for y in range(8, h, 16):
        lab[y : y + 2, :] = 1
    img = np.linspace(80, 220, w)[None, :, None] * np.ones((h, 1, 3)) + rng.normal(0, 4, (h, w, 3))
    img[lab == 1] = 60 + rng.normal(0, 3, (int((lab == 1).sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8), lab


def reference(level, seed, h=80, w=90):
    """Real photo stand-in: uniform road at ``level``, cracks 35 levels darker than it."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    for x in range(6, w, 15):
        lab[:, x : x + 2] = 1
    img = np.full((h, w, 3), float(level)) + rng.normal(0, 5, (h, w, 3))
    img[lab == 1] -= 35
    return np.clip(img, 0, 255).astype(np.uint8), lab


@pytest.fixture(scope="module")
def refs():
    rs = [reference(level, i) for i, level in enumerate((70, 130, 200))]
    return References([r[0] for r in rs], [r[1] for r in rs], ["a", "b", "c"], CS)


def lightness(img):
    return cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0]


def column_contrast(img, lab):
    """Per image column: mean L of the road within 3 px of a crack minus the cracks' mean L."""
    L = lightness(img)
    ring = (cv2.dilate(lab, np.ones((7, 7), np.uint8)) > 0) & (lab == 0)
    return np.array(
        [L[:, x][ring[:, x]].mean() - L[:, x][lab[:, x] == 1].mean() for x in range(lab.shape[1])]
    )


def ring_contrast(img, lab):
    """Mean L of the pixels within 3 px of a crack minus the cracks' mean L (whole image)."""
    L = lightness(img)
    ring = (cv2.dilate(lab, np.ones((7, 7), np.uint8)) > 0) & (lab == 0)
    return L[ring].mean() - L[lab == 1].mean()


@pytest.mark.parametrize("family", ["reinhard", "histmatch"])
def test_thin_crack_stays_visible_where_plain_classwise_erases_it(refs, family):
    img, lab = content()
    assert column_contrast(img, lab).min() > 4  # visible in the synthetic image
    plain = create_method(f"{family}-cw")
    keep = create_method(f"{family}-cwc")
    plain.prepare(refs)
    keep.prepare(refs)
    c_plain = column_contrast(plain.apply(img, lab, 0), lab)
    c_keep = column_contrast(keep.apply(img, lab, 0), lab)
    # plain class-wise matching erases or inverts the crack over a good part of the image
    assert (c_plain < 3).mean() > 0.2
    # the contrast-preserving variant keeps it darker than its surroundings everywhere,
    # by about the references' own crack contrast
    assert c_keep.min() > 5
    real = np.mean([ring_contrast(im, lb) for im, lb in zip(refs.images, refs.labels, strict=True)])
    assert abs(np.median(c_keep) - real) < 0.35 * real


def test_background_is_left_to_the_classwise_stage(refs):
    img, lab = content()
    cw, cwc = create_method("reinhard-cw"), create_method("reinhard-cwc")
    cw.prepare(refs)
    cwc.prepare(refs)
    assert cwc._thin == {1}  # dense cracks, yet the road between them is not "thin"
    a, b = cw.apply(img, lab, 0), cwc.apply(img, lab, 0)
    # road pixels change only through the final LAB -> RGB rounding
    assert np.abs(a[lab == 0].astype(int) - b[lab == 0]).max() <= 1
    assert np.abs(a[lab == 1].astype(int) - b[lab == 1]).max() > 20


def test_preserve_keeps_the_contents_local_contrast(refs):
    img, lab = content()
    m = create_method("reinhard-cwc", contrast="preserve")
    m.prepare(refs)
    out = m.apply(img, lab, 0)
    d_in, _, _ = F.class_contrast(F.rgb_to_lab(img), lab, 1, m.ring)
    d_out, _, _ = F.class_contrast(F.rgb_to_lab(out), lab, 1, m.ring)
    assert np.abs(d_out[:, 0] - d_in[:, 0]).mean() < 1.0


def test_thin_classes_by_name_and_unknown_names(refs):
    img, lab = content()
    m = create_method("histmatch-cwc", thin_classes="crack")
    m.prepare(refs)
    assert m._thin == {1}
    assert column_contrast(m.apply(img, lab, 0), lab).min() > 5
    bad = create_method("histmatch-cwc", thin_classes="pothole")
    with pytest.raises(ConfigError, match="pothole"):
        bad.prepare(refs)


def test_class_absent_from_references_is_judged_on_the_image_and_keeps_its_contrast():
    refs = [reference(level, i) for i, level in enumerate((90, 160))]
    no_cracks = References(
        [r[0] for r in refs], [np.zeros_like(r[1]) for r in refs], ["a", "b"], CS
    )
    img, lab = content()
    m = create_method("reinhard-cwc")
    m.prepare(no_cracks)
    out = m.apply(img, lab, 0)
    # no reference contrast to match: the content's own contrast is kept (fallback)
    d_in, _, _ = F.class_contrast(F.rgb_to_lab(img), lab, 1, m.ring)
    d_out, _, _ = F.class_contrast(F.rgb_to_lab(out), lab, 1, m.ring)
    assert np.abs(d_out[:, 0] - d_in[:, 0]).mean() < 1.0
