import numpy as np
import pytest

from synth2real.methods import References, create_method
from synth2real.methods import functional as F
from tests.methods.scenes import CLASSES


def _smooth_image(h, w, seed, mean=128.0):
    """Mid-range image with texture at all frequencies and no clipping."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = 25 * np.sin(2 * np.pi * xx / w)[..., None] * np.array([1.0, 0.5, -0.7])
    return np.clip(mean + 12 * x + ramp, 0, 255).astype(np.uint8)


def _refs(*images):
    return References(
        list(images), [None] * len(images), [f"r{i}" for i in range(len(images))], CLASSES
    )


def literal_fda(image: np.ndarray, reference: np.ndarray, beta: float) -> np.ndarray:
    """Plain float64 FDA on a reference of the *same size*, following the paper literally.

    ``fftshift`` the full spectra, swap the centred square of half-width
    ``floor(beta * min(H, W))`` (indices ``c-b .. c+b`` inclusive around the zero
    frequency ``c = N // 2``), inverse transform, keep the real part. Slow: the oracle
    that :func:`synth2real.methods.functional.fourier_domain_adaptation` must agree with.
    """
    h, w, _ = image.shape
    if reference.shape != image.shape:
        raise ValueError("the literal FDA needs a reference of the content's size")
    b = F.fda_half_width(h, w, beta)
    s = np.fft.fftshift(np.fft.fft2(image.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    r = np.fft.fftshift(np.fft.fft2(reference.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    amp, pha = np.abs(s), np.angle(s)
    cy, cx = h // 2, w // 2
    sl = (slice(cy - b, cy + b + 1), slice(cx - b, cx + b + 1))
    amp[sl] = np.abs(r)[sl]
    out = np.fft.ifft2(np.fft.ifftshift(amp * np.exp(1j * pha), axes=(0, 1)), axes=(0, 1))
    return F.to_uint8(out.real)


def _window_mask(h, w, b):
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    return (np.abs(fy)[:, None] <= b) & (np.abs(fx)[None, :] <= b)


def test_matches_the_literal_full_fft_implementation():
    img, ref = _smooth_image(64, 96, 0), _smooth_image(64, 96, 1, mean=90)
    m = create_method("fda", beta=0.05)
    m.prepare(_refs(ref))
    ours = m.apply(img, None, 0).astype(int)
    literal = literal_fda(img, ref, 0.05).astype(int)
    assert np.abs(ours - literal).max() <= 1


@pytest.mark.parametrize("shape", [(64, 96), (63, 97)])
def test_keeps_high_frequencies_of_content_and_low_amplitude_of_reference(shape):
    h, w = shape
    img, ref = _smooth_image(h, w, 2), _smooth_image(h, w, 3, mean=100)
    beta = 0.06
    m = create_method("fda", beta=beta)
    m.prepare(_refs(ref))
    out = m.apply(img, None, 0).astype(np.float64)
    b = F.fda_half_width(h, w, beta)
    assert b >= 2
    win = _window_mask(h, w, b)
    for k in range(3):
        so, si, sr = (np.fft.fft2(a[..., k].astype(np.float64)) for a in (out, img, ref))
        # outside the window the spectrum is the content's (up to uint8 rounding noise)
        hp = np.fft.ifft2(np.where(win, 0, so - si)).real
        assert np.sqrt((hp**2).mean()) < 0.5
        # inside, the reference's amplitude with the content's phase; the budget is the
        # DFT of uint8 rounding noise (std sqrt(N / 12) per bin), with margin
        noise = 10 * np.sqrt(h * w / 12)
        expected = np.abs(sr[win]) * np.exp(1j * np.angle(si[win]))
        assert np.abs(so[win] - expected).max() < noise
        assert np.abs(si[win] - expected).max() > 50 * noise  # the window did change
    assert np.abs(out - img).mean() > 5  # it did change the image


def test_reference_of_another_size_uses_the_same_frequencies_per_image():
    """An ideally resampled reference gives the same amplitude window (cycles per image)."""
    rng = np.random.default_rng(4)
    small = rng.normal(120, 20, (31, 45, 3))  # odd sizes: zero-padding is exact
    spec = np.fft.fftshift(np.fft.fft2(small, axes=(0, 1)), axes=(0, 1))
    big_spec = np.zeros((93, 135, 3), complex)
    big_spec[31:62, 45:90] = spec
    big = (
        np.fft.ifft2(np.fft.ifftshift(big_spec, axes=(0, 1)), axes=(0, 1)).real
        * (93 * 135)
        / (31 * 45)
    )
    a_small = F.low_frequency_amplitude(small, 6)
    a_big = F.low_frequency_amplitude(big, 6)
    np.testing.assert_allclose(a_small, a_big, rtol=1e-9, atol=1e-9)
    # frequencies beyond the small image's Nyquist limit are zero
    a = F.low_frequency_amplitude(small, 20)
    assert a[:5].max() == 0 and a[20, 20, 0] > 0


def test_different_reference_sizes_and_grayscale_references_work():
    img = _smooth_image(50, 70, 5)
    gray = np.repeat(_smooth_image(200, 33, 6)[..., :1], 3, axis=2)
    m = create_method("fda", beta=0.05)
    m.prepare(_refs(gray, _smooth_image(17, 300, 7)))
    for r in (0, 1):
        out = m.apply(img, None, r)
        assert out.shape == img.shape
    mean_gray = m.apply(img, None, 0).reshape(-1, 3).mean(0)
    assert np.ptp(mean_gray) < 2.0  # the DC is swapped: the grey reference's neutral mean


def test_mean_amplitude_uses_every_reference():
    img = _smooth_image(40, 40, 8)
    m = create_method("fda", beta=0.05, amplitude="mean")
    m.prepare(_refs(_smooth_image(40, 40, 9, mean=60), _smooth_image(40, 40, 10, mean=180)))
    assert m.reference_indices(0) == [0, 1]
    np.testing.assert_array_equal(m.apply(img, None, 0), m.apply(img, None, 1))
    assert abs(m.apply(img, None, 0).mean() - 120) < 3


def test_a_non_hermitian_window_is_refused_not_silently_truncated():
    img = _smooth_image(32, 32, 11)
    amp = np.random.default_rng(0).random((5, 5, 3)) * 50  # not symmetric
    with pytest.raises(RuntimeError, match="imaginary residue"):
        F.fourier_domain_adaptation(img, amp)


def test_agrees_with_albumentations_where_their_window_agrees():
    """albumentations centres its window half a bin off and asymmetrically (offsets
    -b-1..b-2 from the zero frequency for even sizes) and takes the real part of a
    non-Hermitian spectrum. Where the reference differs from the content only at
    frequencies inside both windows, both must give the same image."""
    fn = pytest.importorskip("albumentations.augmentations.mixing.domain_adaptation_functional")
    h, w, beta = 64, 64, 0.1
    b = F.fda_half_width(h, w, beta)
    img = _smooth_image(h, w, 12)
    rng = np.random.default_rng(13)
    pert = np.zeros((h, w, 3), complex)
    m = _window_mask(h, w, b - 3)
    pert[m] = rng.normal(0, 1, (m.sum(), 3)) + 1j * rng.normal(0, 1, (m.sum(), 3))
    low = np.fft.ifft2(pert, axes=(0, 1)).real
    ref = img.astype(np.float64) + 15 * low / np.abs(low).max()
    ours = F.fourier_domain_adaptation(img, F.low_frequency_amplitude(ref, b)).astype(float)
    theirs = (
        fn.fourier_domain_adaptation(
            img.astype(np.float32) / 255, (ref / 255).astype(np.float32), beta
        )
        * 255
    )
    assert np.abs(ours - theirs).max() <= 1.0
    assert np.abs(ours - img).max() > 3
