"""Segmentation on CPU: small-unet training speed and a short learning curve on cracks.

Measures, on ../shared/datasets/cracks (Supervisely format):
1. training speed of small-unet (iterations/s at batch 8, crop 256), cold (images decoded
   on first use) and warm (served from the RAM cache);
2. crack IoU on the 60 `test` images after training on the 10 `references` (real-only)
   and on the synthetic `source` (source-only) for a few budgets and seeds.

Writes docs/benchmarks/segment_cpu.md and docs/benchmarks/segment_cpu.json (with the
machine, load average, torch version and threads). These numbers inform the pilot's
budget; they are not the pilot itself.

    python benchmarks/segment_cpu.py --quick          # ~6 min on 2 quiet cores
    python benchmarks/segment_cpu.py                  # budgets 300/1000/3000, 3 seeds
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
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cracks", type=Path, default=default_cracks())
    ap.add_argument("--quick", action="store_true", help="one seed, budgets 100 and 300")
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
    budgets = [
        int(b) for b in (args.budgets or ("100,300" if args.quick else "100,300,1000")).split(",")
    ]
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    speed_its = args.speed_iterations or (20 if args.quick else 50)
    info = {
        "machine": machine(),
        "device": args.device,
        "threads": args.threads,
        "mode": "quick" if args.quick else "full",
    }
    base = dict(batch_size=8, crop=256, device=args.device, num_threads=args.threads)
    results: dict = {"speed": {}, "curve": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. speed: the same draws twice; the second run finds every image in RAM
        for label in ("cold", "warm"):
            cfg = TrainConfig(iterations=speed_its, warmup=0, **base)
            res = train(source, cfg, tmp / f"speed-{label}", progress=False)
            results["speed"][label] = {
                "iterations": speed_its,
                "seconds": res.seconds,
                "it_per_s": speed_its / res.seconds,
            }
            print(f"speed {label}: {speed_its / res.seconds:.2f} it/s", flush=True)
        # 2. learning curve
        for setting, data in (("real-only", refs), ("source-only", source)):
            # quick mode: source-only at the largest budget only
            for budget in budgets if setting == "real-only" or not args.quick else budgets[-1:]:
                for seed in seeds:
                    cfg = TrainConfig(iterations=budget, seed=seed, **base)
                    res = train(data, cfg, tmp / f"{setting}-{budget}-{seed}", progress=False)
                    ev = evaluate(res.checkpoint, test, device=args.device, progress=False)
                    row = {
                        "setting": setting, "iterations": budget, "seed": seed,
                        "train_seconds": res.seconds, "eval_seconds": ev.seconds,
                        "iou_cracks": ev.iou_of("cracks"), "iou_background": ev.iou_of("background"),
                        "miou": ev.miou, "final_loss": sum(res.losses[-20:]) / len(res.losses[-20:]),
                    }  # fmt: skip
                    results["curve"].append(row)
                    print(json.dumps(row), flush=True)
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["config"] = {k: v for k, v in TrainConfig(**base).to_dict().items()}
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
        "Written by `benchmarks/segment_cpu.py` "
        f"({p['mode']} mode). Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{p['threads']} threads (OMP_WAIT_POLICY {m['omp_wait_policy']}), device {p['device']}. "
        "Load average at start "
        f"{m['loadavg_start'][0]:.1f}, at end {m['loadavg_end'][0]:.1f} "
        "(a shared machine makes every timing here slower and noisier than a quiet one).",
        "",
        f"Budget: batch {p['config']['batch_size']}, crop {p['config']['crop']}, "
        f"max_size {p['config']['max_size']}, loss {p['config']['loss']}, "
        f"lr {p['config']['lr'] or 'model default'}, schedule {p['config']['schedule']}.",
        "",
        "## Speed",
        "",
        "| images | iterations/s | iterations |",
        "|---|---|---|",
    ]
    for label, s in p["speed"].items():
        what = "decoded on first use" if label == "cold" else "from the RAM cache"
        lines.append(f"| {what} | {s['it_per_s']:.2f} | {s['iterations']} |")
    lines += [
        "",
        "## Crack IoU on the 60 test images",
        "",
        "| setting | iterations | seeds | IoU cracks mean | min..max | mIoU mean | train s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in p["curve"]:
        groups.setdefault((r["setting"], r["iterations"]), []).append(r)
    for (setting, its), rows in groups.items():
        c = np.array([r["iou_cracks"] for r in rows])
        mi = np.array([r["miou"] for r in rows])
        t = np.mean([r["train_seconds"] for r in rows])
        lines.append(
            f"| {setting} | {its} | {len(rows)} | {c.mean():.3f} | {c.min():.3f}..{c.max():.3f} "
            f"| {mi.mean():.3f} | {t:.0f} |"
        )
    lines += ["", "Raw numbers: `segment_cpu.json`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
