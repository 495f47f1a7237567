"""Segmentation on CPU: small-unet training speed and a short learning curve on cracks.

Measures, on the cracks dataset (Supervisely format; ``$S2R_CRACKS``, by default
``../shared/datasets/cracks`` beside the checkout):
1. training speed of small-unet (iterations/s at batch 8), cold (images decoded on first
   use) and warm (served from the RAM cache), at two working resolutions: `full` (crop
   256 of the images as they are) and `half` (crop 128 of images shrunk to a 256 px
   shorter side; about 4x the iterations for the same time);
2. crack IoU on the 60 `test` images (always scored at full resolution) after training on
   the 10 `references` (real-only) and on the synthetic `source` (source-only), for each
   resolution at similar compute, for a few budgets and seeds.

Writes docs/benchmarks/segment_cpu.md and docs/benchmarks/segment_cpu.json (with the
machine, load average, torch version and threads). These numbers inform the pilot's
budget; they are not the pilot itself.

    python benchmarks/segment_cpu.py --quick          # ~12 min on 2 quiet cores
    python benchmarks/segment_cpu.py                  # budgets 300 and 1000, 3 seeds
    python benchmarks/segment_cpu.py --device cuda    # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def default_cracks() -> Path:
    """$S2R_CRACKS, else ../shared/datasets/cracks next to the repo (or next to a worktree's
    parent)."""
    if os.environ.get("S2R_CRACKS"):
        return Path(os.environ["S2R_CRACKS"])
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "datasets" / "cracks" / "splits.json").is_file():
            return base / "shared" / "datasets" / "cracks"
    return REPO.parent / "shared" / "datasets" / "cracks"


def machine() -> dict:
    import torch

    from synth2real.pilot.machine import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
    }


def rerender(out: Path) -> None:
    """Rewrite segment_cpu.md from segment_cpu.json (after a change of the table layout)."""
    from synth2real.data.io import atomic_write_text

    atomic_write_text(
        out / "segment_cpu.md", render(json.loads((out / "segment_cpu.json").read_text()))
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cracks", type=Path, default=default_cracks())
    ap.add_argument(
        "--quick", action="store_true", help="one seed, budget 300 (x4 at half resolution)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budgets", default=None, help="comma list of iterations (overrides the mode)")
    ap.add_argument("--seeds", default=None, help="comma list of seeds (overrides the mode)")
    ap.add_argument("--speed-iterations", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument(
        "--omp-passive",
        action="store_true",
        help="set OMP_WAIT_POLICY=PASSIVE (much faster when other jobs share the cores)",
    )
    args = ap.parse_args()
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read by libgomp when torch loads
    if not (args.cracks / "splits.json").is_file():
        sys.exit(f"cracks dataset not found at {args.cracks} (--cracks PATH)")

    import torch

    from synth2real.data.readers import open_dataset
    from synth2real.segment.evaluate import evaluate
    from synth2real.segment.train import TrainConfig, train

    torch.set_num_threads(args.threads)
    splits = json.loads((args.cracks / "splits.json").read_text())
    source = open_dataset(args.cracks / splits["source"])
    validation = open_dataset(args.cracks / "validation")
    refs = validation.select(splits["references"])
    test = validation.select(splits["test"])
    budgets = [int(b) for b in (args.budgets or ("300" if args.quick else "300,1000")).split(",")]
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    speed_its = args.speed_iterations or (20 if args.quick else 50)
    info = {
        "machine": machine(),
        "device": args.device,
        "threads": args.threads,
        "mode": "quick" if args.quick else "full",
    }
    base = dict(batch_size=8, device=args.device, num_threads=args.threads)
    # two working resolutions at similar compute per run: full size with 256 crops, and
    # images shrunk to a 256 px shorter side with 128 crops for 4x the iterations
    resolutions = {
        "full": {"max_size": 1024, "crop": 256, "factor": 1},
        "half": {"max_size": 256, "crop": 128, "factor": 4},
    }
    results: dict = {"speed": [], "curve": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. speed: the same draws twice; the second run finds every image in RAM
        for res_name, r in resolutions.items():
            for label in ("cold", "warm"):
                cfg = TrainConfig(
                    iterations=speed_its, warmup=0, max_size=r["max_size"], crop=r["crop"], **base
                )
                res = train(source, cfg, tmp / f"speed-{res_name}-{label}", progress=False)
                row = {
                    "resolution": res_name, "images": label, "crop": r["crop"],
                    "max_size": r["max_size"], "iterations": speed_its,
                    "seconds": res.seconds, "it_per_s": speed_its / res.seconds,
                }  # fmt: skip
                results["speed"].append(row)
                print(json.dumps(row), flush=True)
        # 2. learning curve
        for setting, data in (("real-only", refs), ("source-only", source)):
            for res_name, r in resolutions.items():
                for budget in budgets:
                    for seed in seeds:
                        its = budget * r["factor"]
                        cfg = TrainConfig(
                            iterations=its,
                            seed=seed,
                            max_size=r["max_size"],
                            crop=r["crop"],
                            **base,
                        )
                        out = tmp / f"{setting}-{res_name}-{its}-{seed}"
                        res = train(data, cfg, out, progress=False)
                        ev = evaluate(res.checkpoint, test, device=args.device, progress=False)
                        row = {
                            "setting": setting, "resolution": res_name, "crop": r["crop"],
                            "max_size": r["max_size"], "iterations": its, "seed": seed,
                            "train_seconds": res.seconds, "eval_seconds": ev.seconds,
                            "iou_cracks": ev.iou_of("cracks"),
                            "iou_background": ev.iou_of("background"), "miou": ev.miou,
                            "final_loss": sum(res.losses[-20:]) / len(res.losses[-20:]),
                        }  # fmt: skip
                        results["curve"].append(row)
                        print(json.dumps(row), flush=True)
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["config"] = TrainConfig(**base).to_dict()
    payload = {**info, **results}
    args.out.mkdir(parents=True, exist_ok=True)
    from synth2real.data.io import atomic_write_text

    atomic_write_text(args.out / "segment_cpu.json", json.dumps(payload, indent=1) + "\n")
    atomic_write_text(args.out / "segment_cpu.md", render(payload))
    print(f"wrote {args.out / 'segment_cpu.md'}")


def render(p: dict) -> str:
    import numpy as np

    m = p["machine"]
    lines = [
        "# small-unet on CPU: speed and a short learning curve (cracks)",
        "",
        f"Written by `benchmarks/segment_cpu.py` ({p['mode']} mode). Machine: {m['cpu']}, "
        f"{m['cores']} cores, torch {m['torch']}, {p['threads']} threads (OMP_WAIT_POLICY "
        f"{m['omp_wait_policy']}), device {p['device']}. Load average at start "
        f"{m['loadavg_start'][0]:.1f}, at end {m['loadavg_end'][0]:.1f} (other jobs shared "
        "the cores: timings are slower and noisier than on a quiet machine).",
        "",
        f"Batch {p['config']['batch_size']}, loss {p['config']['loss']}, lr "
        f"{p['config']['lr'] or 'model default'}, {p['config']['schedule']} schedule. "
        "Two working resolutions at similar compute: `full` (images as they are, 256 crops) "
        "and `half` (shorter side shrunk to 256 px, 128 crops, 4x the iterations; see the "
        "train seconds for the real cost). Scores are always computed at the test images' "
        "full resolution.",
        "",
        "## Speed (small-unet, synthetic source images)",
        "",
        "| resolution | crop | images | iterations/s |",
        "|---|---|---|---|",
    ]
    for s in p["speed"]:
        what = "decoded on first use" if s["images"] == "cold" else "from the RAM cache"
        lines.append(f"| {s['resolution']} | {s['crop']} | {what} | {s['it_per_s']:.2f} |")
    lines += [
        "",
        "## Crack IoU on the 60 test images",
        "",
        "| setting | resolution | iterations | seeds | IoU cracks mean | min..max | mIoU mean "
        "| train s / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in p["curve"]:
        groups.setdefault((r["setting"], r["resolution"], r["iterations"]), []).append(r)
    for (setting, res, its), rows in groups.items():
        c = np.array([r["iou_cracks"] for r in rows])
        mi = np.array([r["miou"] for r in rows])
        t = np.mean([r["train_seconds"] for r in rows])
        lines.append(
            f"| {setting} | {res} | {its} | {len(rows)} | {c.mean():.3f} "
            f"| {c.min():.3f}..{c.max():.3f} | {mi.mean():.3f} | {t:.0f} |"
        )
    lines += ["", "Raw numbers: `segment_cpu.json`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
