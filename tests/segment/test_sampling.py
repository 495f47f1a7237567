import numpy as np
import pytest

from synth2real.errors import ConfigError, DataError
from synth2real.segment.sampling import (
    SampleLoader,
    augment,
    clear_cache,
    downscale,
    mixing_weights,
)
from tests.segment.fixtures import make_dataset


def _coded(h, w):
    """An image whose pixels encode their label, to check that both move together."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
    label = np.kron(label[: h // 4, : w // 4], np.ones((4, 4), np.uint8))  # 4x4 blocks
    image = np.repeat((label * 100)[..., None], 3, axis=2).astype(np.uint8)
    return image, label


@pytest.mark.parametrize("hflip,vflip", [(True, True), (False, False)])
def test_image_and_label_get_the_same_geometry(hflip, vflip):
    image, label = _coded(64, 96)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        img, lab = augment(
            image, label, rng, crop=(48, 40), scale_range=(1.0, 1.0), hflip=hflip, vflip=vflip
        )
        assert img.shape == (48, 40, 3) and img.dtype == np.uint8
        assert lab.shape == (48, 40) and lab.dtype == np.uint8
        # at scale 1 with integer-free offsets the image is interpolated; compare block interiors
        inside = lab != 255
        decoded = np.round(img[..., 0].astype(float) / 100)
        agree = (decoded[inside] == lab[inside]).mean()
        assert agree > 0.8


def test_flip_is_exact_at_scale_one():
    image, label = _coded(32, 32)
    seen_flip = False
    for seed in range(10):
        rng = np.random.default_rng(seed)
        _, lab = augment(image, label, rng, crop=(32, 32), scale_range=(1.0, 1.0), hflip=True)
        if np.array_equal(lab, label[:, ::-1]):
            seen_flip = True
        else:
            assert np.array_equal(lab, label)
    assert seen_flip


def test_small_images_are_padded_with_ignore_index():
    image = np.full((10, 12, 3), 200, np.uint8)
    label = np.ones((10, 12), np.uint8)
    img, lab = augment(
        image,
        label,
        np.random.default_rng(0),
        crop=(32, 32),
        scale_range=(1.0, 1.0),
        ignore_index=250,
    )
    assert (lab == 250).sum() == 32 * 32 - 10 * 12
    assert (lab == 1).sum() == 10 * 12
    assert (img[lab == 250] == 0).all()


def test_scale_changes_the_object_size():
    image = np.zeros((64, 64, 3), np.uint8)
    label = np.zeros((64, 64), np.uint8)
    label[16:48, 16:48] = 1
    _, big = augment(
        image, label, np.random.default_rng(0), crop=(128, 128), scale_range=(2.0, 2.0), hflip=False
    )
    _, small = augment(
        image, label, np.random.default_rng(0), crop=(128, 128), scale_range=(0.5, 0.5), hflip=False
    )
    assert (big == 1).sum() == pytest.approx(64 * 64, rel=0.05)
    assert (small == 1).sum() == pytest.approx(16 * 16, rel=0.15)


def test_color_jitter_is_off_by_default_and_changes_colours_when_on():
    image, label = _coded(32, 32)
    image = image // 2 + 40
    a, _ = augment(
        image, label, np.random.default_rng(3), crop=(32, 32), scale_range=(1.0, 1.0), hflip=False
    )
    b, _ = augment(
        image,
        label,
        np.random.default_rng(3),
        crop=(32, 32),
        scale_range=(1.0, 1.0),
        hflip=False,
        jitter=0.4,
    )
    np.testing.assert_array_equal(a, image)
    assert not np.array_equal(a, b)


def test_mixing_weights():
    np.testing.assert_allclose(mixing_weights([90, 10], None, None), [0.9, 0.1])
    np.testing.assert_allclose(mixing_weights([90, 10], [1, 3], None), [0.25, 0.75])
    np.testing.assert_allclose(mixing_weights([60, 30, 10], None, 0.5), [1 / 3, 1 / 6, 0.5])
    with pytest.raises(ConfigError):
        mixing_weights([1, 2], [1], None)
    with pytest.raises(ConfigError):
        mixing_weights([1, 2], [0, 0], None)
    with pytest.raises(ConfigError):
        mixing_weights([1, 2], [1, 1], 0.5)


def test_downscale_caps_the_shorter_side():
    image = np.zeros((100, 300, 3), np.uint8)
    label = np.zeros((100, 300), np.uint8)
    img, lab = downscale(image, label, 50)
    assert img.shape == (50, 150, 3) and lab.shape == (50, 150)
    img2, _ = downscale(image, label, 200)
    assert img2 is image


def test_loader_caches_decoded_pairs_and_checks_sizes(tmp_path):
    clear_cache()
    ds = make_dataset(tmp_path / "d", n=2, size=(40, 48))
    loader = SampleLoader(ds, max_size=20)
    a = loader.load(0)
    b = loader.load(0)
    assert a[0] is b[0]  # second call served from RAM
    assert a[0].shape == (20, 24, 3) and a[1].shape == (20, 24)
    assert not a[0].flags.writeable
    # a label of the wrong size is reported with its file
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(ds.samples[1].label_path)
    with pytest.raises(DataError, match="label map is 10x10"):
        SampleLoader(ds, cache=False).load(1)
