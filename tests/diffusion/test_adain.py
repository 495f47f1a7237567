"""Latent AdaIN: global and class-wise, label maps at latent size, erosion, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synth2real.diffusion.adain import (
    TargetStats,
    adain,
    channel_stats,
    class_masks,
    class_stats,
    classwise_adain,
    erode_slots,
    label_slots,
    labels_to_latent,
)
from synth2real.diffusion.bank import ReferenceBank
from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.quirks import NO_QUIRKS, ReferenceQuirks
from synth2real.errors import ConfigError
from tests.diffusion.helpers import adain_to
from tests.diffusion.tiny import tiny_scheduler


def stats_of(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std of ``x (C, h, w)`` over ``mask (h, w)``."""
    px = x[:, mask]
    return px.mean(1), px.std(1, correction=0)


def test_global_adain_matches_target_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 12, generator=g) * 3 + 1
    s = torch.randn(2, 4, 8, 12, generator=g) * 0.5 - 2
    y = adain_to(x, s)
    ym, ys = channel_stats(y)
    sm, ss = channel_stats(s)
    torch.testing.assert_close(ym, sm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ys, ss, atol=1e-5, rtol=1e-5)
    # the reference's sigma offset: (x - m) / (1 + s) * (1 + s') + m'
    xm, xs = channel_stats(x)
    y1 = adain(x, sm, ss, sigma_offset=1.0)
    torch.testing.assert_close(y1, (x - xm) / (1 + xs) * (1 + ss) + sm)


def test_label_slots_and_majority_downsampling():
    lab = np.array([[0, 0, 1, 1], [0, 7, 1, 255], [2, 2, 255, 255], [2, 0, 255, 1]], np.uint8)
    slots = label_slots(lab, 3, 255)
    assert slots[1, 1] == 3 and slots[1, 3] == 3  # out-of-range and ignore -> "no class"
    lat = labels_to_latent(lab, (4, 4), (2, 2), 3, 255)
    np.testing.assert_array_equal(lat, [[0, 1], [2, 3]])
    # any label size is first resized (nearest) to the working size
    big = np.kron(lab, np.ones((3, 5), np.uint8))  # 12 x 20
    np.testing.assert_array_equal(labels_to_latent(big, (4, 4), (2, 2), 3, 255), lat)
    with pytest.raises(ConfigError):
        labels_to_latent(lab, (4, 6), (2, 2), 3, 255)


def test_thin_classes_can_survive_at_latent_size():
    lab = np.zeros((32, 32), np.uint8)
    lab[24:, :] = 2
    lab[:, 10:12] = 1  # a 2-pixel crack: a quarter of each block it crosses
    maj = labels_to_latent(lab, (32, 32), (4, 4), 3, 255)
    assert 1 not in maj  # the majority loses the crack
    thin = labels_to_latent(lab, (32, 32), (4, 4), 3, 255, thin_share=0.25)
    np.testing.assert_array_equal(thin[:, 1], [1, 1, 1, 1])  # the crack's column of blocks
    np.testing.assert_array_equal(np.delete(thin, 1, axis=1), np.delete(maj, 1, axis=1))
    with pytest.raises(ConfigError):
        labels_to_latent(lab, (32, 32), (4, 4), 3, 255, thin_share=1.5)


def test_labels_to_latent_on_odd_sizes_and_many_classes():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 30, (70, 210)).astype(np.uint8)
    lat = labels_to_latent(lab, (64, 192), (8, 24), 30, 255)
    assert lat.shape == (8, 24) and lat.min() >= 0 and lat.max() <= 30


def _erode_reference(slots: np.ndarray, iterations: int) -> np.ndarray:
    """Plain per-class cross erosion with the image border counting as inside."""
    keep = np.ones_like(slots, bool)
    for _ in range(iterations):
        new = keep.copy()
        h, w = slots.shape
        for y in range(h):
            for x in range(w):
                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                    if slots[yy, xx] != slots[y, x] or not keep[yy, xx]:
                        new[y, x] = False
        keep = new
    return keep


