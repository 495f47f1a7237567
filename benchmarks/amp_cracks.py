#!/usr/bin/env python3
"""Does bf16 autocast on the CPU keep the pilot's crack IoU? Writes docs/benchmarks/amp_cracks.*

    python benchmarks/amp_cracks.py                 # bf16, 3 baselines x 3 seeds, 1000 steps
    python benchmarks/amp_cracks.py --paths fp32,bf16   # both paths, same seeds (2x the time)
    python benchmarks/amp_cracks.py --quick         # 60 steps, 1 seed: checks the script
    python benchmarks/amp_cracks.py --tag _add      # writes amp_cracks_add.{md,json}

Runs the pilot's three baseline settings (source-only, real-only, source+real) on the
cracks set with the full budget of ``benchmarks/pilot_cracks.py`` (1000 steps of 8 crops
of 128 px, images at a 256 px shorter side), two runs at a time with one thread each, once
per path: ``fp32`` (``cpu_amp=false``, the current path) and/or ``bf16``
(``cpu_amp=true``). A path not run here is read from ``docs/results/cracks_full.json``
(the same budget, seeds and data, trained by ``pilot_cracks.py --full``) when that file
has the same budget, so the default compares bf16 against the committed fp32 numbers.
For each setting: crack IoU per seed, mean, min..max, train seconds per run; bf16 is
*within the spread* when its mean lies inside the fp32 min..max and the difference of
means is at most the larger of the two seed spreads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads

from bench_machine import git_commit  # noqa: E402
from pilot_cracks import MODES, default_cracks  # noqa: E402

from synth2real.data.io import atomic_write_text  # noqa: E402
from synth2real.pilot.machine import describe_machine, machine_info  # noqa: E402
from synth2real.segment.config import DEFAULT_MODEL  # noqa: E402

SETTINGS = ("source-only", "real-only", "source+real")
OUT = REPO / "docs" / "benchmarks"


def run_path(path: str, args: argparse.Namespace, budget: dict) -> dict:
    """Train the baselines with ``cpu_amp`` set by ``path``; the pilot's run records."""
    from synth2real.pilot import PilotConfig, run_pilot

    cracks = Path(args.cracks)
    splits = json.loads((cracks / "splits.json").read_text(encoding="utf-8"))
    cfg = PilotConfig(
        source=cracks / splits["source"],
        references=cracks / "validation",
        test=cracks / "validation",
        reference_names=list(splits["references"]),
        test_names=list(splits["test"]),
        methods=["none"],
        seeds=args.seeds,
        budget={**budget, "cpu_amp": path == "bf16"},
        model=DEFAULT_MODEL,
        device="cpu",
        jobs=args.jobs,
        metric="iou:cracks",
        cache_dir=Path(args.work) / "cache",
    )
    t0 = time.perf_counter()
    res = run_pilot(
        cfg,
        Path(args.work) / f"{args.mode}-{path}",
        resume=True,
        report=False,
        progress=not args.quiet,
    )
    return {
        "runs": res.results["runs"],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "source": "measured now",
    }


def finished_so_far(path: str, args: argparse.Namespace) -> dict | None:
    """The runs a stopped call of this script finished (the pilot's partial results)."""
    f = Path(args.work) / f"{args.mode}-{path}" / "results.json"
    if not f.is_file():
        return None
    runs = json.loads(f.read_text(encoding="utf-8"))["runs"]
    return {
        "runs": runs,
        "wall_seconds": None,
        "source": f"measured, {len(runs)} run(s) finished before the script was stopped",
    }


def committed_fp32(budget: dict) -> dict | None:
    """The fp32 baselines of docs/results/cracks_full.json when trained with ``budget``."""
    path = REPO / "docs" / "results" / "cracks_full.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    runs = [r for r in d["runs"] if r["setting"] in SETTINGS and r["method"] is None]
    same = (
        runs
        and d["config"].get("model") == DEFAULT_MODEL
        and all(all(r["budget"].get(k) == v for k, v in budget.items()) for r in runs)
    )
    if not same:
        return None
    return {
        "runs": runs,
        "wall_seconds": None,
        "source": f"docs/results/cracks_full.json (commit {d['benchmark'].get('commit')})",
    }


def summarise(runs: list[dict]) -> dict:
    out = {}
    for s in SETTINGS:
        rows = sorted((r for r in runs if r["setting"] == s), key=lambda r: r["seed"])
        if not rows:
            continue
        iou = [r["iou"]["cracks"] for r in rows]
        out[s] = {
            "seeds": [r["seed"] for r in rows],
            "iou_cracks": iou,
            "mean": sum(iou) / len(iou),
            "min": min(iou),
            "max": max(iou),
            "train_seconds": sum(r["train_seconds"] for r in rows) / len(rows),
        }
    return out


