#!/usr/bin/env python3
"""Does a change of the training budget keep the pilot's crack IoU? Writes docs/benchmarks/budget_cracks_*

    python benchmarks/budget_cracks.py --set cpu_amp=false --tag _fp32          # fp32 (the default: auto)
    python benchmarks/budget_cracks.py --set class_weighting=frequency --tag _freq_ce
    python benchmarks/budget_cracks.py --set cpu_amp=false --paths default,candidate  # both now
    python benchmarks/budget_cracks.py --set cpu_amp=false --quick  # 60 steps, 1 seed: checks the script
    python benchmarks/budget_cracks.py --real-ratio 0.25 --tag _ratio0.25  # the pilot's --real-ratio
    python benchmarks/budget_cracks.py --render-only  # rewrite every .md from its .json

Runs the pilot's three baseline settings (source-only, real-only, source+real) on the
cracks set with the full budget of ``benchmarks/pilot_cracks.py`` (1000 steps of 8 crops
of 128 px, images at a 256 px shorter side), two runs at a time with one thread each, once
per path: ``default`` (the full budget as it is) and/or ``candidate`` (the same budget with
the ``--set`` changes, parsed as ``train --set`` parses them, and/or the pilot's
``--real-ratio``; one of the two is required).
A path not run here is read from ``docs/results/cracks_full.json`` (the same budget,
seeds and data, trained by ``pilot_cracks.py --full``) when that file has the same budget
and model and real ratio, so the default compares the candidate against the committed numbers. For each
setting: crack IoU per seed, mean, min..max, train seconds per run; the candidate is
*within the spread* when its mean lies inside the default's min..max and the difference
of means is at most the larger of the two seed spreads. Writes
``docs/benchmarks/budget_cracks{_quick}{--tag}.{md,json}``. (The script was called
``amp_cracks.py`` when it compared bf16 only; ``amp_cracks*.md`` were written under that
name.)
"""

from __future__ import annotations

import argparse
import hashlib
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
from pilot_cracks import MODES, cracks_split, default_cracks  # noqa: E402

from synth2real.data.io import atomic_write_text  # noqa: E402
from synth2real.pilot.machine import describe_machine, machine_info  # noqa: E402
from synth2real.segment.config import DEFAULT_MODEL  # noqa: E402

SETTINGS = ("source-only", "real-only", "source+real")
OUT = REPO / "docs" / "benchmarks"


def run_path(path: str, args: argparse.Namespace, budget: dict, real_ratio: float) -> dict:
    """Train the baselines with ``budget`` (already holding the path's changes) and the
    pilot's ``real_ratio``; the pilot's run records."""
    from synth2real.pilot import PilotConfig, run_pilot

    cfg = PilotConfig(
        **cracks_split(Path(args.cracks)),
        methods=["none"],
        seeds=args.seeds,
        budget=budget,
        real_ratio=real_ratio,
        model=DEFAULT_MODEL,
        device="cpu",
        jobs=args.jobs,
        metric="iou:cracks",
        cache_dir=Path(args.work) / "cache",
    )
    t0 = time.perf_counter()
    res = run_pilot(
        cfg,
        run_dir(path, args),
        resume=True,
        report=False,
        progress=not args.quiet,
    )
    return {
        "runs": res.results["runs"],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "source": "measured now",
    }


def run_dir(path: str, args: argparse.Namespace) -> Path:
    """The pilot folder of one path; a candidate's name holds a hash of its change, so
    that checks of different changes never resume each other's runs."""
    if path == "default":
        return Path(args.work) / f"{args.mode}-default"
    digest = hashlib.sha1(json.dumps(args.change, sort_keys=True, default=list).encode())
    return Path(args.work) / f"{args.mode}-candidate-{digest.hexdigest()[:8]}"


def finished_so_far(path: str, args: argparse.Namespace) -> dict | None:
    """The runs a stopped call of this script finished (the pilot's partial results)."""
    f = run_dir(path, args) / "results.json"
    if not f.is_file():
        return None
    runs = json.loads(f.read_text(encoding="utf-8"))["runs"]
    return {
        "runs": runs,
        "wall_seconds": None,
        "source": f"measured, {len(runs)} run(s) finished before the script was stopped",
    }


