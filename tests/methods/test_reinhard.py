import numpy as np
import pytest

from synth2real.errors import ConfigError
from synth2real.methods import References, create_method
from tests.methods.scenes import CLASSES, lab, pooled_stats, references, scene


@pytest.fixture(scope="module")
def refs():
    return references()


def _stats(x):
    return x.mean(0), x.std(0)


def test_global_reinhard_matches_pooled_lab_mean_and_std(refs):
    img, label = scene(96, 128, 1)
    m = create_method("reinhard")
    m.prepare(refs)
    out = m.apply(img, label, 0)
    assert out.shape == img.shape and out.dtype == np.uint8
    mean, std = _stats(lab(out).reshape(-1, 3))
    rmean, rstd = pooled_stats(refs, None)
    np.testing.assert_allclose(mean, rmean, atol=0.6)
    np.testing.assert_allclose(std, rstd, atol=0.6)


def test_classwise_reinhard_gives_each_class_the_references_class_stats(refs):
    img, label = scene(120, 160, 2)
    m = create_method("reinhard-cw")
    m.prepare(refs)
    out = lab(m.apply(img, label, 0))
    for c in range(CLASSES.num_classes):
        mean, std = _stats(out[label == c])
        rmean, rstd = pooled_stats(refs, c)
        np.testing.assert_allclose(mean, rmean, atol=0.8, err_msg=f"class {c} mean")
        np.testing.assert_allclose(std, rstd, atol=0.8, err_msg=f"class {c} std")
    # the global preset does not: the thin crack class keeps the content's own offset
    g = create_method("reinhard")
    g.prepare(refs)
    gout = lab(g.apply(img, label, 0))
    rmean, _ = pooled_stats(refs, 1)
    assert np.abs(gout[label == 1].mean(0) - rmean).max() > 2.0


def test_class_missing_from_references_gets_the_global_transfer():
    refs = references(crack=False)  # no reference has a crack pixel
    img, label = scene(80, 100, 3)
    assert (label == 2).any()
    cw, gl = create_method("reinhard-cw"), create_method("reinhard")
    cw.prepare(refs)
    gl.prepare(refs)
    out_cw, out_gl = cw.apply(img, label, 0), gl.apply(img, label, 0)
    np.testing.assert_array_equal(out_cw[label == 2], out_gl[label == 2])
    assert not np.array_equal(out_cw[label == 1], out_gl[label == 1])


def test_ignore_pixels_get_the_global_transfer(refs):
    img, label = scene(64, 64, 4)
    label = label.copy()
    label[:8] = 255
    cw, gl = create_method("reinhard-cw"), create_method("reinhard")
    cw.prepare(refs)
    gl.prepare(refs)
    np.testing.assert_array_equal(cw.apply(img, label, 0)[:8], gl.apply(img, label, 0)[:8])


def test_per_reference_statistics_when_not_pooled(refs):
    img, label = scene(64, 80, 5)
    m = create_method("reinhard", pooled=False)
    m.prepare(refs)
    assert m.reference_indices(1) == [1]
    for r in range(len(refs)):
        out = lab(m.apply(img, label, r)).reshape(-1, 3)
        one = References([refs.images[r]], [refs.labels[r]], ["x"], CLASSES)
        rmean, rstd = pooled_stats(one, None)
        np.testing.assert_allclose(out.mean(0), rmean, atol=0.6)
        np.testing.assert_allclose(out.std(0), rstd, atol=0.6)
    pooled = create_method("reinhard")
    pooled.prepare(refs)
    assert pooled.reference_indices(1) == [0, 1, 2]


def test_strength_blends_towards_the_input(refs):
    img, label = scene(40, 40, 6)
    half = create_method("reinhard", strength=0.5)
    full = create_method("reinhard")
    zero = create_method("reinhard", strength=0.0)
    for m in (half, full, zero):
        m.prepare(refs)
    out_half = half.apply(img, label, 0).astype(int)
    out_full = full.apply(img, label, 0).astype(int)
    np.testing.assert_array_equal(zero.apply(img, label, 0), img)
    assert np.abs(out_half - (img.astype(int) + out_full) / 2).max() <= 1.0


