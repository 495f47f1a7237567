"""Train and evaluate through the real Supervisely reader on two cracks images."""

import json

import numpy as np

from synth2real.data.readers import open_dataset
from synth2real.segment.evaluate import evaluate
from synth2real.segment.train import TrainConfig, train


def test_train_and_evaluate_on_cracks_images(cracks_root, tmp_path):
    splits = json.loads((cracks_root / "splits.json").read_text())
    validation = open_dataset(cracks_root / "validation")
    refs = validation.select(splits["references"][:2])
    test = validation.select(splits["test"][:1])
    cfg = TrainConfig(
        iterations=2, batch_size=2, crop=64, device="cpu", num_threads=1, max_size=128
    )
    res = train(refs, cfg, tmp_path / "run", progress=False)
    ev = evaluate(res.checkpoint, test, device="cpu", progress=False)
    h, w = test.image(0).shape[:2]
    assert ev.class_names == ["background", "cracks"]
    assert ev.confusion.sum() == h * w  # scored at full size although trained at max_size 128
    assert np.isfinite(ev.iou).any()