def committed_default(budget: dict, real_ratio: float) -> dict | None:
    """The baselines of docs/results/cracks_full.json when trained with ``budget`` and
    ``real_ratio``."""
    path = REPO / "docs" / "results" / "cracks_full.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    runs = [r for r in d["runs"] if r["setting"] in SETTINGS and r["method"] is None]
    same = (
        runs
        and d["config"].get("model") == DEFAULT_MODEL
        and d["config"].get("real_ratio") == real_ratio
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
    change = ", ".join(f"{k}={json.dumps(v)}" for k, v in p["change"].items())
    lines = [
        f"# {change} on the CPU: crack IoU against the default budget",
        "",
        f"Written by `benchmarks/budget_cracks.py` ({p['mode']} mode). Machine at start: "
        f"{p['machine_start']}. At end: load avg "
        + "/".join(f"{x:g}" for x in (p["machine_end"].get("load_avg") or []))
        + ".",
        "",
        f"Default budget: {json.dumps(p['budget'])}, {p['model']}, seeds {p['seeds']}, "
        f"{p['jobs']} runs at a time; candidate: the same with {change}. Sources: "
        + "; ".join(f"{k}: {v['source']}" for k, v in p["paths"].items())
        + f". Command: `{p['command']}`.",
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
            "reflect each call's machine load, not only the path.",
            "",
        ]
    for s, c in p.get("comparison", {}).items():
        verdict = (
            "within the spread"
            if c["within"]
            else "NOT within: the candidate's mean lies outside the default's min..max or "
            "differs by more than the spread"
        )
        lines.append(
            f"- {s}: candidate - default = {c['delta']:+.3f} crack IoU (seed spread "
            f"{c['spread']:.3f}); {verdict}; training time per run x{c['time_ratio']:.2f} "
            "the default's."
        )
    lines += ["", f"Raw numbers: `{p['stem']}.json`.", ""]
    return "\n".join(lines)


def compare_paths(a: dict, b: dict) -> dict:
    """Per setting: candidate ``b`` against default ``a`` (summaries of :func:`summarise`)."""
    out = {}
    for s in SETTINGS:
        if s in a and s in b:
            spread = max(a[s]["max"] - a[s]["min"], b[s]["max"] - b[s]["min"])
            delta = b[s]["mean"] - a[s]["mean"]
            out[s] = {
                "delta": delta,
                "spread": spread,
                "within": abs(delta) <= spread and a[s]["min"] <= b[s]["mean"] <= a[s]["max"],
                # the candidate's training time per run as a factor of the default's
                "time_ratio": b[s]["train_seconds"] / a[s]["train_seconds"],
            }
    return out


def render_only() -> None:
    """Rewrite every ``budget_cracks*.md`` from its ``.json``, its comparison recomputed
    from the stored runs (a change of the wording or the rule reaches the files without
    retraining)."""
    for path in sorted(OUT.glob("budget_cracks*.json")):
        p = json.loads(path.read_text(encoding="utf-8"))
        if "default" in p["paths"] and "candidate" in p["paths"]:
            p["comparison"] = compare_paths(
                p["paths"]["default"]["summary"], p["paths"]["candidate"]["summary"]
            )
        atomic_write_text(path, json.dumps(p, indent=1, default=list) + "\n")
        atomic_write_text(path.with_suffix(".md"), render(p))
        print(f"wrote {path.with_suffix('.md')}")


def main() -> None:
    from synth2real.pilot import PilotConfig
    from synth2real.segment.config import parse_settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 steps, seed 0: checks the script")
    ap.add_argument(
        "--set",
        action="append",
        help="KEY=VALUE of the candidate budget, as train --set (repeatable; required)",
    )
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="train nothing: rewrite every budget_cracks*.md from its .json",
    )
    ap.add_argument(
        "--paths",
        default="candidate",
        help="default,candidate (default: candidate; the default path is read "
        "from docs/results/cracks_full.json when not run)",
    )
    ap.add_argument(
        "--real-ratio",
        type=float,
        help="the candidate's pilot --real-ratio (share of each +real batch drawn from "
        "the references; the default path keeps the pilot's default)",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cracks", default=str(default_cracks()))
    ap.add_argument("--work", default=str(REPO / "runs" / "budget_cracks"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tag", default="", help="appended to the output files' names")
    ap.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: report the runs an earlier, stopped call finished",
    )
    args = ap.parse_args()
    if args.render_only:
        render_only()
        return
    if not args.set and args.real_ratio is None:
        ap.error("--set KEY=VALUE or --real-ratio R is required (or --render-only)")
    args.mode = "quick" if args.quick else "full"
    budget = dict(MODES["full"]["budget"])
    if args.quick:
        budget["iterations"], args.seeds = 60, "0"
    settings = parse_settings(args.set or [])
    default_ratio = PilotConfig.__dataclass_fields__["real_ratio"].default
    ratio = default_ratio if args.real_ratio is None else args.real_ratio
    # what the candidate changes, as written in the files; real_ratio is the pilot's, not
    # a budget key
    change = args.change = {**settings, **({"real_ratio": ratio} if ratio != default_ratio else {})}
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    start = machine_info("cpu")
    p = {
        "mode": args.mode,
        "budget": budget,
        "change": change,
        "model": DEFAULT_MODEL,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "machine_start": describe_machine(start),
        "commit": git_commit(),
        "command": "budget_cracks.py " + " ".join(sys.argv[1:]),
        "stem": "budget_cracks" + ("_quick" if args.quick else "") + args.tag,
        "paths": {},
    }
    wanted = [x.strip() for x in args.paths.split(",") if x.strip()]
    for path, b, r in (
        ("default", budget, default_ratio),
        ("candidate", {**budget, **settings}, ratio),
    ):
        if args.finished_only and path in wanted:
            got = finished_so_far(path, args)
        elif path in wanted:
            got = run_path(path, args, b, r)
        else:
            got = committed_default(budget, default_ratio) if path == "default" else None
        if got is not None:
            got["runs"] = [r for r in got["runs"] if r["seed"] in args.seeds]
            got["summary"] = summarise(got["runs"])
            p["paths"][path] = got
    if "default" in p["paths"] and "candidate" in p["paths"]:
        p["comparison"] = compare_paths(
            p["paths"]["default"]["summary"], p["paths"]["candidate"]["summary"]
        )
    p["machine_end"] = machine_info("cpu")
    atomic_write_text(OUT / f"{p['stem']}.json", json.dumps(p, indent=1, default=list) + "\n")
    atomic_write_text(OUT / f"{p['stem']}.md", render(p))
    print(render(p))


if __name__ == "__main__":
    main()
