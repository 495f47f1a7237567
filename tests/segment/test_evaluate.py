import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from synth2real.errors import ConfigError
from synth2real.segment.evaluate import evaluate
from synth2real.segment.infer import predict_mask
from synth2real.segment.models import IMAGENET_MEAN, IMAGENET_STD, SegmentationModel
from synth2real.segment.predict import predict_labels
from synth2real.segment.train import TrainConfig, train
from tests.segment.fixtures import CLASSES, PngDataset, make_dataset


class Oracle(SegmentationModel):
    """Reads the class off the image: red value ``100 * c`` means class ``c``."""

    stride = 32

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward_normalized(self, x):
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        red = ((x * std + mean) * 255)[:, :1]
        centres = torch.arange(self.num_classes).view(1, -1, 1, 1) * 100.0
        return -((red - centres) ** 2) + self.dummy


def _coded_dataset(root, sizes, ignore_rows=0):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    rng = np.random.default_rng(0)
    samples = []
    from synth2real.data.dataset import Sample

    for i, (h, w) in enumerate(sizes):
        label = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0] = label * 100
        if ignore_rows:
            label[:ignore_rows] = 255
        Image.fromarray(image).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "labels" / f"s{i}.png")
        samples.append(
            Sample(f"sub/s {i}", root / "images" / f"s{i}.png", root / "labels" / f"s{i}.png")
        )
    return PngDataset(root, samples, CLASSES)


def test_perfect_model_scores_one_at_odd_sizes(tmp_path):
    ds = _coded_dataset(tmp_path / "d", [(45, 77), (33, 100)], ignore_rows=3)
    res = evaluate(Oracle(3), ds, device="cpu", progress=False, save_dir=tmp_path / "out")
    assert res.miou == 1.0 and res.pixel_accuracy == 1.0
    np.testing.assert_array_equal(res.iou, [1, 1, 1])
    assert res.confusion.sum() == 42 * 77 + 30 * 100  # ignored rows not scored
    assert res.num_images == 2
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "sub" / "s 0.png"))
    assert mask.shape == (45, 77)
    np.testing.assert_array_equal(mask[3:], ds.label(0)[3:])
    assert Image.open(tmp_path / "out" / "overlays" / "sub" / "s 1.jpg").size == (100, 33)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["miou"] == 1.0 and scores["iou"]["crack"] == 1.0


def test_tiled_and_downscaled_inference_return_full_size_masks(tmp_path):
    ds = _coded_dataset(tmp_path / "d", [(70, 90)])
    image = ds.image(0)
    whole = predict_mask(Oracle(3), image, tile=None)
    tiled = predict_mask(Oracle(3), image, tile=32, overlap=0.3)
    np.testing.assert_array_equal(whole, ds.label(0))
    np.testing.assert_array_equal(tiled, whole)
    small = predict_mask(Oracle(3), image, max_size=35)
    assert small.shape == (70, 90)


def test_trained_checkpoint_evaluates_at_non_multiple_of_32_sizes(tmp_path):
    train_ds = make_dataset(tmp_path / "train", n=4, size=(64, 64))
    test_ds = make_dataset(tmp_path / "test", n=2, size=(37, 75), seed=3)
    cfg = TrainConfig(iterations=3, batch_size=2, crop=64, device="cpu", warmup=0, num_threads=1)
    res = train(train_ds, cfg, tmp_path / "run", progress=False)
    ev = evaluate(res.checkpoint, test_ds, device="cpu", progress=False, save_dir=tmp_path / "pred")
    assert ev.confusion.sum() == 2 * 37 * 75
    assert 0 <= ev.miou <= 1 and ev.class_names == ["background", "crack", "blob"]
    preds = predict_labels(res.checkpoint, [test_ds.image(0), test_ds.image(1)], device="cpu")
    assert [p.shape for p in preds] == [(37, 75), (37, 75)]
    assert preds[0].dtype == np.uint8
    saved = np.asarray(Image.open(tmp_path / "pred" / "masks" / "img_000.png"))
    np.testing.assert_array_equal(saved, preds[0])
    assert predict_labels(res.checkpoint, test_ds, device="cpu")[1].shape == (37, 75)
    d = ev.to_dict()
    assert set(d["iou"]) == {"background", "crack", "blob"}
    assert all(v is None or 0 <= v <= 1 for v in d["iou"].values())


def test_absent_class_reported_as_nan(tmp_path):
    ds = _coded_dataset(tmp_path / "d", [(32, 32)])
    lab = ds.label(0)
    image = ds.image(0).copy()
    image[..., 0] = np.where(lab == 2, 0, image[..., 0])
    Image.fromarray(image).save(ds.samples[0].image_path)
    Image.fromarray(np.where(lab == 2, 0, lab).astype(np.uint8)).save(ds.samples[0].label_path)
    res = evaluate(Oracle(3), ds, device="cpu", progress=False)
    assert math.isnan(res.iou[2]) and res.miou == 1.0
    assert res.to_dict()["iou"]["blob"] is None


def test_class_mismatch_and_unlabelled_are_refused(tmp_path):
    ds = _coded_dataset(tmp_path / "d", [(32, 32)])
    with pytest.raises(ConfigError, match="classes"):
        evaluate(Oracle(4), ds, device="cpu", progress=False)
    unl = ds.subset([type(s)(s.name, s.image_path, None) for s in ds.samples])
    with pytest.raises(ConfigError, match="labels"):
        evaluate(Oracle(3), unl, device="cpu", progress=False)