def render(p: dict) -> str:
    lines = [
        "# bf16 autocast on the CPU: crack IoU against the fp32 path",
        "",
        f"Written by `benchmarks/amp_cracks.py` ({p['mode']} mode). Machine at start: "
        f"{p['machine_start']}. At end: load avg "
        + "/".join(f"{x:g}" for x in (p["machine_end"].get("load_avg") or []))
        + ".",
        "",
        f"Budget: {json.dumps(p['budget'])}, {p.get('model', 'small-unet')}, seeds {p['seeds']}, "
        f"{p['jobs']} runs at a time. Sources: "
        + "; ".join(f"{k}: {v['source']}" for k, v in p["paths"].items())
        + ".",
        "",
        "| setting | path | crack IoU per seed | mean | min..max | train s / run |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        for path, v in p["paths"].items():
            r = v["summary"].get(s)
            if r:
                lines.append(
                    f"| {s} | {path} | {', '.join(f'{x:.3f}' for x in r['iou_cracks'])} | "
                    f"{r['mean']:.3f} | {r['min']:.3f}..{r['max']:.3f} | "
                    f"{r['train_seconds']:.0f} |"
                )
    lines.append("")
    if len({v["source"] for v in p["paths"].values()}) > 1:
        lines += [
            "The two paths ran in different calls (see the sources): their train seconds "
            "reflect each call's machine load, not only the path; the speed of each path "
            "is measured side by side in `train_throughput.md`.",
            "",
        ]
    for s, c in p.get("comparison", {}).items():
        verdict = (
            "within the spread"
            if c["within"]
            else "NOT within: the bf16 mean lies outside the fp32 min..max or differs by "
            "more than the spread"
        )
        lines.append(
            f"- {s}: bf16 - fp32 = {c['delta']:+.3f} crack IoU (seed spread {c['spread']:.3f}); "
            f"{verdict}; train time x{c['speed']:.2f}."
        )
    lines += [
        "",
        f"Raw numbers: `{p['stem']}.json`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 steps, seed 0: checks the script")
    ap.add_argument(
        "--paths",
        default="bf16",
        help="fp32,bf16 (default bf16; fp32 is read "
        "from docs/results/cracks_full.json when not run)",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cracks", default=str(default_cracks()))
    ap.add_argument("--work", default=str(REPO / "runs" / "amp"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tag", default="", help="appended to the output files' names")
    ap.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: report the runs an earlier, stopped call finished",
    )
    args = ap.parse_args()
    args.mode = "quick" if args.quick else "full"
    budget = dict(MODES["full"]["budget"])
    if args.quick:
        budget["iterations"], args.seeds = 60, "0"
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    start = machine_info("cpu")
    p = {
        "mode": args.mode,
        "budget": budget,
        "model": DEFAULT_MODEL,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "machine_start": describe_machine(start),
        "commit": git_commit(),
        "stem": "amp_cracks" + ("_quick" if args.quick else "") + args.tag,
        "paths": {},
    }
    wanted = [x.strip() for x in args.paths.split(",") if x.strip()]
    for path in ("fp32", "bf16"):
        if args.finished_only and path in wanted:
            got = finished_so_far(path, args)
        elif path in wanted:
            got = run_path(path, args, budget)
        else:
            got = committed_fp32(budget) if path == "fp32" else None
        if got is not None:
            got["runs"] = [r for r in got["runs"] if r["seed"] in args.seeds]
            got["summary"] = summarise(got["runs"])
            p["paths"][path] = got
    if "fp32" in p["paths"] and "bf16" in p["paths"]:
        a, b = p["paths"]["fp32"]["summary"], p["paths"]["bf16"]["summary"]
        p["comparison"] = {}
        for s in SETTINGS:
            if s in a and s in b:
                spread = max(a[s]["max"] - a[s]["min"], b[s]["max"] - b[s]["min"])
                delta = b[s]["mean"] - a[s]["mean"]
                p["comparison"][s] = {
                    "delta": delta,
                    "spread": spread,
                    "within": abs(delta) <= spread and a[s]["min"] <= b[s]["mean"] <= a[s]["max"],
                    "speed": a[s]["train_seconds"] / b[s]["train_seconds"],
                }
    p["machine_end"] = machine_info("cpu")
    atomic_write_text(OUT / f"{p['stem']}.json", json.dumps(p, indent=1) + "\n")
    atomic_write_text(OUT / f"{p['stem']}.md", render(p))
    print(render(p))


if __name__ == "__main__":
    main()
