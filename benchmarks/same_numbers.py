#!/usr/bin/env python3
"""Does a code change keep the pilot's numbers? The same small cracks pilot at two commits.

A refactor must not change results. This script checks out two commits into temporary git
worktrees, runs the same small pilot on the cracks set with each (the package of that
commit, this checkout's Python environment), once per ``--jobs`` value (one 2-thread run
at a time and two 1-thread runs side by side round differently, so each is compared with
itself), and compares every run's per-class IoU and final training loss bit for bit.
Defaults that changed on purpose between the commits are pinned with ``--after-args``
(and ``--before-args``), so only the code is compared.

Writes docs/benchmarks/same_numbers.md and .json.

    python benchmarks/same_numbers.py             # c61ee5d against HEAD, ~40 min on 2 cores
    python benchmarks/same_numbers.py --before A --after B --after-args ""
    python benchmarks/same_numbers.py --render-only        # rewrite the .md from the .json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench_machine import git_commit, load_average  # noqa: E402
from pilot_cracks import default_cracks  # noqa: E402

from synth2real.data.io import atomic_write_text  # noqa: E402
from synth2real.pilot.machine import describe_machine, machine_info  # noqa: E402

# c61ee5d is the last commit before the architecture issue reshaped the pilot, the data
# readers and the diffusion code; since then the defaults changed on purpose to
# small-unet-add with bf16 autocast, so the later commit is pinned to the earlier ones.
BEFORE = "c61ee5d"
AFTER_ARGS = "--seg-model small-unet --budget cpu_amp=false"
PILOT_ARGS = "--quick --source-limit 256 --methods reinhard,fda --seeds 2"


def pilot_command(cracks: Path, out: Path, pilot_args: str, args: str, jobs: str) -> list[str]:
    """The pilot's command line on the cracks split (the benchmark's references and test)."""
    split = cracks / "splits.json"
    return [
        sys.executable, "-m", "synth2real", "pilot",
        "--source", str(cracks / "source_synthetic"),
        "--references", str(cracks / "validation"), "--reference-names", f"{split}:references",
        "--test", str(cracks / "validation"), "--test-names", f"{split}:test",
        "--metric", "iou:cracks", "--jobs", jobs, "--out", str(out),
        *shlex.split(pilot_args), *shlex.split(args),
    ]  # fmt: skip


def run_commit(commit: str, args: str, jobs: str, a: argparse.Namespace, work: Path) -> dict:
    """Run the pilot with the package of ``commit``; its runs keyed by setting/method/seed."""
    tree = work / f"tree-{commit}"
    if not tree.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=REPO, check=True, capture_output=True,
        )  # fmt: skip
    out = work / f"pilot-{commit}-jobs{jobs}"
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run(
        pilot_command(a.cracks, out, a.pilot_args, args, jobs),
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the pilot at {commit} failed:\n{done.stderr[-3000:]}")
    if not a.quiet:
        print(f"{commit} jobs {jobs}: {time.perf_counter() - started:.0f} s", flush=True)
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {
        f"{r['setting']} | {r.get('method') or '-'} | seed {r['seed']}": {
            "iou": r["iou"],
            "final_loss": r["final_loss"],
            "model": r.get("model"),
        }
        for r in runs
    }


def remove_trees(work: Path) -> None:
    for tree in work.glob("tree-*"):
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True
        )


def render(result: dict) -> str:
    lines = [
        "# Same numbers before and after a code change",
        "",
        "Written by `benchmarks/same_numbers.py`; do not edit by hand. "
        f"Machine: {result['machine']}; load avg at end {result['load_end']}; "
        f"{result['wall_min']:.1f} min; run from commit {result['commit']}.",
        "",
        f"The same cracks pilot at `{result['before']}` and `{result['after']}` "
        f"(`{result['after_resolved']}`): `pilot {result['pilot_args']}` on the benchmark's "
        "10 references and 60 test images; extra arguments before: "
        f"`{result['before_args'] or 'none'}`, after: `{result['after_args'] or 'none'}`.",
        "",
        "| jobs | setting | method | seed | model | cracks IoU before | cracks IoU after "
        "| final loss before | final loss after | bit for bit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for jobs, runs in result["runs"].items():
        for name, pair in runs.items():
            b, a = pair["before"], pair["after"]
            setting, method, seed = name.split(" | ")  # the run's key, as run_commit makes it
            lines.append(
                f"| {jobs} | {setting} | {method} | {seed.removeprefix('seed ')} | {a['model']} "
                f"| {b['iou'].get('cracks')} | {a['iou'].get('cracks')} "
                f"| {b['final_loss']} | {a['final_loss']} "
                f"| {'yes' if pair['equal'] else 'NO'} |"
            )
    lines += ["", f"**{result['equal']} of {result['total']} runs equal bit for bit** "
              "(every class's IoU and the final loss)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=BEFORE, help=f"earlier commit (default {BEFORE})")
    p.add_argument("--after", default="HEAD", help="later commit (default HEAD)")
    p.add_argument("--before-args", default="", help="extra pilot arguments at --before")
    p.add_argument("--after-args", default=AFTER_ARGS, help=f"default: {AFTER_ARGS!r}")
    p.add_argument("--pilot-args", default=PILOT_ARGS, help=f"default: {PILOT_ARGS!r}")
    p.add_argument("--jobs", default="1,2", help="comma list of --jobs values (default 1,2)")
    p.add_argument("--cracks", type=Path, default=default_cracks())
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--render-only", action="store_true", help="only rewrite the .md from the .json")
    a = p.parse_args()
    if a.render_only:
        result = json.loads((a.docs / "same_numbers.json").read_text())
        atomic_write_text(a.docs / "same_numbers.md", render(result))
        return
    commit = git_commit()  # before the runs: the checkout they were started from
    after = subprocess.run(
        ["git", "rev-parse", "--short", a.after], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    started = time.perf_counter()
    machine = describe_machine(machine_info("cpu"))
    with tempfile.TemporaryDirectory(prefix="same_numbers_") as tmp:
        work = Path(tmp)
        try:
            runs: dict = {}
            for jobs in a.jobs.split(","):
                before = run_commit(a.before, a.before_args, jobs, a, work)
                later = run_commit(after, a.after_args, jobs, a, work)
                if set(before) != set(later):
                    raise SystemExit(f"different runs: {sorted(before)} vs {sorted(later)}")
                runs[jobs] = {
                    k: {
                        "before": before[k],
                        "after": later[k],
                        "equal": (before[k]["iou"], before[k]["final_loss"])
                        == (later[k]["iou"], later[k]["final_loss"]),
                    }
                    for k in sorted(before)
                }
        finally:
            remove_trees(work)
    pairs = [pair for r in runs.values() for pair in r.values()]
    result = {
        "machine": machine,
        "load_end": load_average(),
        "commit": commit,
        "before": a.before,
        "after": a.after,
        "after_resolved": after,
        "before_args": a.before_args,
        "after_args": a.after_args,
        "pilot_args": a.pilot_args,
        "wall_min": (time.perf_counter() - started) / 60,
        "runs": runs,
        "equal": sum(p["equal"] for p in pairs),
        "total": len(pairs),
    }
    a.docs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.docs / "same_numbers.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(a.docs / "same_numbers.md", render(result))
    print(f"{result['equal']} of {result['total']} runs equal; wrote {a.docs / 'same_numbers.md'}")


if __name__ == "__main__":
    main()
