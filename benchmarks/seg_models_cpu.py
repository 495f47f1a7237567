#!/usr/bin/env python3
"""Which small model learns thin classes soonest on a CPU? Equal CPU time per config.

    python benchmarks/seg_models_cpu.py            # 3 seeds, 240 CPU-s per run (~2 h of CPU)
    python benchmarks/seg_models_cpu.py --quick    # 1 seed, 45 CPU-s per run (~10 min)

Candidates (the three new ones are defined here, registered for this process only; they
go into ``segment/models.py`` only if they win):

- ``small-unet``: the default before, channels (8, 16, 32, 64, 128, 128);
- ``small-unet-add``: the default now (``segment/models.py``), the same UNet with
  additive skips;
- ``small-unet-wide``: the same UNet with twice the channels (``model_kwargs``);
- ``stem-unet``: a cheap strided stem (one 3x3 conv at full resolution, 8 channels, kept
  as a skip for 1-3 px structures), then a UNet from 1/2 resolution with more channels
  at low resolution (24, 48, 96, 160, 160);
- ``res-unet``: today's layout with a light residual encoder (a 3x3 + 3x3 basic block
  with identity shortcut at every coarser level);

and, for both small UNets, cross-entropy weighted by class frequency
(``class_weighting=frequency``) as the loss choice for thin classes; for small-unet-add
also DAFormer's rare-class sampling (``rcs=true``, docs/SEGMENT.md) as the sampling
choice, alone and with the weighted loss.

Data: the cracks set (``../shared/datasets/cracks``: 300 synthetic images + the 10 real
references mixed 50/50, scored on the test images, the pilot's default budget otherwise:
batch 8, 128 px crops, 256 px shorter side) and ``thin-streets``, a multi-class scene
generator in this script (classes background, road, building, pole, wire, sign, fence,
person; poles 2-4 px wide, wires 1 px, fences a grid of 1 px bars), 96 training and 24
test images of 128 x 256.

Each run gets the same CPU time (``time.process_time`` of this process, one torch
thread): two calibration runs (3 and 9 steps) measure the model's steps per CPU-second, the run
trains that many steps (cosine schedule over them) and is scored; reported are IoU per
class, mIoU, mean thin-class IoU, steps and the CPU-minutes used. Under load the CPU time
stays fair where wall time would not. Writes docs/benchmarks/seg_models_cpu.{md,json}
(``_quick`` in quick mode).
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads

import numpy as np  # noqa: E402

OUT = REPO / "docs" / "benchmarks"
STREET_CLASSES = ("background", "road", "building", "pole", "wire", "sign", "fence", "person")
THIN = {"cracks": ("cracks",), "thin-streets": ("pole", "wire", "sign", "fence", "person")}


# -- candidate models (this process only) ----------------------------------------------------
def register_candidates() -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from synth2real.segment.models import (
        SegmentationModel,
        _conv,
        _Level,
        list_models,
        register_model,
    )

    if "stem-unet" in list_models():
        return

    class _Res(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.a, self.b = (
                _conv(cin, cout, "bn"),
                nn.Sequential(
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
                ),
            )
            self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

        def forward(self, x):
            return F.relu(self.b(self.a(x)) + self.skip(x))

    class _UNet(SegmentationModel):
        """Encoder levels (level 0 at ``1 / 2**first``), decoder with skips, a full-res head."""

        def __init__(self, num_classes, channels, *, stem: int, residual: bool):
            super().__init__(num_classes)
            self.init_kwargs = {}
            self.stem = _conv(3, stem, "bn") if stem else None
            self.stride = 2 ** (len(channels) - (0 if stem else 1))
            self.enc = nn.ModuleList()
            cin = stem or 3
            for i, c in enumerate(channels):
                one = i == 0 and not stem
                self.enc.append(
                    _Level(cin, c, "bn", 1 if one else 2) if one or not residual else _Res(cin, c)
                )
                cin = c
            self.dec = nn.ModuleList()
            for i in range(len(channels) - 2, -1, -1):
                convs = 1 if i == 0 and not stem else 2
                self.dec.append(_Level(cin + channels[i], channels[i], "bn", convs))
                cin = channels[i]
            self.fuse = _Level(cin + stem, stem, "bn", 1) if stem else None
            self.head = nn.Conv2d(stem or cin, num_classes, 1)

        def forward_normalized(self, x):
            full = self.stem(x) if self.stem is not None else None
            if full is not None:
                x = F.max_pool2d(full, 2)
            skips = []
            for i, level in enumerate(self.enc):
                if i:
                    x = F.max_pool2d(x, 2)
                x = level(x)
                skips.append(x)
            skips.pop()
            for level in self.dec:
                skip = skips.pop()
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = level(torch.cat([x, skip], 1))
            if full is not None:
                x = F.interpolate(x, size=full.shape[-2:], mode="bilinear", align_corners=False)
                x = self.fuse(torch.cat([x, full], 1))
            return self.head(x)

    @register_model("stem-unet", summary="benchmark candidate", default_lr=2e-3)
    def stem_unet(num_classes, pretrained=None):
        return _UNet(num_classes, (24, 48, 96, 160, 160), stem=8, residual=False)

    @register_model("res-unet", summary="benchmark candidate", default_lr=2e-3)
    def res_unet(num_classes, pretrained=None):
        return _UNet(num_classes, (8, 16, 32, 64, 128, 128), stem=0, residual=True)


#: the rows without "frequency" pin class_weighting=none (the default today), so that
#: their meaning survives a change of the default
CONFIGS = {
    "small-unet": {"model": "small-unet", "class_weighting": "none"},
    "small-unet-wide": {
        "model": "small-unet",
        "model_kwargs": {"channels": [16, 32, 64, 128, 256, 256]},
        "class_weighting": "none",
    },
    "stem-unet": {"model": "stem-unet", "class_weighting": "none"},
    "res-unet": {"model": "res-unet", "class_weighting": "none"},
    "small-unet + frequency-weighted ce": {"model": "small-unet", "class_weighting": "frequency"},
    "small-unet-add": {"model": "small-unet-add", "class_weighting": "none"},
    "small-unet-add + frequency-weighted ce": {
        "model": "small-unet-add",
        "class_weighting": "frequency",
    },
    "small-unet-add + rcs": {"model": "small-unet-add", "class_weighting": "none", "rcs": True},
    "small-unet-add + frequency-weighted ce + rcs": {
        "model": "small-unet-add",
        "class_weighting": "frequency",
        "rcs": True,
    },
}


# -- the thin-class scene generator ----------------------------------------------------------
def street_scene(rng: np.random.Generator, h: int = 128, w: int = 256):
    """A street-like label map with thin classes and its image (``HxWx3 uint8``)."""
    import cv2

    lab = np.zeros((h, w), np.uint8)
    horizon = int(rng.uniform(0.45, 0.6) * h)
    lab[horizon:] = 1  # road
    x = 0
    while x < w:  # buildings
        bw, top = int(rng.integers(25, 70)), int(rng.uniform(0.1, 0.4) * h)
        if rng.random() < 0.7:
            lab[top:horizon, x : x + bw] = 2
        x += bw + int(rng.integers(0, 15))
    fy = horizon - int(rng.integers(8, 16))  # a fence along the road
    fx0, fx1 = sorted(rng.integers(0, w, 2))
    if fx1 - fx0 > 30:
        lab[fy, fx0:fx1] = 6
        lab[fy + 5, fx0:fx1] = 6
        lab[fy:horizon, fx0:fx1:6] = 6
    for _ in range(int(rng.integers(1, 4))):  # poles, some carrying a sign
        px, pw = int(rng.integers(5, w - 5)), int(rng.integers(2, 5))
        ptop = int(rng.uniform(0.05, 0.3) * h)
        lab[ptop : horizon + 6, px : px + pw] = 3
        if rng.random() < 0.6:
            s = int(rng.integers(5, 9))
            lab[ptop : ptop + s, px - s // 2 + 1 : px + s // 2 + pw] = 5
    for _ in range(int(rng.integers(1, 3))):  # wires
        y0, y1 = int(rng.integers(2, h // 3)), int(rng.integers(2, h // 3))
        cv2.line(lab, (0, y0), (w - 1, y1), 4, 1)
    for _ in range(int(rng.integers(0, 4))):  # people
        cx, ph = int(rng.integers(5, w - 5)), int(rng.integers(10, 20))
        cy = horizon + int(rng.integers(0, h - horizon - 2))
        cv2.ellipse(lab, (cx, cy - ph // 2), (max(2, ph // 5), ph // 2), 0, 0, 360, 7, -1)
    colours = np.array(
        [
            [150, 180, 210],
            [80, 80, 85],
            [150, 120, 100],
            [70, 70, 60],
            [30, 30, 30],
            [200, 60, 50],
            [120, 110, 90],
            [180, 140, 120],
        ],
        np.float32,
    )
    colours *= rng.uniform(0.85, 1.15, (len(colours), 1))
    img = colours[lab] + rng.normal(0, 10, (h, w, 3))
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def write_streets(root: Path, n: int, seed: int):
    from PIL import Image

    from synth2real.data.classes import ClassSpec, save_class_spec
    from synth2real.data.readers import open_dataset

    spec = ClassSpec(
        STREET_CLASSES,
        colors=tuple(
            (37 * i % 256, 91 * i % 256, 53 * i % 256) for i in range(len(STREET_CLASSES))
        ),
    )
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, lab = street_scene(np.random.default_rng([seed, i]))
        Image.fromarray(img).save(root / "images" / f"s{i:03d}.png")
        pal = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
        p = [v for c in spec.palette() for v in c]
        pal.putpalette(p + [0] * (768 - len(p)))
        pal.save(root / "labels" / f"s{i:03d}.png")
    save_class_spec(spec, root / "classes.yaml")
    return open_dataset(root)


def datasets(name: str, tmp: Path, quick: bool):
    """``(train datasets, test dataset, budget)`` of one data set."""
    if name == "thin-streets":
        train = write_streets(tmp / "streets-train", 96, 0)
        test = write_streets(tmp / "streets-test", 24, 1)
        return [train], test, {"batch_size": 8, "crop": 128, "max_size": None}
    from train_throughput import default_cracks, open_data

    source, refs, test = open_data(default_cracks(), 300, 20 if quick else 60)
    return (
        [source, refs],
        test,
        {"batch_size": 8, "crop": 128, "max_size": 256, "real_fraction": 0.5},
    )


def one_run(train_sets, test, budget: dict, conf: dict, seed: int, cpu_s: float, tmp: Path):
    from synth2real.segment.config import make_config
    from synth2real.segment.evaluate import evaluate
    from synth2real.segment.train import train

    def cfg(iters):
        return make_config(
            {
                **budget,
                **conf,
                "iterations": iters,
                "seed": seed,
                "device": "cpu",
                "save_every": 10**6,
            }
        )

    cal = []
    train(train_sets, cfg(2), tmp / "cal", resume=False, progress=False)  # decode, warm up
    for n in (3, 9):  # the difference leaves the start-up (model, batch checks) out
        t0 = time.process_time()
        train(train_sets, cfg(n), tmp / "cal", resume=False, progress=False)
        cal.append(time.process_time() - t0)
    rate = 6 / max(cal[1] - cal[0], 0.05 * cal[1])  # steps per CPU-second
    iters = max(10, int(rate * cpu_s))
    t0, w0 = time.process_time(), time.perf_counter()
    res = train(train_sets, cfg(iters), tmp / "run", resume=False, progress=False)
    cpu = time.process_time() - t0
    ev = evaluate(res.checkpoint, test, device="cpu", progress=False)
    return {
        "iterations": iters,
        "cpu_seconds": cpu,
        "wall_seconds": time.perf_counter() - w0,
        "iou": {
            n: (None if np.isnan(v) else float(v))
            for n, v in zip(ev.class_names, ev.iou, strict=True)
        },
        "miou": float(ev.miou),
    }


def _mean(runs: list[dict], get) -> float:
    vals = [v for v in (get(r) for r in runs) if v is not None]
    return sum(vals) / len(vals) if vals else float("nan")


def render(p: dict) -> str:
    lines = [
        "# Small models on the CPU at equal CPU time: thin classes",
        "",
        f"Written by `benchmarks/seg_models_cpu.py` ({p['mode']} mode). Machine at start: "
        f"{p['machine_start']}; load avg at end "
        + "/".join(f"{x:g}" for x in p["machine_end"].get("load_avg") or [])
        + f". {p['cpu_seconds']:g} CPU-seconds per run (1 torch thread), seeds {p['seeds']}, "
        f"commit {p['commit']}." + (f" Command: `{p['command']}`." if p.get("command") else ""),
        "",
    ]
    for ds, rows in p["results"].items():
        classes = [c for c in next(iter(rows.values()))[0]["iou"] if c != "background"]
        thin = THIN[ds]
        lines += [
            f"## {ds}",
            "",
            "| config | steps | CPU min | "
            + " | ".join(classes)
            + " | thin mean | thin min..max over seeds | mIoU |",
            "|---|---|---|" + "---|" * (len(classes) + 3),
        ]
        for name, runs in rows.items():
            cells = [f"{_mean(runs, lambda r, c=c: r['iou'][c]):.3f}" for c in classes]
            per_seed = [sum(r["iou"][c] or 0 for c in thin) / len(thin) for r in runs]
            lines.append(
                f"| {name} | {_mean(runs, lambda r: r['iterations']):.0f} | "
                f"{_mean(runs, lambda r: r['cpu_seconds']) / 60:.2f} | "
                + " | ".join(cells)
                + f" | {sum(per_seed) / len(per_seed):.3f} | {min(per_seed):.3f}..{max(per_seed):.3f}"
                + f" | {_mean(runs, lambda r: r['miou']):.3f} |"
            )
        lines.append("")
    lines += [f"Means over seeds; per-seed numbers: `{p['stem']}.json`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--cpu-seconds", type=float, default=None)
    ap.add_argument("--data", default="thin-streets,cracks")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--tag", default="", help="appended to the output files' names")
    args = ap.parse_args()
    import torch
    from bench_machine import git_commit

    from synth2real.data.io import atomic_write_text
    from synth2real.pilot.machine import describe_machine, machine_info

    torch.set_num_threads(1)
    register_candidates()
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    cpu_s = args.cpu_seconds or (45.0 if args.quick else 240.0)
    p = {
        "mode": "quick" if args.quick else "full",
        "seeds": seeds,
        "cpu_seconds": cpu_s,
        "commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine_start": describe_machine(machine_info("cpu")),
        "results": {},
    }
    p["stem"] = "seg_models_cpu" + ("_quick" if args.quick else "") + args.tag
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.data.split(","):
            train_sets, test, budget = datasets(ds, Path(tmp), args.quick)
            p["results"][ds] = {}
            for name in args.configs.split(","):
                runs = []
                for seed in seeds:
                    r = one_run(
                        train_sets, test, budget, CONFIGS[name], seed, cpu_s, Path(tmp) / "r"
                    )
                    print(ds, name, seed, json.dumps(r), flush=True)
                    runs.append(r)
                p["results"][ds][name] = runs
    p["machine_end"] = machine_info("cpu")
    atomic_write_text(OUT / f"{p['stem']}.json", json.dumps(p, indent=1) + "\n")
    atomic_write_text(OUT / f"{p['stem']}.md", render(p))
    print(render(p))


if __name__ == "__main__":
    main()