@pytest.mark.parametrize("iterations", [0, 1, 2])
def test_erosion_matches_a_plain_implementation(iterations):
    rng = np.random.default_rng(iterations)
    slots = np.kron(rng.integers(0, 3, (4, 5)), np.ones((3, 3), np.int64))
    got = erode_slots(torch.from_numpy(slots)[None], iterations)[0].numpy()
    np.testing.assert_array_equal(got, _erode_reference(slots, iterations))


def _targets(mean, std, source, gm=None, gs=None) -> TargetStats:
    b, _, c = mean.shape
    return TargetStats(
        mean=mean,
        std=std,
        source=source,
        global_mean=gm if gm is not None else torch.zeros(b, c),
        global_std=gs if gs is not None else torch.ones(b, c),
    )


@pytest.mark.parametrize("erosion", [0, 1])
def test_classwise_adain_gives_each_class_the_target_statistics(erosion):
    g = torch.Generator().manual_seed(1)
    k = 4
    slots = torch.from_numpy(np.kron(np.array([[0, 1, 2], [3, 1, 4]]), np.ones((4, 4), np.int64)))[
        None
    ]
    x = torch.randn(1, 4, 8, 12, generator=g) * 2 + 0.5
    masks = class_masks(slots, k, erosion)
    tm = torch.randn(1, k + 1, 4, generator=g)
    ts = torch.rand(1, k + 1, 4, generator=g) + 0.2
    source = torch.zeros(1, k + 1, dtype=torch.int8)
    source[0, k] = 2
    gm, gs = torch.randn(1, 4, generator=g), torch.rand(1, 4, generator=g) + 0.5
    y = classwise_adain(x, masks, _targets(tm, ts, source, gm, gs))
    stat_px = masks.weights[0].reshape(k + 1, 8, 12) > 0  # the pixels statistics use
    for c in range(k):
        m, s = stats_of(y[0], stat_px[c])
        torch.testing.assert_close(m, tm[0, c], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(s, ts[0, c], atol=1e-5, rtol=1e-5)
    # every pixel of the class is transformed, eroded or not: same affine map per class
    cls1 = slots[0] == 1
    a = (y[0][:, cls1] - tm[0, 1][:, None]) / ts[0, 1][:, None]
    xm, xs = stats_of(x[0], stat_px[1])
    torch.testing.assert_close(a, (x[0][:, cls1] - xm[:, None]) / xs[:, None], atol=1e-5, rtol=1e-5)
    # "no class" pixels get global AdaIN: the image's global stats to the reference's
    nc = slots[0] == k
    xgm, xgs = channel_stats(x)
    want = (x[0][:, nc] - xgm[0, :, 0]) / xgs[0, :, 0] * gs[0][:, None] + gm[0][:, None]
    torch.testing.assert_close(y[0][:, nc], want, atol=1e-5, rtol=1e-5)


def test_classwise_adain_with_thirty_classes_and_batch():
    g = torch.Generator().manual_seed(2)
    k = 30
    slots = torch.randint(0, k + 1, (2, 6, 10), generator=g)
    x = torch.randn(2, 4, 6, 10, generator=g)
    masks = class_masks(slots, k, 0)
    tm = torch.randn(2, k + 1, 4, generator=g)
    ts = torch.rand(2, k + 1, 4, generator=g) + 0.5
    y = classwise_adain(x, masks, _targets(tm, ts, torch.zeros(2, k + 1, dtype=torch.int8)))
    for b in range(2):
        for c in range(k):
            sel = slots[b] == c
            if int(sel.sum()) < 2:
                continue
            m, s = stats_of(y[b], sel)
            torch.testing.assert_close(m, tm[b, c], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(s, ts[b, c], atol=1e-4, rtol=1e-4)


def test_reference_quirks_leave_eroded_missing_and_high_classes_untouched():
    g = torch.Generator().manual_seed(3)
    k = 21
    grid = np.kron(np.array([[0, 1], [2, 20]]), np.ones((5, 5), np.int64))
    slots = torch.from_numpy(grid)[None]
    x = torch.randn(1, 4, 10, 10, generator=g)
    masks = class_masks(slots, k, 1)
    tm = torch.randn(1, k + 1, 4, generator=g)
    ts = torch.rand(1, k + 1, 4, generator=g) + 0.5
    source = torch.zeros(1, k + 1, dtype=torch.int8)
    source[0, 2] = 1  # class 2 comes from other references: the reference leaves it alone
    quirks = ReferenceQuirks.from_params(reference_quirks=True)
    assert quirks.sigma_offset == 1.0 and quirks.classwise_loop
    y = classwise_adain(x, masks, _targets(tm, ts, source), quirks=quirks)
    kept = masks.kept[0]
    for c, touched in ((0, True), (1, True), (2, False), (20, False)):  # 20 >= 19 classes
        sel = slots[0] == c
        inner, rim = sel & kept, sel & ~kept
        assert torch.equal(y[0][:, rim], x[0][:, rim])  # eroded pixels: untouched
        assert torch.equal(y[0][:, inner], x[0][:, inner]) != touched
    # the transformed pixels use (x - m) / (1 + s) * (1 + s') + m'
    sel = (slots[0] == 0) & kept
    xm, xs = stats_of(x[0], sel)
    want = (x[0][:, sel] - xm[:, None]) / (1 + xs[:, None]) * (1 + ts[0, 0][:, None]) + tm[0, 0][
        :, None
    ]
    torch.testing.assert_close(y[0][:, sel], want, atol=1e-5, rtol=1e-5)


def _bank(latents, slots, k, quirks=NO_QUIRKS, erosion=0):
    sch = Schedule.from_scheduler(tiny_scheduler(), 10)
    return ReferenceBank(
        latents,
        slots,
        sch,
        8,
        list(range(len(slots))),
        num_classes=k,
        erosion=erosion,
        quirks=quirks,
    )


def test_missing_class_uses_statistics_pooled_over_the_other_references():
    g = torch.Generator().manual_seed(4)
    k = 3
    lat = torch.randn(3, 4, 6, 8, generator=g) * torch.tensor([1.0, 2.0, 0.5])[:, None, None, None]
    s0 = torch.zeros(6, 8, dtype=torch.long)
    s0[:, 4:] = 1  # ref 0: classes 0 and 1, no class 2
    s1 = torch.zeros(6, 8, dtype=torch.long)
    s1[3:, :] = 2  # ref 1: classes 0 and 2
    s2 = torch.full((6, 8), 2, dtype=torch.long)
    s2[:, :2] = 1  # ref 2: classes 1 and 2
    bank = _bank(lat, [s0, s1, s2], k)
    assert bank.source[0].tolist() == [0, 0, 1, 2]  # own, own, pooled, no class -> global
    for level in (0, bank.xs.shape[1] - 1):
        px = torch.cat([bank.xs[1, level][:, s1 == 2], bank.xs[2, level][:, s2 == 2]], dim=1)
        t = bank.targets(torch.tensor([0]), level)
        torch.testing.assert_close(t.mean[0, 2], px.mean(1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t.std[0, 2], px.std(1, correction=0), atol=1e-5, rtol=1e-5)
        # its own classes: its own statistics
        m, s = stats_of(bank.xs[0, level], s0 == 1)
        torch.testing.assert_close(t.mean[0, 1], m, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t.std[0, 1], s, atol=1e-5, rtol=1e-5)


def test_class_no_reference_has_falls_back_to_global_statistics():
    k = 4
    lat = torch.randn(2, 4, 6, 6)
    slots = [torch.zeros(6, 6, dtype=torch.long), torch.ones(6, 6, dtype=torch.long)]
    bank = _bank(lat, slots, k)
    assert bank.source[0].tolist() == [0, 1, 2, 2, 2]
    t = bank.targets(torch.tensor([0]), 1)
    torch.testing.assert_close(t.mean[0, 3], bank.global_mean[0, 1])
    torch.testing.assert_close(t.std[0, 3], bank.global_std[0, 1])
    # with the reference's quirks nothing is pooled
    quirks = ReferenceQuirks(classwise_loop=True)
    assert _bank(lat, slots, k, quirks=quirks).source[0].tolist() == [0, 2, 2, 2, 2]


def test_class_stats_counts_and_empty_classes():
    slots = torch.tensor([[[0, 0], [2, 2]]])
    masks = class_masks(slots, 3, 0)
    mean, var, count = class_stats(torch.arange(8.0).reshape(1, 2, 2, 2), masks)
    assert count[0].tolist() == [2, 0, 2, 0]
    assert masks.present[0].tolist() == [True, False, True, False]
    torch.testing.assert_close(mean[0, 0], torch.tensor([0.5, 4.5]))
    torch.testing.assert_close(var[0, 2], torch.tensor([0.25, 0.25]))


# -- statistics of small classes (default mode) --------------------------------------------
def _small_block(h: int = 8, w: int = 12, size: int = 3):
    """A ``size x size`` block of class 1 in a background of class 0: erosion (3x3 cross)
    leaves ``(size - 2)^2`` of its pixels (one for a 3x3 block)."""
    slots = torch.zeros(1, h, w, dtype=torch.long)
    slots[0, 2 : 2 + size, 3 : 3 + size] = 1
    return slots


def test_a_class_that_erosion_leaves_one_pixel_is_not_blown_up():
    """Before: the eroded 3x3 block kept 1 pixel, its std was 0 (floored at 1e-5), and its
    other 8 pixels were scaled by ~1e5 every class-wise step."""
    g = torch.Generator().manual_seed(7)
    slots = _small_block()
    masks = class_masks(slots, 2, erosion=1)
    assert int(masks.kept[0][slots[0] == 1].sum()) == 1  # one interior pixel survives
    x = torch.randn(1, 4, 8, 12, generator=g)
    tm, ts = torch.zeros(1, 3, 4), torch.ones(1, 3, 4)
    y = classwise_adain(x, masks, _targets(tm, ts, torch.zeros(1, 3, dtype=torch.int8)))
    cls = slots[0] == 1
    # statistics over the whole 3x3 block: no pixel lies more than sqrt(8) stds away
    assert float(y[0][:, cls].abs().max()) <= 8**0.5 + 1e-4
    m, s = stats_of(y[0], cls)
    torch.testing.assert_close(m, tm[0, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(s, ts[0, 1], atol=1e-5, rtol=0)


def test_large_classes_keep_their_eroded_statistics_and_the_gain_stays_bounded():
    g = torch.Generator().manual_seed(8)
    slots = _small_block(12, 12, size=8)  # erosion keeps 36 of 64 pixels: its interior
    masks = class_masks(slots, 2, erosion=1)
    assert masks.from_eroded[0].tolist() == [True, True, False]
    inner = (slots[0] == 1) & masks.kept[0]
    x = torch.randn(1, 4, 12, 12, generator=g)
    x[0][:, inner] = 0.5 + 1e-7 * x[0][:, inner]  # a near-constant interior, a noisy rim
    tm, ts = torch.zeros(1, 3, 4), torch.ones(1, 3, 4)
    y = classwise_adain(x, masks, _targets(tm, ts, torch.zeros(1, 3, dtype=torch.int8)))
    m, _ = stats_of(y[0], inner)
    torch.testing.assert_close(m, tm[0, 1], atol=1e-4, rtol=0)  # the interior's mean
    # the source std is floored at 1 % of the image's: at most ~100x its spread
    _, g_std = channel_stats(x)
    bound = (x[0] - 0.5).abs().amax((1, 2)) / (0.01 * g_std[0, :, 0, 0])
    assert bool((y[0][:, slots[0] == 1].abs().amax(1) <= bound * 1.001 + 1e-3).all())
    # the reference's quirks keep its behaviour: the interior's own tiny std
    quirks = ReferenceQuirks.for_walk(True)
    qm = class_masks(slots, 2, erosion=1, quirks=quirks)
    yq = classwise_adain(
        x, qm, _targets(tm, ts, torch.zeros(1, 3, dtype=torch.int8)), quirks=quirks
    )
    assert torch.equal(yq[0][:, ~qm.kept[0]], x[0][:, ~qm.kept[0]])  # rim untouched there


# -- the reference's statistics and erosion ------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_border_erosion_is_scipys_binary_erosion_per_class(seed):
    from scipy.ndimage import binary_erosion

    rng = np.random.default_rng(seed)
    slots = np.kron(rng.integers(0, 4, (3, 5)), np.ones((3, 3), np.int64))[:, 1:]  # on borders
    got = erode_slots(torch.from_numpy(slots)[None], 1, border_erodes=True)[0].numpy()
    want = np.zeros_like(got)
    for c in range(4):
        want |= binary_erosion(slots == c)  # the reference's call: defaults, border_value=0
    np.testing.assert_array_equal(got, want)
    assert not got[0].any() and not got[:, -1].any()  # the border erodes
    assert erode_slots(torch.from_numpy(slots)[None], 1)[0].numpy()[0].any()  # ours: not


def test_reference_statistics_are_sqrt_of_var_plus_1e_5():
    x = torch.randn(2, 4, 5, 7, generator=torch.Generator().manual_seed(3)) * 0.01
    quirks = ReferenceQuirks(reference_statistics=True)
    mean, std = channel_stats(x, quirks)
    torch.testing.assert_close(std[..., 0, 0], (x.var(dim=(2, 3)) + 1e-5).sqrt())  # unbiased
    torch.testing.assert_close(mean[..., 0, 0], x.mean(dim=(2, 3)))
    _, plain = channel_stats(x)
    torch.testing.assert_close(plain[..., 0, 0], x.std(dim=(2, 3), correction=0))
    masks = class_masks(torch.zeros(2, 5, 7, dtype=torch.long), 1, 0)
    _, var, _ = class_stats(x, masks)  # class-wise: the population variance + 1e-5
    torch.testing.assert_close(
        quirks.std(var, 1e-5)[:, 0], (x.var(dim=(2, 3), correction=0) + 1e-5).sqrt()
    )


def test_the_reference_label_path_loses_thin_classes_of_colour_labels():
    from synth2real.diffusion.quirks import reference_labels_to_latent

    label = np.zeros((128, 256), np.uint8)
    label[:, :100] = 2
    label[:, 184:186] = 1  # a two-pixel crack, off the pixels nearest neighbour picks
    colors = [(128, 64, 128), (153, 153, 153), (70, 70, 70)]
    colour = reference_labels_to_latent(label, (128, 256), (16, 32), 3, colors=colors)
    index = reference_labels_to_latent(label, (128, 256), (16, 32), 3)
    ours = labels_to_latent(label, (128, 256), (16, 32), 3, thin_share=0.25)
    assert (ours == 1).sum() == 16 and (index == 1).sum() == 0  # nearest: other pixels
    assert (colour == 1).sum() == 0  # the crack blends into off-palette colours ...
    assert (colour[:, 21:25] == 3).all()  # ... and so does the road around it: no class
    assert (colour[:, :10] == 2).all() and (colour[:, 28:] == 0).all()  # far from edges
    assert np.array_equal(index[:, :12] == 2, np.ones((16, 12), bool))
