"""Self-training building blocks (mean teacher, ClassMix, DACS augmentation) and RCS."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from synth2real.errors import ConfigError
from synth2real.segment.losses import segmentation_loss
from synth2real.segment.photometric import (
    StrongParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_strong,
    blur_kernel_size,
    draw_strong_params,
    gaussian_blur,
    gaussian_kernel1d,
    hsv_to_rgb,
    jitter_factors,
    rgb_to_hsv,
    strong_augment,
)
from synth2real.segment.rcs import (
    RareClassSampler,
    RCSConfig,
    class_pixel_counts,
    class_probabilities,
    crop_with_class,
    image_pools,
)
from synth2real.segment.sampling import augment
from synth2real.segment.selftrain import (
    SelfTrainConfig,
    choose_classes,
    classmix,
    classmix_masks,
    confidence_weight,
    ema_alpha,
    ema_update,
    make_teacher,
    pseudo_labels,
    step_generator,
)

IGN = 255


def mixed_loss(logits, target, pixel_weight, **kw):
    """The ClassMix loss as train() computes it: the supervised loss with pixel weights."""
    return segmentation_loss(logits, target, pixel_weight=pixel_weight, **kw)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def _fill(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


# -- config ----------------------------------------------------------------------------------
def test_config_defaults_are_the_documented_ones():
    cfg = SelfTrainConfig()
    assert cfg.st_ema_alpha == 0.99 and cfg.st_pseudo_threshold == 0.968
    assert cfg.st_jitter_p == 0.8 and cfg.st_jitter_strength == 0.2
    assert cfg.st_blur_p == 0.5 and cfg.st_blur_sigma == (0.15, 1.15)
    assert cfg.st_mix_share == 0.5 and cfg.st_mix_weight == 1.0
    assert cfg.st_weight_scope == "image" and cfg.st_blur_kernel_frac == 0.1
    r = RCSConfig()
    assert (r.rcs, r.rcs_temperature, r.rcs_min_pixels) == (False, 0.01, 3000)
    assert (r.rcs_min_crop_ratio, r.rcs_crop_retries) == (0.5, 10)
    assert SelfTrainConfig(**cfg.to_dict()) == cfg
    assert all(k.startswith("st_") for k in cfg.to_dict())
    assert all(k.startswith("rcs") for k in r.to_dict())


@pytest.mark.parametrize(
    "kw",
    [
        {"st_ema_alpha": 1.0},
        {"st_pseudo_threshold": 0.0},
        {"st_weight_scope": "pixel"},
        {"st_mix_share": 0.0},
        {"st_jitter_p": 1.5},
        {"st_jitter_strength": 0.6},
        {"st_blur_sigma": (1.0, 0.5)},
    ],
)
def test_config_rejects_bad_values_naming_the_field(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        SelfTrainConfig(**kw)


def test_rcs_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="rcs_temperature"):
        RCSConfig(rcs_temperature=0)
    with pytest.raises(ConfigError, match="rcs_min_crop_ratio"):
        RCSConfig(rcs_min_crop_ratio=2)


# -- mean teacher ----------------------------------------------------------------------------
def test_ema_alpha_is_the_true_mean_then_capped():
    assert ema_alpha(1, 0.99) == 0.5
    assert ema_alpha(2, 0.99) == pytest.approx(2 / 3)
    assert ema_alpha(98, 0.99) == pytest.approx(98 / 99)
    assert ema_alpha(99, 0.99) == 0.99  # 1 - 1/100 == 0.99
    assert ema_alpha(5000, 0.99) == 0.99
    with pytest.raises(ValueError):
        ema_alpha(0, 0.99)


def test_ema_moves_towards_a_fixed_student_at_the_documented_rate():
    student, teacher = _net(), _net()
    _fill(student, 1.0)
    _fill(teacher, 0.0)
    alpha, k = 0.9, 15
    for step in range(1, k + 1):
        ema_update(teacher, student, alpha, step)
    # closed form with a fixed student s = 1, teacher t0 = 0: t_k = 1 - prod_t a_t
    prod = math.prod(min(1 - 1 / (t + 1), alpha) for t in range(1, k + 1))
    for p in teacher.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1 - prod), rtol=0, atol=1e-6)
    # a plain alpha (no warm-up) would give 1 - 0.9**15 = 0.79, far from 1 - prod = 0.937
    assert abs((1 - prod) - (1 - alpha**k)) > 0.1


def test_ema_warm_up_is_the_mean_of_all_students_so_far():
    teacher = _net()
    student = _net()
    t0 = [p.detach().clone() for p in teacher.parameters()]
    history = [t0]
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 8):
        with torch.no_grad():
            for p in student.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        history.append([p.detach().clone() for p in student.parameters()])
        ema_update(teacher, student, 0.99, step)
    for i, p in enumerate(teacher.parameters()):
        mean = torch.stack([h[i] for h in history]).mean(0)
        torch.testing.assert_close(p, mean, rtol=1e-5, atol=1e-6)


def test_ema_averages_batchnorm_statistics_and_copies_the_counter():
    student = _net()
    teacher = make_teacher(student)
    bn_s, bn_t = student[1], teacher[1]
    with torch.no_grad():
        bn_s.running_mean.fill_(2.0)
        bn_s.running_var.fill_(5.0)
        bn_s.num_batches_tracked.fill_(7)
    for step in range(1, 4):
        ema_update(teacher, student, 0.5, step)  # alpha_t = 0.5 at every step
    # running mean: 0 -> 1 -> 1.5 -> 1.75; var: 1 -> 3 -> 4 -> 4.5
    torch.testing.assert_close(bn_t.running_mean, torch.full((4,), 1.75))
    torch.testing.assert_close(bn_t.running_var, torch.full((4,), 4.5))
    assert int(bn_t.num_batches_tracked) == 7


def test_teacher_is_frozen_in_eval_mode_and_stays_so():
    student = _net().train()
    teacher = make_teacher(student)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    teacher.train()
    ema_update(teacher, student, 0.99, 1)
    assert not teacher.training
    assert student.training and all(p.requires_grad for p in student.parameters())


def test_ema_rejects_models_of_different_shape():
    other = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="names"):
        ema_update(other, _net(), 0.99, 1)


# -- pseudo-labels and weights ---------------------------------------------------------------
def test_pseudo_labels_and_confidence_weight_on_crafted_logits():
    # 2 classes, one image of 2x3 pixels; logit gap d gives confidence sigmoid(d)
    gaps = torch.tensor(
        [[5.0, -5.0, 0.0], [3.0, 4.0, -3.5]]
    )  # sigmoid: .993 .993 .5 .953 .982 .971
    logits = torch.stack([gaps, torch.zeros_like(gaps)]).unsqueeze(0)  # 1x2x2x3
    labels, conf = pseudo_labels(logits)
    assert labels.tolist() == [[[0, 1, 0], [0, 0, 1]]]  # a tie goes to the first class
    torch.testing.assert_close(conf, torch.sigmoid(gaps.abs()).unsqueeze(0))
    # confident (>= 0.968): 5, -5, 4, -3.5 -> 4 of 6
    w = confidence_weight(conf, 0.968)
    torch.testing.assert_close(w, torch.tensor([4 / 6]))
    # padding pixels are left out of both counts: drop the 0.993 and the 0.5 -> 3 of 4
    valid = torch.tensor([[[False, True, False], [True, True, True]]])
    torch.testing.assert_close(confidence_weight(conf, 0.968, valid), torch.tensor([0.75]))


def test_confidence_weight_per_image_and_per_batch():
    conf = torch.tensor([[[0.99, 0.99], [0.99, 0.99]], [[0.99, 0.1], [0.1, 0.1]]])
    torch.testing.assert_close(confidence_weight(conf, 0.968), torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(
        confidence_weight(conf, 0.968, scope="batch"), torch.tensor([0.625, 0.625])
    )
    empty = torch.zeros_like(conf, dtype=torch.bool)
    assert confidence_weight(conf, 0.968, empty).tolist() == [0.0, 0.0]


# -- ClassMix --------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_classmix_keeps_exactly_the_chosen_classes_half_rounded_up(n):
    label = torch.arange(n).repeat_interleave(4).view(1, 1, -1).expand(1, 3, -1).clone()
    label[0, 0, 0] = IGN  # ignore is never a candidate
    for seed in range(10):
        chosen = choose_classes(label[0], torch.Generator().manual_seed(seed), IGN)
        assert len(chosen) == (n + n % 2) // 2 == math.ceil(n / 2)
        assert len(set(chosen.tolist())) == len(chosen) and IGN not in chosen.tolist()
        mask = classmix_masks(label, torch.Generator().manual_seed(seed), IGN)
        assert mask.shape == label.shape and mask.dtype == torch.bool
        assert torch.equal(mask[0], torch.isin(label[0], chosen))
        assert not mask[0, 0, 0]  # the ignore pixel is not pasted


def test_classmix_draws_every_subset_and_only_from_the_image_itself():
    label = torch.tensor([[[0, 1, 2, 3]], [[5, 5, 6, 6]]])
    seen = set()
    for seed in range(200):
        m = classmix_masks(label, torch.Generator().manual_seed(seed), IGN)
        seen.add(tuple(label[0][m[0]].tolist()))
        assert m[1].sum() == 2  # image 1 has 2 classes: exactly one of them, 2 pixels
    assert len(seen) == 6  # C(4, 2) pairs, all drawn
    assert classmix_masks(torch.full((1, 2, 2), IGN), torch.Generator(), IGN).sum() == 0


def test_mixed_image_label_and_weight_composition():
    b, h, w = 2, 3, 4
    src = torch.ones(b, 3, h, w)
    tgt = torch.zeros(b, 3, h, w)
    src_lbl = torch.full((b, h, w), 2)
    src_lbl[:, 0] = IGN
    pseudo = torch.ones(b, h, w, dtype=torch.long)
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[:, 1:, :2] = True
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[:, :, -1] = False
    m = classmix(src, src_lbl, tgt, pseudo, torch.tensor([0.25, 0.75]), mask, valid, IGN)
    assert torch.equal(m.image, mask.unsqueeze(1).expand(b, 3, h, w).float())
    expect = torch.where(mask, 2, torch.where(valid, 1, IGN))
    assert torch.equal(m.label, expect)
    w_expect = torch.where(mask, 1.0, torch.tensor([0.25, 0.75]).view(2, 1, 1).expand(b, h, w))
    assert torch.equal(m.weight, w_expect)


# -- weighted loss ---------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["ce+dice", "ce", "dice"])
@pytest.mark.parametrize("weighted_classes", [False, True])
def test_mixed_loss_with_unit_weights_is_the_supervised_loss(loss, weighted_classes):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[0, :2] = IGN
    cw = torch.tensor([0.5, 2.0, 4.0]) if weighted_classes else None
    ref = segmentation_loss(logits, target, ignore_index=IGN, loss=loss, class_weights=cw)
    got = mixed_loss(
        logits, target, torch.ones(2, 8, 8), ignore_index=IGN, loss=loss, class_weights=cw
    )
    torch.testing.assert_close(got, ref)


def test_mixed_loss_scales_with_a_uniform_weight_and_drops_unweighted_pixels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 16, 16, generator=g, requires_grad=True)
    target = torch.randint(0, 2, (1, 16, 16), generator=g)
    one = mixed_loss(logits, target, torch.ones(1, 16, 16), ignore_index=IGN, loss="ce")
    q = mixed_loss(logits, target, torch.full((1, 16, 16), 0.3), ignore_index=IGN, loss="ce")
    torch.testing.assert_close(q, 0.3 * one)
    one_d = mixed_loss(logits, target, torch.ones(1, 16, 16), ignore_index=IGN, loss="dice")
    q_d = mixed_loss(logits, target, torch.full((1, 16, 16), 0.3), ignore_index=IGN, loss="dice")
    torch.testing.assert_close(q_d, 0.3 * one_d, rtol=0.02, atol=0)  # up to Dice smoothing
    zero = mixed_loss(logits, target, torch.zeros(1, 16, 16), ignore_index=IGN)
    assert float(zero.detach()) == 0.0
    zero.backward()  # still a graph
    # pixels of weight 0 do not matter: changing their logits leaves the loss unchanged
    w = torch.ones(1, 16, 16)
    w[:, :8] = 0
    a = mixed_loss(logits, target, w, ignore_index=IGN)
    other = logits.detach().clone()
    other[:, :, :8] = 10 * torch.randn(1, 2, 8, 16, generator=g)
    torch.testing.assert_close(mixed_loss(other, target, w, ignore_index=IGN), a.detach())


# -- strong augmentation ---------------------------------------------------------------------
def _image(b=2, h=32, w=40, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_blur_kernel_size_matches_the_dacs_formula():
    for n in range(1, 1200):
        official = int(np.floor(np.ceil(0.1 * n) - 0.5 + np.ceil(0.1 * n) % 2))
        assert blur_kernel_size(n) == official, n
    assert blur_kernel_size(256) == 25 and blur_kernel_size(512) == 51


def test_gaussian_kernel_is_normalised_symmetric_and_has_its_sigma():
    k = gaussian_kernel1d(25, 1.0)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(k, k.flip(0))
    x = torch.arange(25.0) - 12
    assert float((k * x**2).sum()) == pytest.approx(1.0, rel=1e-4)  # variance = sigma^2


def test_blur_preserves_the_mean_reduces_the_variance_and_is_separable():
    x = _image(h=64, w=64)
    y = gaussian_blur(x, torch.tensor([1.15, 0.5]), (7, 7))
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean((2, 3)), x.mean((2, 3)), rtol=0, atol=2e-3)
    assert bool((y.var((2, 3)) < 0.6 * x.var((2, 3))).all())
    # constant images stay constant (the kernel sums to 1, reflect padding)
    c = torch.full((1, 3, 16, 16), 0.4)
    torch.testing.assert_close(gaussian_blur(c, 1.0, (7, 7)), c)
    # separable == the full 2-D kernel
    k = gaussian_kernel1d(7, 1.15)
    full = F.conv2d(
        F.pad(x[:1], (3, 3, 3, 3), mode="reflect"),
        torch.outer(k, k).expand(3, 1, 7, 7),
        groups=3,
    )
    torch.testing.assert_close(y[:1], full, rtol=1e-5, atol=1e-5)


def test_colour_ops_do_what_their_names_say():
    x = _image(b=1)
    torch.testing.assert_close(
        rgb_to_hsv(hsv_to_rgb(rgb_to_hsv(x))), rgb_to_hsv(x), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(
        adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    )
    torch.testing.assert_close(
        adjust_hue(red, -1 / 3), torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    )
    gray = adjust_saturation(x, 0.0)
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(adjust_saturation(x, 1.0), x)
    flat = adjust_contrast(x, 0.0)  # the mean grey level (ITU-R 601 luma) everywhere
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean()
    torch.testing.assert_close(flat, torch.full_like(x, float(luma)))
    torch.testing.assert_close(adjust_brightness(x, 0.5), x * 0.5)
    assert float(adjust_brightness(x, 3.0).max()) <= 1.0


def test_jitter_factor_ranges():
    s = 0.2
    lo = jitter_factors(torch.zeros(4, dtype=torch.float64), s)
    hi = jitter_factors(torch.ones(4, dtype=torch.float64), s)
    torch.testing.assert_close(lo, torch.tensor([0.8, 0.8, 0.8, -0.2], dtype=torch.float64))
    torch.testing.assert_close(hi, torch.tensor([1.2, 1.2, 1.2, 0.2], dtype=torch.float64))
    mid = jitter_factors(torch.full((4,), 0.5, dtype=torch.float64), s)
    torch.testing.assert_close(mid, torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))


def _params(factors, order, jitter=True, blur=False, sigma=1.0):
    return StrongParams(
        torch.tensor([jitter]),
        torch.tensor([factors], dtype=torch.float64),
        torch.tensor([order]),
        torch.tensor([blur]),
        torch.tensor([sigma], dtype=torch.float64),
    )


def test_apply_strong_uses_each_factor_for_its_op_in_the_drawn_order():
    x = _image(b=1)
    f = (1.6, 0.5, 0.3, 0.25)
    got = apply_strong(x, _params(f, (0, 1, 2, 3)))
    want = adjust_hue(adjust_saturation(adjust_contrast(adjust_brightness(x, 1.6), 0.5), 0.3), 0.25)
    torch.testing.assert_close(got, want)
    got = apply_strong(x, _params(f, (2, 3, 1, 0)))
    want = adjust_brightness(adjust_contrast(adjust_hue(adjust_saturation(x, 0.3), 0.25), 0.5), 1.6)
    torch.testing.assert_close(got, want)
    assert torch.equal(apply_strong(x, _params(f, (0, 1, 2, 3), jitter=False)), x)
    blurred = apply_strong(x, _params(f, (0, 1, 2, 3), jitter=False, blur=True, sigma=0.8))
    torch.testing.assert_close(blurred, gaussian_blur(x, 0.8, (3, 3)))  # 32x40: kernel 3x3


def test_drawn_params_follow_the_probabilities_and_ranges():
    cfg = SelfTrainConfig(st_jitter_p=0.8, st_blur_p=0.5)
    p = draw_strong_params(4000, step_generator(0, 0), cfg)
    assert float(p.jitter.double().mean()) == pytest.approx(0.8, abs=0.03)
    assert float(p.blur.double().mean()) == pytest.approx(0.5, abs=0.03)
    assert float(p.sigma.min()) >= 0.15 and float(p.sigma.max()) <= 1.15
    assert float(p.factors[:, :3].min()) >= 0.8 and float(p.factors[:, :3].max()) <= 1.2
    assert float(p.factors[:, 3].min()) < -0.19 and float(p.factors[:, 3].max()) > 0.19
    assert torch.equal(p.order.sort(dim=1).values, torch.arange(4).expand(4000, 4))
    assert len({tuple(o) for o in p.order.tolist()}) == 24  # every order occurs


def test_jitter_and_blur_off_is_identity():
    x = _image()
    off = SelfTrainConfig(st_jitter_strength=0.0, st_blur_p=0.0)
    assert torch.equal(strong_augment(x, torch.Generator().manual_seed(0), off), x)
    never = SelfTrainConfig(st_jitter_p=0.0, st_blur_p=0.0)
    assert torch.equal(strong_augment(x, torch.Generator().manual_seed(0), never), x)


def test_strong_augment_changes_colours_stays_in_range_and_is_reproducible():
    x = _image(b=6)
    cfg = SelfTrainConfig(st_jitter_p=1.0, st_blur_p=1.0)
    a = strong_augment(x, step_generator(3, 17), cfg)
    b = strong_augment(x, step_generator(3, 17), cfg)
    c = strong_augment(x, step_generator(3, 18), cfg)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert bool(((a - x).abs().mean((1, 2, 3)) > 1e-3).all())  # every image changed
    assert float(a.var()) < float(x.var())  # blurred


def test_blur_only_keeps_the_colour_means():
    x = _image(b=3, h=64, w=64)
    cfg = SelfTrainConfig(st_jitter_p=0.0, st_blur_p=1.0)
    y = strong_augment(x, step_generator(0, 0), cfg)
    torch.testing.assert_close(y.mean((2, 3)), x.mean((2, 3)), rtol=0, atol=3e-3)
    assert bool((y.var((2, 3)) < x.var((2, 3))).all())


def test_step_generator_depends_only_on_seed_and_step():
    a = torch.rand(5, generator=step_generator(0, 10))
    assert torch.equal(a, torch.rand(5, generator=step_generator(0, 10)))
    assert not torch.equal(a, torch.rand(5, generator=step_generator(0, 11)))
    assert not torch.equal(a, torch.rand(5, generator=step_generator(1, 10)))
    assert not torch.equal(a, torch.rand(5, generator=step_generator(0, 10, stream=1)))


# -- rare-class sampling ---------------------------------------------------------------------
# 6 images, 3 classes: background everywhere, class 1 in images 0-2, class 2 (rarest) in 4-5
COUNTS = np.array(
    [
        [9000, 700, 0],
        [9000, 800, 0],
        [9000, 500, 0],
        [9500, 0, 0],
        [9500, 0, 350],
        [9700, 0, 10],
    ]
)


def test_class_pixel_counts_skip_ignore():
    label = np.array([[0, 0, 1], [2, IGN, 2]], np.uint8)
    assert class_pixel_counts(label, 3, IGN).tolist() == [2, 1, 2]
    assert class_pixel_counts(label, 3, 1).tolist() == [2, 0, 2]


def test_rcs_probabilities_match_the_formula():
    for t in (0.01, 0.1, 1.0):
        f = COUNTS.sum(0) / COUNTS.sum()
        e = np.exp((1 - f) / t)
        np.testing.assert_allclose(class_probabilities(COUNTS, t), e / e.sum(), rtol=1e-12)
    p = class_probabilities(COUNTS, 0.01)
    assert p[2] > p[1] > p[0]
    absent = np.concatenate([COUNTS, np.zeros((6, 1), int)], axis=1)
    q = class_probabilities(absent, 0.1)
    assert q[3] == 0 and q.sum() == pytest.approx(1)
    with pytest.raises(ConfigError):
        class_probabilities(np.zeros((2, 2)), 0.1)


def test_rcs_pools_use_min_pixels_with_a_fallback():
    pools = image_pools(COUNTS, 600)
    assert pools[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert pools[1].tolist() == [0, 1]  # 500 <= 600 is out
    assert pools[2].tolist() == [4, 5]  # nobody holds > 600: every image that has any


def test_rcs_draws_rare_classes_more_and_never_an_image_without_the_class():
    cfg = RCSConfig(rcs_temperature=0.1, rcs_min_pixels=300)
    sampler = RareClassSampler(COUNTS, cfg)
    rng = np.random.default_rng(0)
    n = 4000
    draws = [sampler.draw(rng) for _ in range(n)]
    classes = np.array([c for c, _ in draws])
    freq = np.bincount(classes, minlength=3) / n
    sd = np.sqrt(sampler.probs * (1 - sampler.probs) / n)
    assert bool((np.abs(freq - sampler.probs) < 4 * sd + 1e-9).all())
    assert freq[2] > freq[1] > freq[0]
    for c, i in draws:
        assert COUNTS[i, c] > 0
        if c == 1:
            assert i in (0, 1, 2)
        if c == 2:
            assert i == 4  # image 5 holds class 2 but only 10 px (<= 300)
    # same seed, same draws
    again = RareClassSampler(COUNTS, cfg)
    rng2 = np.random.default_rng(0)
    assert [again.draw(rng2) for _ in range(n)] == draws


def test_rcs_warns_when_only_two_classes_are_present():
    two = np.array([[900, 100], [1000, 0], [950, 50]])
    with pytest.warns(RuntimeWarning, match=r"two classes draws class 1 for 100\.0% of"):
        RareClassSampler(two, RCSConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RareClassSampler(COUNTS, RCSConfig())  # three classes: no warning


def test_rcs_crop_loop_keeps_the_class_or_gives_up_after_the_retries():
    image = np.zeros((64, 64, 3), np.uint8)
    label = np.zeros((64, 64), np.uint8)
    label[:32, :32] = 1  # a quarter of the image: a random 24 px crop holds > 20 px half the time
    cfg = RCSConfig(rcs_min_pixels=40, rcs_min_crop_ratio=0.5)
    counts = class_pixel_counts(label, 2, IGN)[None]
    with pytest.warns(RuntimeWarning, match="two classes"):
        sampler = RareClassSampler(counts, cfg)
    thr = sampler.crop_threshold(1, 0)
    assert thr == 20
    kept, retried = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        (img, lab), drawn = crop_with_class(
            lambda rng=rng: augment(image, label, rng, crop=(24, 24), scale_range=(1, 1)),
            1,
            thr,
            cfg.rcs_crop_retries,
        )
        assert 1 <= drawn <= cfg.rcs_crop_retries + 1
        retried += drawn > 1
        if (lab == 1).sum() > thr:
            kept += 1
        else:
            assert drawn == cfg.rcs_crop_retries + 1  # gave up only after every retry
    assert kept >= 19 and retried >= 3  # one crop alone would keep ~half
    # the loop never stops early on a crop without enough of the class
    calls = []

    def empty_crop():
        calls.append(1)
        return image[:4, :4], label[40:44, 40:44]

    _, drawn = crop_with_class(empty_crop, 1, 5, 10)
    assert drawn == len(calls) == 11
    _, drawn = crop_with_class(empty_crop, 1, 0, 10)
    assert drawn == 1  # threshold 0: no check (DAFormer's min_crop_ratio == 0)


# -- the pieces together: one step of the recipe, resumed ------------------------------------
def _step(student, teacher, opt, it, seed=0, cfg=SelfTrainConfig()):
    """One self-training step as the design note of selftrain.py describes it."""
    rng = np.random.default_rng([seed, it])
    x_s = torch.from_numpy(rng.random((2, 3, 16, 16), dtype=np.float32))
    y_s = torch.from_numpy(rng.integers(0, 2, (2, 16, 16)))
    x_t = torch.from_numpy(np.random.default_rng([seed, it, 1]).random((2, 3, 16, 16)))
    x_t = x_t.float()
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    valid[:, :, -3:] = False  # padding of the unlabelled crop
    loss_sup = segmentation_loss(student(x_s), y_s, ignore_index=IGN)
    with torch.no_grad():
        pseudo, conf = pseudo_labels(teacher(x_t))
    w = confidence_weight(conf, 0.6, valid)  # a low threshold: the toy teacher is unsure
    g = step_generator(seed, it)
    masks = classmix_masks(y_s, g, IGN)
    mixed = classmix(x_s, y_s, x_t, pseudo, w, masks, valid, IGN)
    x_m = strong_augment(mixed.image, g, cfg)
    loss = loss_sup + cfg.st_mix_weight * mixed_loss(
        student(x_m), mixed.label, mixed.weight, ignore_index=IGN
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
    ema_update(teacher, student, cfg.st_ema_alpha, it + 1)
    return float(loss.detach())


def _fresh():
    student = _net().train()
    return student, make_teacher(student), torch.optim.AdamW(student.parameters(), lr=1e-2)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does():
    torch.manual_seed(0)
    student, teacher, opt = _fresh()
    straight = [_step(student, teacher, opt, it) for it in range(6)]

    student2, teacher2, opt2 = _fresh()
    first = [_step(student2, teacher2, opt2, it) for it in range(3)]
    saved = (
        copy.deepcopy(student2.state_dict()),
        copy.deepcopy(teacher2.state_dict()),
        copy.deepcopy(opt2.state_dict()),
    )
    student3, teacher3, opt3 = _fresh()
    _fill(student3, 0.0)
    _fill(teacher3, 0.0)  # whatever they held: the checkpoint restores them
    student3.load_state_dict(saved[0])
    teacher3.load_state_dict(saved[1])
    opt3.load_state_dict(saved[2])
    rest = [_step(student3, teacher3, opt3, it) for it in range(3, 6)]

    assert first + rest == straight
    for a, b in zip(teacher.state_dict().values(), teacher3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(student.state_dict().values(), student3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the teacher is not the student: it lags behind
    assert not torch.equal(teacher[0].weight, student[0].weight)


def test_a_resume_without_the_teacher_would_differ():
    student, teacher, opt = _fresh()
    straight = [_step(student, teacher, opt, it) for it in range(6)]
    student2, teacher2, opt2 = _fresh()
    for it in range(3):
        _step(student2, teacher2, opt2, it)
    teacher2 = make_teacher(student2)  # teacher lost: restarted from the student
    rest = [_step(student2, teacher2, opt2, it) for it in range(3, 6)]
    assert rest != straight[3:]
