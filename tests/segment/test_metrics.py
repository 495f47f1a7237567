import math

import numpy as np
import pytest

from synth2real.segment.metrics import (
    confusion_matrix,
    iou_from_confusion,
    mean_iou,
    pixel_accuracy,
)


def test_confusion_matrix_by_hand():
    target = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [0, 2, 2]], np.uint8)
    cm = confusion_matrix(pred, target, 3, 255)
    # rows = target, cols = prediction; the 255 pixel is not counted
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    iou = iou_from_confusion(cm)
    # class 0: tp 1, fp 1 (target 1 -> pred 0), fn 1 -> 1/3 ; class 1: 1/3 ; class 2: 1/1
    np.testing.assert_allclose(iou, [1 / 3, 1 / 3, 1.0])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert pixel_accuracy(cm) == pytest.approx(3 / 5)


def test_ignore_index_pixels_do_not_count_even_when_predicted():
    target = np.full((4, 4), 255, np.uint8)
    target[0, 0] = 1
    pred = np.ones((4, 4), np.uint8)
    cm = confusion_matrix(pred, target, 2, 255)
    assert cm.sum() == 1
    assert iou_from_confusion(cm)[1] == 1.0


def test_absent_class_is_nan_and_excluded_from_the_mean():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 0])
    cm = confusion_matrix(pred, target, 3, 255)
    iou = iou_from_confusion(cm)
    assert math.isnan(iou[2])  # class 2 in neither target nor prediction
    assert mean_iou(cm) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_class_only_in_prediction_scores_zero_and_counts():
    target = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 0, 2])
    cm = confusion_matrix(pred, target, 3, 255)
    iou = iou_from_confusion(cm)
    assert iou[2] == 0.0
    assert math.isnan(iou[1])
    assert mean_iou(cm) == pytest.approx((3 / 4 + 0) / 2)


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, size=(17, 23)).astype(np.uint8)
    target[0] = 255
    pred = np.where(target == 255, 0, target)
    cm = confusion_matrix(pred, target, 4, 255)
    np.testing.assert_array_equal(iou_from_confusion(cm), np.ones(4))
    assert mean_iou(cm) == 1.0
    assert pixel_accuracy(cm) == 1.0


def test_out_of_range_targets_are_skipped_and_bad_predictions_rejected():
    target = np.array([0, 1, 7])
    cm = confusion_matrix(np.array([0, 1, 1]), target, 2, 255)
    assert cm.sum() == 2
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 5, 1]), target, 2, 255)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3), np.zeros(4), 2)


def test_empty_scores_are_nan():
    cm = np.zeros((2, 2), np.int64)
    assert math.isnan(mean_iou(cm))
    assert math.isnan(pixel_accuracy(cm))
    assert np.isnan(iou_from_confusion(cm)).all()


def test_confusion_accumulates_like_one_big_image():
    rng = np.random.default_rng(1)
    t1, t2 = rng.integers(0, 3, (5, 5)), rng.integers(0, 3, (6, 4))
    p1, p2 = rng.integers(0, 3, (5, 5)), rng.integers(0, 3, (6, 4))
    total = confusion_matrix(p1, t1, 3) + confusion_matrix(p2, t2, 3)
    joint = confusion_matrix(
        np.concatenate([p1.ravel(), p2.ravel()]), np.concatenate([t1.ravel(), t2.ravel()]), 3
    )
    np.testing.assert_array_equal(total, joint)
