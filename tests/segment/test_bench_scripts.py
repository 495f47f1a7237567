"""The throughput benchmarks measure the package's own maths (tiny shapes, CPU)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synth2real.segment.evaluate import evaluate
from synth2real.segment.models import create_model
from tests.segment.fixtures import make_dataset

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        f"_s2r_bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_eval_loop_scores_as_evaluate_does(tmp_path):
    bench = _load("train_throughput")
    ds = make_dataset(tmp_path / "d", n=5, size=(64, 96), seed=3)
    torch.manual_seed(0)
    model = create_model("small-unet", 3, channels=(4, 8, 16)).eval()
    # a bias that makes the random model predict all three classes somewhere
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 0.05, -0.05]))
    ev = evaluate(model, ds, device="cpu", progress=False, max_size=None)
    decoded = [ds.pair(s) for s in ds.samples]
    for batch in (1, 4):  # batching images of one size changes nothing
        got = bench.eval_loop(model, decoded, 3, 10_000, batch=batch, ignore_index=255)
        np.testing.assert_allclose(got["iou"], ev.iou, equal_nan=True)
        assert got["images_per_s"] > 0
    got = bench.eval_loop(model, decoded, 3, 10_000, inference_mode=False)
    np.testing.assert_allclose(got["iou"], ev.iou, equal_nan=True)
    # shrinking to a max_size infers smaller and scores at full size, as evaluate does
    ev32 = evaluate(model, ds, device="cpu", progress=False, max_size=32)
    got = bench.eval_loop(model, decoded, 3, 32)
    np.testing.assert_allclose(got["iou"], ev32.iou, equal_nan=True)


@pytest.mark.parametrize("bf16", [False, True])
def test_throughput_step_loop_trains(bf16):
    bench = _load("train_throughput")
    rng = np.random.default_rng(0)
    batches = [
        (rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8), rng.integers(0, 2, (2, 32, 32)))
        for _ in range(4)
    ]
    r = bench.step_loop([(i, lab.astype(np.uint8)) for i, lab in batches], bf16=bf16, warm=1)
    assert r["steps_per_s"] > 0 and r["warmup_seconds"] > 0 and r["compile_seconds"] is None


def test_gpu_train_times_a_model_and_renders_its_row():
    bench = _load("gpu_train")
    r = bench.time_model("small-unet", torch.device("cpu"), crop=32, batch=2, steps=1, warmup=1)
    assert r["steps_per_s"] > 0 and r["peak_bytes"] is None and r["parameters"] > 1e6
    md = "\n".join(bench.markdown([r, {**r, "model": "segformer", "oom": True}]))
    assert "| small-unet | 1.23M | 32 | 2 | off (fp32) |" in md and "| OOM | - |" in md


def test_throughput_report_renders_and_marks_the_default(tmp_path):
    bench = _load("train_throughput")
    row = {"steps_per_s": 2.0, "final_loss": 0.5}
    jobs = {
        path: {k: {"per_job": [r], "total_steps_per_s": r} for k in ("1x1", "1x2", "2x1")}
        for path, r in (("fp32", 4.0), ("bf16", 8.0))
    }
    ev = {
        "decode_seconds_per_image": 0.01,
        "image_sizes": ["256x512"],
        "loop: fp32, inference_mode, 1 image": {"images_per_s": 3.0, "iou_cracks": 0.2},
    }
    p = {
        "mode": "quick",
        "seed": 0,
        "iters": 4,
        "n_source": 8,
        "n_test": 2,
        "commit": "x",
        "machine_start": "CPU",
        "machine_start_info": {"load_avg": [0.1]},
        "machine_end": {"load_avg": [0.2]},
        "stem": "train_throughput_quick",
        "default_model": "small-unet-add",
        "train": {
            "small-unet, fp32, channels_last": row,
            "small-unet-add, fp32, channels_last": {**row, "steps_per_s": 3.0},
        },
        "compile": {
            "fp32, eager": {"steps_per_s": 5.0, "warmup_seconds": 1.0, "compile_seconds": None},
            "fp32, torch.compile": {"error": "no compiler"},
        },
        "data": {
            "batch_seconds": 0.01,
            "decode_seconds_per_image": 0.02,
            "model_fp32_steps_per_s": 5.0,
            "model_bf16_steps_per_s": 8.0,
            "train_prefetch_steps_per_s": 2.0,
            "train_no_prefetch_steps_per_s": 1.5,
        },
        "jobs": jobs,
        "eval": ev,
    }
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**p, "machine_start": "OLD CPU", "compile": {
        "fp32, eager": {"steps_per_s": 1.0, "warmup_seconds": 2.0, "compile_seconds": None},
        "fp32, torch.compile": {"steps_per_s": 0.5, "warmup_seconds": 300.0, "compile_seconds": 299.0},
    }}))  # fmt: skip
    p["compile_before"] = bench.previous_compile_rows(old)  # what --no-compile keeps
    assert p["compile_before"]["machine"] == "OLD CPU"
    assert bench.previous_compile_rows(tmp_path / "missing.json") is None
    md = bench.render(p)
    assert "| fp32, torch.compile | 0.50 | 300.0 | 299.0 |" in md and "on OLD CPU" in md
    assert "| x small-unet, fp32, channels_last |" in md and "failed: no compiler" in md
    assert "| small-unet-add, fp32, channels_last (default) | 3.00 | 1.50 | 0.500 |" in md
    assert "| small-unet, fp32, channels_last | 2.00 | 1.00 | 0.500 |" in md
    # on a CPU with native bf16 the default path is bf16 autocast: that row is marked
    p["train"]["small-unet-add, bf16 autocast (cpu_amp=true)"] = {**row, "steps_per_s": 4.0}
    md = bench.render({**p, "default_row": "small-unet-add, bf16 autocast (cpu_amp=true)"})
    assert "| small-unet-add, bf16 autocast (cpu_amp=true) (default) | 4.00 |" in md
    assert "| small-unet-add, fp32, channels_last | 3.00 |" in md
    assert "| fp32 | 4.00 | 4.00 | 4.00 |" in md
    assert "| small-unet-add model step fp32 (bare loop) | 200.0 |" in md


def test_throughput_batches_feed_the_step_loop(tmp_path):
    """The data-side row draws its batches through the trainer's own sampler."""
    bench = _load("train_throughput")
    ds = make_dataset(tmp_path / "d", n=4, size=(64, 96), seed=1)
    batches, sec = bench.make_batches([ds], 2)
    assert sec > 0 and len(batches) == 2
    img, lab = batches[0]
    assert img.dtype == np.uint8 and img.shape[0] == 8 and img.shape[-1] == 3
    assert lab.shape == img.shape[:3]
    k = ds.classes.num_classes
    r = bench.step_loop(batches, bf16=False, warm=1, model_name="small-unet-add", num_classes=k)
    assert r["steps_per_s"] > 0