def test_classwise_needs_labelled_references_and_content_labels(refs):
    unlabelled = References(refs.images, [None] * len(refs), refs.names, CLASSES)
    m = create_method("reinhard-cw")
    with pytest.raises(ConfigError, match="needs a label map for every reference"):
        m.prepare(unlabelled)
    g = create_method("reinhard")
    g.prepare(unlabelled)  # global methods need no labels
    m.prepare(refs)
    img, _ = scene(32, 32, 7)
    with pytest.raises(ValueError, match="needs the content image's label map"):
        m.apply(img, None, 0)


@pytest.mark.parametrize(
    "kw",
    [{"mode": "classwise"}, {"min_std": 0}, {"strength": 1.5}, {"ring": 0}, {"contrast": "x"}],
)
def test_bad_parameters_are_config_errors(kw):
    with pytest.raises(ConfigError):
        create_method("reinhard", **kw)


def test_rgb_colour_space_agrees_with_albumentations_pixel_distribution_adaptation():
    """Reinhard in RGB is PixelDistributionAdaptation(transform_type="standard").

    Documented difference: albumentations 2.0.8 mixes a [0, 1] result with the [0, 255]
    input for uint8 images (the output is black); its float path is correct, so compare
    against that.
    """
    fn = pytest.importorskip("albumentations.augmentations.mixing.domain_adaptation_functional")
    img, label = scene(64, 96, 8)
    ref, ref_label = scene(64, 96, 9, tint=(30, -20, 10))
    ours = create_method("reinhard", color_space="rgb", min_std=1e-6)
    ours.prepare(References([ref], [ref_label], ["r"], CLASSES))
    out = ours.apply(img, label, 0).astype(float)
    theirs = fn.adapt_pixel_distribution(
        img.astype(np.float32) / 255, ref.astype(np.float32) / 255, "standard", 1.0
    )
    assert np.abs(out - theirs * 255).max() <= 1.0
    # and the documented bug of their uint8 path
    assert fn.adapt_pixel_distribution(img, ref, "standard", 1.0).max() == 0


def test_per_reference_classwise_falls_back_to_the_other_references():
    """pooled=False: the chosen reference's class statistics where it has the class, the
    other references' pooled statistics where it does not (the class-wise AdaIN rule of
    docs/METHOD.md)."""
    with_cracks = references(sizes=((70, 90), (80, 60)), seed=20)
    no_crack, no_crack_label = scene(64, 64, 30, tint=(-20, 10, 30), crack=False)
    refs = References(
        [no_crack, *with_cracks.images],
        [no_crack_label, *with_cracks.labels],
        ["plain", "a", "b"],
        CLASSES,
    )
    img, label = scene(120, 160, 31)
    m = create_method("reinhard-cw", pooled=False)
    m.prepare(refs)
    out = lab(m.apply(img, label, 0))
    only_plain = References([no_crack], [no_crack_label], ["plain"], CLASSES)
    for c, source in ((0, only_plain), (1, only_plain), (2, with_cracks)):
        rmean, rstd = pooled_stats(source, c)
        np.testing.assert_allclose(out[label == c].mean(0), rmean, atol=0.8, err_msg=f"class {c}")
        np.testing.assert_allclose(out[label == c].std(0), rstd, atol=0.8, err_msg=f"class {c}")


def test_shared_parameters_are_inherited_from_colour_transfer():
    """Reinhard and histogram matching take ColourTransfer's parameters, defaults and
    docs (written once) and document only what is theirs; the registry sees them all."""
    import inspect

    from synth2real.methods.classwise import ColourTransfer
    from synth2real.methods.registry import describe, parse_args_doc

    shared = list(inspect.signature(ColourTransfer).parameters)
    base_docs = parse_args_doc(ColourTransfer.__doc__)
    for name, own in (("reinhard", ["color_space", "min_std"]), ("histmatch", [])):
        params = describe(name)[1]
        assert [p.name for p in params] == shared + own
        for p in params:
            if p.name in shared and p.name != "contrast":  # contrast: each says how it maps
                assert p.doc == base_docs[p.name]
    assert create_method("histmatch-cw", ring=3, min_pixels=5).params() == {
        "mode": "class", "pooled": True, "min_pixels": 5, "ring": 3,
        "thin_classes": "auto", "contrast": "match", "strength": 1.0,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="ring must be >= 1"):
        create_method("reinhard", ring=0)
    with pytest.raises(ConfigError, match="min_std must be > 0"):
        create_method("reinhard", min_std=0)
