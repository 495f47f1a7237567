"""The benchmark scripts run end to end in their short modes (tiny shapes, CPU)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        f"_s2r_bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_benchmark_smoke_mode_runs_every_preset_and_the_reference(tmp_path):
    bench = _load("gpu_diffusion")
    assert (
        bench.main(["--smoke", "--images", "2", "--batch-size", "2", "--out-dir", str(tmp_path)])
        == 0
    )
    record = json.loads((tmp_path / "gpu_diffusion_smoke.json").read_text())
    rows = {r["preset"]: r for r in record["rows"]}
    assert set(rows) == set(bench.PRESETS)
    for preset, row in rows.items():
        ours = row["ours"]
        assert not ours.get("oom") and ours["seconds_per_image"] > 0 and ours["images"] == 2, preset
        # each preset with its own FreeU: the reference's form for the walk, none for StyleID
        assert ours["freeu"] == ("off" if preset == "styleid" else "reference"), preset
    for preset in ("cross-image", "cactif"):
        ref = rows[preset]["reference"]
        assert not ref.get("oom") and ref["seconds_per_image"] > 0
        assert ref["extrapolated"]  # 3 of 6 inversion steps, 2 of 3 walk steps timed
    assert all(rows[p]["reference"]["freeu"] == "reference" for p in ("cross-image", "cactif"))
    (fwd,) = record["freeu_forward"]
    assert fwd["size"] == "64x128" and all(fwd[m] > 0 for m in ("off", "diffusers", "reference"))
    assert fwd["reference_stages"] == [0, 1, 2, 3] and fwd["off_stages"] == []
    (step,) = record["filter_steps"]
    assert step["max_abs_diff"] < 1e-4  # ours equals the reference re-creation
    train = {r["model"]: r for r in record["train"]}  # the pilot's training, timed too
    assert set(train) == {"small-unet-add", "small-unet", "segformer"}
    assert all(r["steps_per_s"] > 0 and r["crop"] == 64 for r in train.values())
    md = (tmp_path / "gpu_diffusion_smoke.md").read_text()
    assert "| small-unet | 1.23M | 64 | 2 |" in md and "| small-unet-add | 1.01M | 64 | 2 |" in md
    assert "| 64x128 | cactif | reference |" in md and "Do not edit by hand" in md
    assert "| 64x128 | styleid | off |" in md and "by FreeU form" in md


def test_cpu_filter_benchmark_worker_variants_agree():
    bench = _load("filter_cpu")
    q, k, v = bench.make_inputs(heads=2, tokens=64, head_dim=8)
    ref = bench.run_reference(q, k, v, 0.25, 1.67)
    ours = bench.run_ours(q, k, v, 0.25, 1.67)
    assert ours.shape == ref.shape == (3, 2, 64, 8)
    assert float((ours - ref).abs().max()) < 1e-5


def test_thin_share_benchmark_quick_mode(cracks_root, tmp_path):
    bench = _load("thin_share_cracks")
    assert bench.main(["--quick", "--data", str(cracks_root), "--out-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "thin_share_cracks_quick.json").read_text())
    refs, syn = record["summary"]["references"], record["summary"]["synthetic"]
    assert refs["0.25"]["images"] == 10 and syn["0.25"]["images"] == 8
    # what docs/DIFFUSION.md says: at the default no image loses its cracks
    assert refs["0.25"]["min"] > 1.0 and syn["0.25"]["min"] > 1.0
    assert "Do not edit by hand" in (tmp_path / "thin_share_cracks_quick.md").read_text()


@pytest.mark.slow
def test_rows_benchmark_counts_what_the_docs_say(tmp_path):
    bench = _load("diffusion_rows")
    argv = ["--images", "8", "--references", "2", "--steps", "3", "--batch-size", "2"]
    argv += ["--tokens", "64", "--repeats", "1", "--out-dir", str(tmp_path)]
    assert bench.main(argv) == 0
    record = json.loads((tmp_path / "diffusion_rows.json").read_text())
    styleid = {r["variant"].split(" (")[0]: r["rows"] for r in record["styleid"]}
    # grouped: 4 batches of 2, two per reference, 3 steps
    # before: every batch inverts its style, (2 + 1) x 3 + 2 x 3
    assert styleid["styles inverted with every batch"] == 4 * 15
    # cached: a reference's first batch as before, its second one contents only
    assert styleid["reference cache"] == 2 * 15 + 2 * 12
    # no room for keys/values: inverted once, then a style row in every sampling step
    assert styleid["cache, no room for keys/values"] == 2 * (9 + 9) + 2 * (6 + 9)
    grouping = {(r["preset"], r["variant"][:7]): r["rows"] for r in record["grouping"]}
    # 2 denoising steps; per step out + content rows (2 + 2) plus one style row per
    # distinct reference: 1 per batch grouped, 2 in dataset order (round-robin)
    for preset in ("cross-image", "cactif"):
        assert grouping[(preset, "grouped")] == 4 * 2 * 5
        assert grouping[(preset, "dataset")] == 4 * 2 * 6
    assert record["filtered_layer"]["max_abs_diff"] == 0.0
