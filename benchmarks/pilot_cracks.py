#!/usr/bin/env python3
"""The docs/BENCHMARK.md pilot protocol on the cracks set; writes docs/RESULTS.md.

    python benchmarks/pilot_cracks.py --quick            # < 15 min on 2 quiet CPU cores
    python benchmarks/pilot_cracks.py --full             # 45 min on a 2-core Xeon (measured)
    python benchmarks/pilot_cracks.py --full --device cuda
    python benchmarks/pilot_cracks.py --recipes [--iterations N]   # mix, finetune, selftrain: 61 min
    python benchmarks/pilot_cracks.py --recipes-long     # the recipes at 2000 steps: about 2 h

Source: the 1158 synthetic images of ``source_synthetic``; references: the 10
``references`` of ``splits.json`` (from ``validation/``); test: the 60 ``test`` images,
scored at their own resolution. Every classical method runs through every setting
(source-only, real-only, source+real, translated, translated+real) with the same model,
budget and seeds (>= 3). Translations and finished runs are cached under ``--work``
(default ``runs/bench``): a rerun resumes, and a second budget reuses the translations.

``--recipes`` compares how the data is used (docs/PILOT.md): the recipes mix,
finetune and selftrain with the methods ``none`` (the source baselines), ``fda``,
``reinhard-cwc`` and ``histmatch-cwc``, the 150 unlabelled images of
``target_unlabeled/`` (``splits.json`` ``unlabeled``) for self-training, 3 seeds, and the
full mode's model, crop and resolution (``--iterations`` changes the steps); 54 runs.

Writes ``docs/results/cracks_<mode>.json`` and ``.csv`` (every run, the machine, the
budget, the wall time) and regenerates ``docs/RESULTS.md`` from every
``docs/results/cracks_*.json`` present, so quick, full and recipes results sit side by
side. ``--docs DIR`` writes them under another folder instead (``DIR/results/``,
``DIR/RESULTS.md``: a trial run leaves ``docs/`` alone). ``--render-only`` trains
nothing: it recomputes each JSON file's ``verdict`` from its stored runs with the current
verdict code (``synth2real.pilot.verdict.decide``; the runs, numbers and timings are left
as measured) and rewrites RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
# idle OpenMP threads sleep instead of spinning: 10-50x faster on shared cores (read
# when torch loads, so set before any import of it); a value set by the caller wins
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from synth2real.data.io import atomic_write_text  # noqa: E402
from synth2real.pilot.machine import describe_machine  # noqa: E402
from synth2real.pilot.report import ordered_summary  # noqa: E402
from synth2real.pilot.stats import (  # noqa: E402
    aggregate,
    compare,
    display_key,
    fmt_stat,
    run_key,
)
from synth2real.pilot.verdict import decide  # noqa: E402
from synth2real.segment.config import DEFAULT_MODEL, LEGACY_VALUES  # noqa: E402

#: The two budgets; both train the default model (small-unet-add) on images shrunk to a 256 px shorter
#: side (the cracks images are 512 px) with 128 px crops, which at equal compute beat full
#: resolution (docs/benchmarks/segment_cpu.md), two runs at a time with one thread each
#: on 2 cores (--jobs). ``quick`` must finish in under 15 minutes on 2 quiet CPU cores
#: for every classical method x 5 settings x 3 seeds (51 runs): 100 steps per run, which
#: shows the pipeline and gross effects only (RESULTS.md says so). ``full``: 1000 steps,
#: the budget meant to separate methods; ``--iterations`` raises it where time allows
#: (check in RESULTS.md that the seed spread is smaller than the differences).
MODES: dict[str, dict] = {
    "quick": {
        "budget": {"iterations": 100, "batch_size": 8, "crop": 128, "max_size": 256},
        "model": DEFAULT_MODEL,
    },
    "full": {
        "budget": {"iterations": 1000, "batch_size": 8, "crop": 128, "max_size": 256},
        "model": DEFAULT_MODEL,
    },
}
#: the recipes benchmark: the full budget (``--iterations`` changes its steps), the
#: methods worth the runs (fda and the two class-wise colour methods that did best in
#: the full mode; ``none`` is the source baselines), every recipe
MODES["recipes"] = {
    **MODES["full"],
    "methods": ["none", "fda", "reinhard-cwc", "histmatch-cwc"],
    "recipes": ["mix", "finetune", "selftrain"],
}
#: the recipes mode at twice the steps (same recipes and methods): does a recipe's effect
#: grow with the budget, and does a translation help where the synthetic data does?
MODES["recipes-long"] = {
    **MODES["recipes"],
    "budget": {**MODES["full"]["budget"], "iterations": 2000},
}
#: order of the modes in RESULTS.md
MODE_ORDER = ("recipes", "recipes-long", "full", "quick")


def default_cracks() -> Path:
    env = os.environ.get("S2R_CRACKS")
    if env:
        return Path(env)
    for up in REPO.parents:  # ../shared next to the checkout (or above a worktree)
        if (up / "shared" / "datasets" / "cracks" / "splits.json").is_file():
            return up / "shared" / "datasets" / "cracks"
    return REPO.parent / "shared" / "datasets" / "cracks"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cracks_split(cracks: Path) -> dict:
    """The fixed benchmark split as PilotConfig fields: the synthetic source, the 10
    references and the 60 test images of ``validation/`` (``splits.json``)."""
    splits = json.loads((cracks / "splits.json").read_text(encoding="utf-8"))
    return {
        "source": cracks / splits["source"],
        "references": cracks / "validation",
        "test": cracks / "validation",
        "reference_names": list(splits["references"]),
        "test_names": list(splits["test"]),
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    from synth2real.methods import list_methods
    from synth2real.pilot import PilotConfig, run_pilot
    from synth2real.pilot.config import parse_budget
    from synth2real.pilot.devices import parse_jobs

    if args.threads:
        torch.set_num_threads(args.threads)
    cracks = Path(args.cracks)
    splits = json.loads((cracks / "splits.json").read_text(encoding="utf-8"))
    mode = MODES[args.mode]
    budget = dict(mode["budget"])
    if args.iterations:
        budget["iterations"] = args.iterations
    if args.budget:
        budget = parse_budget(args.budget, budget)
    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods
        else mode.get("methods") or [m for m in list_methods("classical") if m != "none"]
    )
    recipes = mode.get("recipes", ["mix"])
    work = Path(args.work)
    cfg = PilotConfig(
        **cracks_split(cracks),
        methods=methods,
        seeds=args.seeds,
        budget=budget,
        budget_name=args.mode,
        model=args.seg_model or mode["model"],
        device=args.device,
        workers=args.workers,
        jobs=parse_jobs(args.jobs, args.device),
        metric="iou:cracks",
        cache_dir=work / "cache",
        source_limit=args.source_limit,
        recipes=recipes,
        unlabeled=cracks / "target_unlabeled" if "selftrain" in recipes else None,
        unlabeled_names=list(splits["unlabeled"]) if "selftrain" in recipes else None,
    )
    out = work / f"cracks-{args.mode}"
    t0 = time.perf_counter()
    result = run_pilot(cfg, out, resume=True, progress=not args.quiet)
    wall = time.perf_counter() - t0
    res = dict(result.results)
    res["benchmark"] = {
        "script": "benchmarks/pilot_cracks.py",
        "mode": args.mode,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "wall_seconds": round(wall, 1),
        "runs_trained_now": result.ran,
        "runs_resumed": result.skipped,
        "commit": git_commit(),
        "report": str(result.report) if result.report else None,
    }
    dest = Path(args.docs) / "results"
    keep_previous_defaults(dest, args.mode, res)
    atomic_write_text(dest / f"cracks_{args.mode}.json", json.dumps(res, indent=2))
    shutil.copyfile(result.results_csv, dest / f"cracks_{args.mode}.csv")
    return res


def default_changes(new: dict, old: dict) -> list[str]:
    """What two results of one mode trained differently: the model and every effective
    training setting (the results' ``budget``) present in both with another value, as
    ``"key: old -> new"``; a setting the old result predates counts at its
    ``LEGACY_VALUES`` value."""
    out = []
    if new["config"]["model"] != old["config"]["model"]:
        out.append(f"model: {old['config']['model']} -> {new['config']['model']}")
    # a setting newer than the old result had its legacy value there (cpu_amp: fp32)
    a, b = {**LEGACY_VALUES, **old.get("budget", {})}, new.get("budget", {})
    out += [f"{k}: {json.dumps(a[k])} -> {json.dumps(b[k])}" for k in b if k in a and a[k] != b[k]]
    return out


def keep_previous_defaults(dest: Path, mode: str, res: dict) -> Path | None:
    """Before ``res`` replaces ``cracks_<mode>.json``: when that file holds a result of the
    same mode budget (steps, batch, crop, size) trained with other defaults (another
    model or another effective setting: :func:`default_changes`), move it to
    ``cracks_<mode>_previous.json`` (RESULTS.md then compares the two). A result of another
    mode budget is simply replaced (git keeps it): runs of different step counts say
    nothing about the defaults. Returns the moved file, or ``None``."""
    path = dest / f"cracks_{mode}.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("config", {}).get("budget") != res["config"]["budget"]:
        return None
    if not default_changes(res, old):
        return None
    prev = dest / f"cracks_{mode}_previous.json"
    os.replace(path, prev)
    csv = path.with_suffix(".csv")
    if csv.is_file():
        os.replace(csv, prev.with_suffix(".csv"))
    return prev


def machine_change(new: dict, old: dict) -> str:
    """A sentence when the two results ran on different hardware (CPU model, cores, GPU),
    else ``""``: the timings then compare machines as well as defaults."""

    def hw(m: dict) -> tuple:
        return m.get("cpu"), m.get("cores"), m.get("gpu")

    def name(m: dict) -> str:
        return f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores)"

    a, b = old.get("machine", {}), new.get("machine", {})
    if hw(a) == hw(b):
        return ""
    return (
        f" The machine changed too ({name(a)} -> {name(b)}): the training times compare "
        "machines as well as defaults, and the same seeds need not give the same numbers "
        "on another CPU."
    )


def render_default_change(new: dict, old: dict) -> str:
    """The rows of two results of one mode with different defaults (model or training
    settings), side by side: crack IoU per setting and method, the difference, and whether
    it lies within the seed spread (the larger max-min range of the two), as the verdict
    measures."""
    mode = new["benchmark"]["mode"]
    changes = default_changes(new, old)
    olds = {run_key(r): r for r in ordered_summary(old)}
    multi = (new["config"].get("recipes") or ["mix"]) != ["mix"]
    lines = [
        f"### {mode} mode: the defaults now against before ({'; '.join(changes)})",
        "",
        f"The {mode} mode as measured before (commit "
        f"{old['benchmark'].get('commit')}, {describe_machine(old['machine'])}, "
        f"{_secs(old['benchmark']['wall_seconds'])} wall time; "
        f"`docs/results/cracks_{mode}_previous.json`) beside the table above "
        f"({_secs(new['benchmark']['wall_seconds'])}). Same mode budget, seeds and data; "
        f"what changed: {'; '.join(f'`{c}`' for c in changes)}.{machine_change(new, old)}",
        "",
        ("| recipe " if multi else "")
        + "| setting | method | before: cracks IoU | now: cracks IoU | difference | seed "
        "spread | before: training / run | now: training / run |",
        ("|---" if multi else "") + "|---|---|---|---|---|---|---|---|",
    ]
    within = outside = 0
    notes = []
    for r in ordered_summary(new):
        o = olds.get(run_key(r))
        if not o or not r.get("iou:cracks") or not o.get("iou:cracks"):
            continue
        a, b = o["iou:cracks"], r["iou:cracks"]
        diff = b["mean"] - a["mean"]
        spread = max(a["max"] - a["min"], b["max"] - b["min"])
        ok = abs(diff) <= spread
        within += ok
        outside += not ok
        if not ok:
            notes.append(f"{display_key(run_key(r))} ({diff:+.3f})")
        lines.append(
            (f"| {run_key(r)[0]} " if multi else "")
            + f"| {r['setting']} | {r['method'] or '–'} | {_ms(a)} | {_ms(b)} | {diff:+.3f} | "
            f"{spread:.3f}{'' if ok else ' (outside)'} | {_secs(o['train_seconds']['mean'])} | "
            f"{_secs(r['train_seconds']['mean'])} |"
        )
    lines += [
        "",
        f"{within} of {within + outside} rows differ by no more than the seed spread"
        + (f"; outside it: {', '.join(notes)}." if notes else "."),
    ]
    return "\n".join(lines) + "\n"


def _ms(st: dict | None) -> str:
    if not st or st.get("mean") is None:
        return "–"
    if st["n"] > 1:
        return f"{st['mean']:.3f} ± {st['std']:.3f} [{st['min']:.3f}..{st['max']:.3f}]"
    return f"{st['mean']:.3f}"


def _secs(v) -> str:
    if v is None:
        return "–"
    return f"{v * 1000:.0f} ms" if v < 1 else (f"{v:.0f} s" if v < 600 else f"{v / 60:.1f} min")


def render_mode(res: dict, where: str = "docs/results") -> str:
    """One mode's section; ``where``: the folder its JSON file is in, as the reader sees it."""
    b = res["benchmark"]
    cfg = res["config"]
    lines = [f"## {b['mode']} mode", ""]
    partial = " (incomplete: some runs missing)" if res.get("partial") else ""
    lines += [
        f"- **Machine**: {describe_machine(res['machine'])}.",
        f"- **Model and budget** (identical for every run): {cfg['model']}, "
        + ", ".join(f"{k}={json.dumps(v)}" for k, v in cfg["budget"].items())
        + f"; all fields in `{where}/cracks_{b['mode']}.json`.",
        f"- **Seeds**: {', '.join(map(str, cfg['seeds']))}. Mean ± std [min..max] over seeds.",
        f"- **Parallelism**: {cfg.get('jobs', 1)} training run(s) at a time"
        + (
            f" ({max(1, (res['machine'].get('cores') or 1) // cfg['jobs'])} torch thread(s) each; "
            "the machine line gives the main process's threads)"
            if cfg.get("jobs", 1) > 1
            else ""
        )
        + f", {cfg.get('workers', 1)} translation process(es).",
        f"- **Data**: {res['data']['source']} synthetic, {res['data']['references']} real "
        f"references, {res['data']['test']} real test images scored at their own resolution. "
        + (
            f"The selftrain runs also used {res['data']['unlabeled']} unlabelled real images "
            "(`target_unlabeled/`, `splits.json` `unlabeled`); no other run did."
            if res["data"].get("unlabeled")
            else "No method used the unlabelled real images."
        ),
        f"- **Wall time** of this benchmark call: {_secs(b['wall_seconds'])} "
        f"({b['runs_trained_now']} runs trained, {b['runs_resumed']} resumed from cache){partial}; "
        f"commit {b.get('commit')}; `{b['command']}`.",
        "",
    ]
    recipes = cfg.get("recipes") or ["mix"]
    multi = recipes != ["mix"]
    head = "| setting | method | cracks IoU | background IoU | mIoU | translation / image | training / run |"
    lines += [
        ("| recipe " if multi else "") + head,
        ("|---" if multi else "") + "|---|---|---|---|---|---|---|",
    ]
    tr = res.get("translations", {})
    for r in ordered_summary(res):
        spi = tr.get(r["method"], {}).get("seconds_per_image") if r["method"] else None
        lines.append(
            (f"| {r.get('recipe') or 'mix'} " if multi else "")
            + f"| {r['setting']} | {r['method'] or '–'} | {_ms(r.get('iou:cracks'))} | "
            f"{_ms(r.get('iou:background'))} | {_ms(r.get('miou'))} | {_secs(spi)} | "
            f"{_secs(r['train_seconds']['mean'])} |"
        )
    v = res["verdict"]
    methods = [m for m in cfg["methods"] if m != "none"]
    lines += ["", f"**Verdict (cracks IoU)**: {v['headline']}", ""]
    if multi:
        for key, q in v.get("questions", {}).items():
            if key == "translation" and not methods:
                lines.append(f"- {q['question']} Not asked: this mode translates nothing.")
                continue
            lines.append(f"- {q['question']} **{q['answer']}**: {q['summary'].split(': ', 1)[-1]}")
            for rec, text in q.get("by_recipe", {}).items():
                lines.append(f"  - closest in recipe {rec}: {text}")
        if methods:
            lines += ["", "Per method, recipe mix:", ""]
    for m in methods:
        mv = v["methods"].get(m)
        if mv:
            text = mv["summary"].split(": ", 1)[-1]
            lines.append(f"- `{m}`: **{mv['status']}**: {text}")
    for n in v.get("notes", []):
        lines.append(f"- Note: {n}")
    full_iters = MODES["full"]["budget"]["iterations"]
    if b["mode"] == "recipes" and cfg["budget"].get("iterations") != full_iters:
        lines += [
            "",
            f"This recipes run trained {cfg['budget'].get('iterations')} steps per run, not the "
            f"full mode's {full_iters} (`--iterations`), so its rows compare with each other, "
            "not with the full-mode table; whether a recipe's effect grows with a longer "
            "budget is not measured by it.",
        ]
    if b["mode"] == "recipes-long":
        lines += [
            "",
            f"This mode trains every recipe for "
            f"{cfg['budget'].get('iterations')} steps per run ({full_iters} in the recipes "
            "mode) to see whether a recipe's effect grows with the budget.",
        ]
    if b["mode"] == "quick":
        lines += [
            "",
            f"Quick mode trains the small UNet for {cfg['budget'].get('iterations')} steps on "
            "half-resolution crops so that every classical method x 5 settings x 3 seeds fits "
            "in under 15 minutes on 2 cores. Budgets this short cannot separate "
            "methods whose differences are smaller than the seed spread; read these numbers "
            "as a check of the pipeline and of gross effects, and the full mode for the verdict.",
        ]
    return "\n".join(lines) + "\n"


def render_budget_growth(long: dict, short: dict) -> str:
    """The rows the ``recipes-long`` result shares with the ``recipes`` result (same recipe,
    setting and method, another step count) side by side, and the margin of the best run on
    synthetic data over each baseline without it at both budgets, from each verdict: does a
    recipe's effect grow with the budget?"""
    n_long, n_short = (r["config"]["budget"]["iterations"] for r in (long, short))
    shorts = {run_key(r): r for r in ordered_summary(short)}
    lines = [
        f"### recipes-long mode: {n_long} steps against the recipes mode's {n_short}",
        "",
        f"The same recipes, settings and seeds as the recipes table (commit "
        f"{short['benchmark'].get('commit')}, {describe_machine(short['machine'])}); only the "
        f"steps per run differ.{machine_change(long, short)}",
        "",
        f"| recipe | setting | method | cracks IoU, {n_short} steps | cracks IoU, {n_long} steps "
        f"| difference | training / run, {n_short} | training / run, {n_long} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in ordered_summary(long):
        o = shorts.get(run_key(r))
        if not o or not r.get("iou:cracks") or not o.get("iou:cracks"):
            continue
        diff = r["iou:cracks"]["mean"] - o["iou:cracks"]["mean"]
        lines.append(
            f"| {run_key(r)[0]} | {r['setting']} | {r['method'] or '–'} | {_ms(o['iou:cracks'])} | "
            f"{_ms(r['iou:cracks'])} | {diff:+.3f} | {_secs(o['train_seconds']['mean'])} | "
            f"{_secs(r['train_seconds']['mean'])} |"
        )
    lines += [
        "",
        "The best run on synthetic data against each baseline without it (margin of the "
        "means; it wins where the margin exceeds the seed spread):",
        "",
        "| steps | best run on synthetic data | baseline | margin | seed spread | result |",
        "|---|---|---|---|---|---|",
    ]
    for n, res in ((n_short, short), (n_long, long)):
        for c in res["verdict"]["questions"]["synthetic"]["comparisons"]:
            lines.append(
                f"| {n} | {c['a']} | {c['b']} | {c['margin']:+.3f} | {c['spread']:.3f} | "
                f"{c['result']} |"
            )
    return "\n".join(lines + render_equal_time(long, short)) + "\n"


def render_equal_time(long: dict, short: dict) -> list[str]:
    """Self-training costs more per step than mixing: each ``selftrain`` row at the short
    budget beside the ``mix`` row of the same setting and method at the long one, with the
    training time per run of both, so the two recipes meet at about equal time."""
    n_long, n_short = (r["config"]["budget"]["iterations"] for r in (long, short))
    st = aggregate(short["runs"], "iou:cracks")
    mix = aggregate(long["runs"], "iou:cracks")
    secs = {
        (n, run_key(v)): v["train_seconds"]["mean"]
        for n, res in ((n_short, short), (n_long, long))
        for v in ordered_summary(res)
    }
    rows = []
    for key in st:
        recipe, setting, method = key
        other = ("mix", setting, method)
        if recipe != "selftrain" or other not in mix or not st[key].n or not mix[other].n:
            continue
        c = compare({other: mix[other], key: st[key]}, other, key)
        rows.append(
            f"| {setting} | {method or '–'} | {fmt_stat(st[key])} | "
            f"{_secs(secs[(n_short, key)])} | {fmt_stat(mix[other])} | "
            f"{_secs(secs[(n_long, other)])} | {c.margin:+.3f} | {c.spread:.3f} | "
            f"mix {c.word} selftrain |"
        )
    if not rows:
        return []
    return [
        "",
        f"At about equal training time per run: the selftrain recipe at {n_short} steps "
        f"against the mix recipe at {n_long} (same setting, method and seeds; margin = "
        "mix minus selftrain):",
        "",
        f"| setting | method | selftrain, {n_short} steps | training / run | mix, {n_long} "
        "steps | training / run | margin | seed spread | result |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def refresh_verdicts(results_dir: Path) -> None:
    """Recompute the ``verdict`` of every ``cracks_*.json`` from its stored runs, so that
    a change of the verdict's wording or rule reaches the results without retraining."""
    for path in sorted(results_dir.glob("cracks_*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        methods = [m for m in res["config"]["methods"] if m != "none"]
        verdict = decide(res["runs"], methods, res["metric"]).to_dict()
        if verdict != res["verdict"]:
            res["verdict"] = verdict
            atomic_write_text(path, json.dumps(res, indent=2))
            print(f"refreshed the verdict of {path}")


def render_results_md(results_dir: Path) -> str:
    where = results_dir.resolve()
    where = where.relative_to(REPO) if where.is_relative_to(REPO) else where
    parts = [
        "# Results: the pilot on the cracks set",
        "",
        f"Written by `benchmarks/pilot_cracks.py` from `{where}/cracks_*.json` (never by hand). "
        "Protocol: the project's BENCHMARK.md (settings source-only, real-only, source+real, "
        "translated, translated+real; see docs/PILOT.md). A method **wins** when translated+real beats both "
        "source+real and real-only on cracks IoU by more than the seed spread (the larger "
        "max-min range over seeds of the two); it **hurts** when its translated data does "
        "worse than the untouched synthetic data by more than the spread. The recipes "
        "section compares how the data is used (mix, finetune, selftrain): the synthetic data "
        "**helps** when some run on synthetic or translated images beats every run without "
        "synthetic data (real-only, and real-only (selftrain) with the unlabelled images) by "
        "more than the spread; a translation **helps** when it beats the same recipe on the "
        "untouched synthetic images.",
        "",
    ]
    found = False
    for mode in MODE_ORDER:
        path = results_dir / f"cracks_{mode}.json"
        if path.is_file():
            res = json.loads(path.read_text(encoding="utf-8"))
            parts.append(render_mode(res, str(where)))
            prev = results_dir / f"cracks_{mode}_previous.json"
            if prev.is_file():
                parts.append(render_default_change(res, json.loads(prev.read_text("utf-8"))))
            short = results_dir / "cracks_recipes.json"
            if mode == "recipes-long" and short.is_file():
                parts.append(render_budget_growth(res, json.loads(short.read_text("utf-8"))))
            found = True
    if not found:
        parts.append("No results yet: run `python benchmarks/pilot_cracks.py --quick`.\n")
    return "\n".join(parts)


def _mode_help(mode: str) -> str:
    m = MODES[mode]
    recipes = ", ".join(m.get("recipes", ["mix"]))
    methods = ", ".join(m["methods"]) if "methods" in m else "every classical method"
    return f"{recipes} with {methods}, {m['budget']['iterations']} steps"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    for mode in ("quick", "full", "recipes", "recipes-long"):
        g.add_argument(
            f"--{mode}", dest="mode", action="store_const", const=mode, help=_mode_help(mode)
        )
    ap.set_defaults(mode="quick")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    ap.add_argument("--seeds", default="3", help="seed count or comma list (default 3)")
    ap.add_argument("--methods", help="comma list (default: every classical method)")
    ap.add_argument("--iterations", type=int, help="override the mode's iterations")
    ap.add_argument("--seg-model", help="the segmentation model (default: the pilot's default)")
    ap.add_argument(
        "--budget",
        action="append",
        help="KEY=VALUE on top of the mode's budget, as the pilot's --budget (a trial; "
        "use with --docs elsewhere unless the mode's default changes)",
    )
    ap.add_argument(
        "--source-limit",
        type=int,
        help="a fixed random subset of N synthetic images (a trial run; default all)",
    )
    ap.add_argument("--workers", type=int, default=2, help="translation processes (default 2)")
    ap.add_argument(
        "--jobs", default="auto", help="training runs at once (default auto: 1 per CPU core, <= 4)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads of the sequential path (default 2)",
    )
    ap.add_argument("--cracks", default=str(default_cracks()), help="the cracks dataset folder")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench"), help="cache and run folder")
    ap.add_argument(
        "--docs",
        default=str(REPO / "docs"),
        help="where results/cracks_<mode>.{json,csv} and RESULTS.md go (default docs/)",
    )
    ap.add_argument("--render-only", action="store_true", help="only rewrite docs/RESULTS.md")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    results_dir = Path(args.docs) / "results"
    if not args.render_only:
        if not (Path(args.cracks) / "splits.json").is_file():
            print(
                f"cracks dataset not found at {args.cracks} (--cracks or S2R_CRACKS)",
                file=sys.stderr,
            )
            return 2
        res = run(args)
        print(f"{args.mode}: {res['verdict']['headline']}")
    else:
        refresh_verdicts(results_dir)
    md = Path(args.docs) / "RESULTS.md"
    atomic_write_text(md, render_results_md(results_dir))
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
