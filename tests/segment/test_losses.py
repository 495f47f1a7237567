import numpy as np
import pytest
import torch

from synth2real.segment.losses import (
    class_weights_from_frequencies,
    segmentation_loss,
    soft_dice_loss,
)


def _logits_for(target: torch.Tensor, k: int, margin: float = 20.0) -> torch.Tensor:
    t = target.clamp(max=k - 1)
    return torch.nn.functional.one_hot(t, k).permute(0, 3, 1, 2).float() * margin


def test_dice_is_near_zero_for_a_confident_right_answer_and_large_when_wrong():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 3, :] = 1  # a thin class
    right = soft_dice_loss(_logits_for(target, 3), target, 255)
    wrong = soft_dice_loss(_logits_for(torch.zeros_like(target), 3), target, 255)
    assert right < 1e-3
    # class 1 entirely missed: its Dice is ~0, so the mean over the 2 present classes ~0.5
    assert wrong > 0.4


def test_dice_weighs_a_thin_class_like_a_large_one_where_ce_does_not():
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[0, 10, :] = 1  # 3 % of the pixels
    miss = _logits_for(torch.zeros_like(target), 2, margin=3.0)
    ce = segmentation_loss(miss, target, ignore_index=255, loss="ce")
    dice = segmentation_loss(miss, target, ignore_index=255, loss="dice")
    assert ce < 0.2  # CE barely notices the missed thin class
    assert dice > 0.45


def test_ignored_pixels_do_not_change_the_loss():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 6, 6, generator=rng)
    target = torch.randint(0, 3, (1, 6, 6), generator=rng)
    masked = target.clone()
    masked[0, :2] = 255
    logits2 = logits.clone()
    logits2[0, :, :2] = torch.randn(3, 2, 6, generator=rng) * 10  # garbage where ignored
    for kind in ("ce", "dice", "ce+dice"):
        a = segmentation_loss(logits, masked, ignore_index=255, loss=kind)
        b = segmentation_loss(logits2, masked, ignore_index=255, loss=kind)
        assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_all_ignored_gives_zero_with_a_gradient_path():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    loss = segmentation_loss(logits, target, ignore_index=255)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_class_weights_median_frequency_clipped():
    w = class_weights_from_frequencies(np.array([0.97, 0.03, 0.0]), max_weight=10)
    assert w.dtype == np.float32
    assert w[0] == pytest.approx(0.5 / 0.97)
    assert w[1] == 10.0  # 0.5/0.03 = 16.7, clipped
    assert w[2] == 1.0  # absent class
    np.testing.assert_allclose(class_weights_from_frequencies(np.array([1, 1, 1])), [1, 1, 1])


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="loss"):
        segmentation_loss(
            torch.zeros(1, 2, 2, 2),
            torch.zeros(1, 2, 2, dtype=torch.long),
            ignore_index=255,
            loss="focal",
        )
