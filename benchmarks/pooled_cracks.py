#!/usr/bin/env python3
"""Why colour transfer hurt on cracks: pooled reference statistics vs one reference per image.

The full cracks pilot (docs/RESULTS.md) found every Reinhard / histogram-matching variant
worse than the untouched synthetic images. This script measures two things on the same
data (the pilot's synthetic images shrunk to a 256 px shorter side):

1. the spread over images of each image's mean RGB colour (std over images, per channel)
   and the mean background-minus-crack grey-level contrast, for the synthetic images, the
   real references, the real test images, and each translation;
2. crack IoU of ``translated`` (the pilot's setting) for ``reinhard-cwc`` with
   ``pooled=False`` (each image takes the statistics of its own round-robin reference),
   trained with the full-mode budget of benchmarks/pilot_cracks.py for the same seeds, next to
   the pilot's own ``source-only`` and pooled ``translated [reinhard-cwc]`` rows read
   from docs/results/cracks_full.json.

Writes docs/benchmarks/pooled_cracks.md and .json.

    python benchmarks/pooled_cracks.py            # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from pilot_cracks import MODES, default_cracks  # noqa: E402

from synth2real.data.io import atomic_write_text  # noqa: E402
from synth2real.pilot.machine import describe_machine, machine_info  # noqa: E402


def colour_stats(ds, n: int = 200) -> dict:
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    means, contrast = [], []
    for i in idx:
        im, lab = ds.pair(int(i))
        means.append(im.reshape(-1, 3).mean(0))
        if lab is not None and (lab == 1).any() and (lab == 0).any():
            g = im.astype(np.float32).mean(2)
            contrast.append(float(g[lab == 0].mean() - g[lab == 1].mean()))
    return {
        "images": len(idx),
        "mean_rgb_std_over_images": [round(float(v), 2) for v in np.array(means).std(0)],
        "crack_contrast": round(float(np.mean(contrast)), 2) if contrast else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cracks", type=Path, default=default_cracks())
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    args = ap.parse_args()

    import torch

    from synth2real.data.readers import open_dataset
    from synth2real.methods import create_method
    from synth2real.pilot.runner import source_at_size
    from synth2real.segment.evaluate import evaluate
    from synth2real.segment.train import TrainConfig, train
    from synth2real.translate import load_references, translate_dataset

    torch.set_num_threads(args.threads)
    t_start = time.time()
    budget = dict(MODES["full"]["budget"])
    splits = json.loads((args.cracks / "splits.json").read_text())
    val = open_dataset(args.cracks / "validation")
    refs_ds, test = val.select(splits["references"]), val.select(splits["test"])
    pilot = json.loads((REPO / "docs/results/cracks_full.json").read_text())
    assert pilot["config"]["budget"] == budget, "the pilot's full budget changed: rerun it"
    rows = {(r["setting"], r["method"]): r for r in pilot["summary"]}
    result: dict = {"machine": machine_info("cpu"), "budget": budget, "colour": {}, "iou": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = source_at_size(open_dataset(args.cracks / splits["source"]), 256, tmp, False)
        refs = load_references(args.cracks / "validation", names=splits["references"])
        outs = {}
        for name, kw in {
            "reinhard-cwc (pooled, default)": {"method": "reinhard-cwc"},
            "reinhard-cwc pooled=False": {"method": "reinhard-cwc", "pooled": False},
            "reinhard (pooled, default)": {"method": "reinhard"},
            "fda": {"method": "fda"},
        }.items():
            kw = dict(kw)
            m = create_method(kw.pop("method"), **kw)
            outs[name] = tmp / name.replace(" ", "_").replace("(", "").replace(")", "")
            translate_dataset(source, refs, m, outs[name], workers=2, progress=False)
        result["colour"]["synthetic"] = colour_stats(source)
        result["colour"]["real references"] = colour_stats(refs_ds)
        result["colour"]["real test"] = colour_stats(test)
        for name, path in outs.items():
            result["colour"][name] = colour_stats(open_dataset(path))
        tds = open_dataset(outs["reinhard-cwc pooled=False"])
        ious = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = TrainConfig(device="cpu", seed=seed, **budget)
            res = train(tds, cfg, tmp / f"run{seed}", progress=False)
            ev = evaluate(res.checkpoint, test, device="cpu", progress=False)
            ious.append(round(ev.iou_of("cracks"), 4))
            print(f"seed {seed}: cracks IoU {ious[-1]:.3f} ({res.seconds:.0f} s)", flush=True)
        result["iou"]["translated [reinhard-cwc pooled=False]"] = ious
    for key in (("source-only", None), ("translated", "reinhard-cwc")):
        st = rows[key]["iou:cracks"]
        result["iou"][f"{key[0]}" + (f" [{key[1]}] (pilot)" if key[1] else " (pilot)")] = st
    result["seconds"] = round(time.time() - t_start, 1)
    atomic_write_text(args.out / "pooled_cracks.json", json.dumps(result, indent=2))
    atomic_write_text(args.out / "pooled_cracks.md", render(result))
    print(render(result))


def render(r: dict) -> str:
    lines = [
        "# Pooled reference statistics vs one reference per image (cracks)",
        "",
        "Written by `benchmarks/pooled_cracks.py`. Do not edit by hand. Machine: "
        f"{describe_machine(r['machine'])}; {r['seconds'] / 60:.1f} min.",
        "",
        "## Colour variety (up to 200 images per row, evenly spread; synthetic images at 256 px)",
        "",
        "| images | std over images of the mean R, G, B | background - crack grey level |",
        "|---|---|---|",
    ]
    for name, c in r["colour"].items():
        lines.append(
            f"| {name} | {', '.join(f'{v:.1f}' for v in c['mean_rgb_std_over_images'])} | "
            f"{c['crack_contrast'] if c['crack_contrast'] is not None else '–'} |"
        )
    lines += [
        "",
        "## Crack IoU on the 60 real test images (full-mode budget: "
        + ", ".join(f"{k}={v}" for k, v in r["budget"].items())
        + ")",
        "",
        "| training data | cracks IoU per seed / mean [min..max] |",
        "|---|---|",
    ]
    for name, v in r["iou"].items():
        if isinstance(v, list):
            lines.append(f"| {name} | {', '.join(f'{x:.3f}' for x in v)} (mean {np.mean(v):.3f}) |")
        else:
            lines.append(f"| {name} | {v['mean']:.3f} [{v['min']:.3f}..{v['max']:.3f}] |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
