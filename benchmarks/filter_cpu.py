"""CPU benchmark: one whole filtered attention step (CACTIF) at SD 1.5's real shapes, ours
against a faithful re-creation of the reference code, on the same inputs in the same run.

The step is what one decoder self-attention layer of the finest resolution computes in a
filtering step: the attention outputs of the three batch elements (out, style, content),
8 heads, 64 x 128 = 8,192 tokens (a 512 x 1024 image), head dim 40.

* ``reference``: ``benchmarks/reference_impl.py`` - full attention matrices for the
  3 elements x 8 heads x N x N, head-by-head sharpening, a Python loop over the N
  positions for the similarity, the quantile on the host, list-indexed column/row
  replacement, and a second ``A @ V`` over all three elements.
* ``ours``: ``synth2real.diffusion.filtering.filtered_attention(..., return_content=True)``
  for the out and content elements plus fused attention for the style element.

Each variant runs in its own subprocess (fresh allocator, honest peak memory): the peak is
the growth of the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``)
over its resident size once the inputs exist, i.e. everything the step itself allocated
at its worst moment. ``tracemalloc`` would not see torch's allocations. Time is the median
wall time over the repeats (the first run, which also pays for first-touch page faults,
is reported separately); process CPU time is recorded as well since the machine may be
shared. The outputs of both variants are saved and compared (max abs difference) by the
parent.

Usage::

    python benchmarks/filter_cpu.py            # full size: needs ~14 GB free for the reference
    python benchmarks/filter_cpu.py --quick    # 32 x 64 tokens, a few seconds

Writes ``docs/benchmarks/filter_cpu.md`` and ``docs/benchmarks/filter_cpu.json`` (``--quick``
writes ``filter_cpu_quick.*``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
SEED = 0

from bench_machine import cpu_model, git_commit, load_average, mem_available_bytes  # noqa: E402

# --------------------------------------------------------------------------- machine


def reference_peak_estimate(heads: int, tokens: int) -> int:
    """Bytes the reference needs at its peak: two float32 3 x H x N x N matrices at once
    (logits and probabilities), plus a third of one for the head-by-head sharpening."""
    return int(2.4 * 3 * heads * tokens * tokens * 4)


# --------------------------------------------------------------------------- worker


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def make_inputs(heads: int, tokens: int, head_dim: int):
    import torch

    g = torch.Generator().manual_seed(SEED)
    # (out, style, content) projections; queries a little larger than unit scale so the
    # attention is peaked, as in a trained UNet
    q = torch.randn(3, heads, tokens, head_dim, generator=g) * 2.0
    k = torch.randn(3, heads, tokens, head_dim, generator=g)
    v = torch.randn(3, heads, tokens, head_dim, generator=g)
    return q, k, v


def run_reference(q, k, v, p: float, sharpen: float):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import reference_impl

    return reference_impl.reference_filtered_step(q, k, v, filter_perc=p, contrast_strength=sharpen)


def run_ours(q, k, v, p: float, sharpen: float):
    import torch

    from synth2real.diffusion.attention import attention
    from synth2real.diffusion.filtering import filtered_attention

    out, content = filtered_attention(
        q[0:1], k[1:2], v[1:2], q[2:3], k[2:3], v[2:3], p=p, sharpen=sharpen, return_content=True
    )
    style = attention(q[1:2], k[1:2], v[1:2])
    return torch.cat([out, style, content])


VARIANTS = {"reference": run_reference, "ours": run_ours}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    q, k, v = make_inputs(args.heads, args.tokens, args.head_dim)
    fn = VARIANTS[args.worker]
    base_rss = _rss_bytes()
    base_peak = _maxrss_bytes()

    times, cpu_times = [], []
    result = None
    for _ in range(args.repeats):
        result = None  # free the previous output before the next run
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn(q, k, v, args.p, args.sharpen)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if len(times) == 1:
            peak = _maxrss_bytes()
    torch.save(result, args.save)
    record = {
        "variant": args.worker,
        "first_run_s": times[0],
        "times_s": times,
        "median_s": statistics.median(times[1:] if len(times) > 1 else times),
        "cpu_times_s": cpu_times,
        "median_cpu_s": statistics.median(cpu_times[1:] if len(cpu_times) > 1 else cpu_times),
        "peak_bytes": max(0, peak - base_rss),
        "baseline_rss_bytes": base_rss,
        "baseline_peak_bytes": base_peak,
    }
    Path(args.result).write_text(json.dumps(record))


# --------------------------------------------------------------------------- parent


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def write_markdown(path: Path, rec: dict) -> None:
    cfg, res = rec["config"], rec["results"]
    lines = [
        "# CPU benchmark: one filtered attention step (CACTIF)",
        "",
        f"Generated by `benchmarks/filter_cpu.py{' --quick' if cfg['quick'] else ''}` on "
        f"{rec['machine']['date']} (commit {rec['machine']['commit']}). Do not edit by hand.",
        "",
        f"Shapes: 3 batch elements (out, style, content) x {cfg['heads']} heads x "
        f"{cfg['tokens']} tokens ({cfg['grid']}) x head dim {cfg['head_dim']}; p = {cfg['p']}, "
        f"sharpening s = {cfg['sharpen']}; float32; {cfg['repeats']} runs per variant, each "
        "variant in its own process.",
        "",
        f"Machine: {rec['machine']['cpu']}, {rec['machine']['cores']} logical cores, "
        f"{cfg['threads']} torch threads, torch {rec['machine']['torch']}, Python "
        f"{rec['machine']['python']}. Load average before/after: "
        f"{rec['machine']['load_before']} / {rec['machine']['load_after']}"
        + (
            " (shared machine: times are provisional)." if rec["machine"]["shared_warning"] else "."
        ),
        "",
        "| variant | median wall time | first run | median CPU time | peak memory |",
        "|---|---|---|---|---|",
    ]
    for name, r in res.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | |")
            continue
        lines.append(
            f"| {name} | {r['median_s']:.2f} s | {r['first_run_s']:.2f} s | "
            f"{r['median_cpu_s']:.2f} s | {fmt_bytes(r['peak_bytes'])} |"
        )
    cmp = rec.get("comparison")
    if cmp:
        lines += [
            "",
            f"- Speed-up (median wall time): **{cmp['speedup']:.2f}x** (goal >= 3x); "
            f"CPU time ratio {cmp['cpu_speedup']:.2f}x.",
            f"- Peak memory: ours is **{cmp['memory_ratio']:.3f}** of the reference's (goal <= 0.25).",
            f"- Max abs difference of the outputs (all three elements): "
            f"**{cmp['max_abs_diff']:.3g}** (out element {cmp['max_abs_diff_out']:.3g}; "
            f"output magnitude max {cmp['max_abs_value']:.3g}).",
            f"- Goals met: {'yes' if cmp['goals_met'] else 'NO'}.",
        ]
    lines += [
        "",
        "Method: peak memory is the growth of the process's peak resident set size "
        "(`getrusage(RUSAGE_SELF).ru_maxrss`) over its resident size once the inputs "
        "exist, measured over the first run in a fresh process per variant. Times are "
        "`time.perf_counter` around the whole step; the median excludes the first run.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32 x 64 tokens, 3 runs (seconds)")
    ap.add_argument(
        "--height", type=int, default=None, help="token grid height (default 64, quick 32)"
    )
    ap.add_argument(
        "--width", type=int, default=None, help="token grid width (default 128, quick 64)"
    )
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=40)
    ap.add_argument("--p", type=float, default=0.25)
    ap.add_argument("--sharpen", type=float, default=1.67)
    ap.add_argument("--repeats", type=int, default=None, help="runs per variant (default 3)")
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument(
        "--force", action="store_true", help="run the reference even if memory looks short"
    )
    # internal: run one variant
    ap.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker(args)
        return 0

    import torch

    height = args.height or (32 if args.quick else 64)
    width = args.width or (64 if args.quick else 128)
    tokens = height * width
    repeats = args.repeats or 3
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "load_before": load_average(),
        "mem_available_bytes": mem_available_bytes(),
    }
    config = {
        "quick": args.quick,
        "heads": args.heads,
        "tokens": tokens,
        "grid": f"{height} x {width}",
        "head_dim": args.head_dim,
        "p": args.p,
        "sharpen": args.sharpen,
        "repeats": repeats,
        "threads": args.threads,
    }
    results: dict[str, dict] = {}
    outputs = {}
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("reference", "ours"):
            need = reference_peak_estimate(args.heads, tokens) if name == "reference" else 0
            avail = mem_available_bytes()
            if need and avail is not None and need > 0.9 * avail and not args.force:
                results[name] = {
                    "skipped": f"needs ~{fmt_bytes(need)}, {fmt_bytes(avail)} available (--force to try)"
                }
                print(f"[filter_cpu] {name}: {results[name]['skipped']}", flush=True)
                continue
            save, result = Path(tmp) / f"{name}.pt", Path(tmp) / f"{name}.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                name,
                "--tokens",
                str(tokens),
                "--heads",
                str(args.heads),
                "--head-dim",
                str(args.head_dim),
                "--p",
                str(args.p),
                "--sharpen",
                str(args.sharpen),
                "--repeats",
                str(repeats),
                "--threads",
                str(args.threads),
                "--save",
                str(save),
                "--result",
                str(result),
            ]
            print(f"[filter_cpu] running {name} ({tokens} tokens, {repeats} runs) ...", flush=True)
            subprocess.run(cmd, check=True, env=env)
            results[name] = json.loads(result.read_text())
            outputs[name] = torch.load(save)
            r = results[name]
            print(
                f"[filter_cpu] {name}: median {r['median_s']:.2f} s, peak {fmt_bytes(r['peak_bytes'])}",
                flush=True,
            )

    machine["load_after"] = load_average()
    machine["shared_warning"] = bool(
        machine["load_before"] and max(machine["load_before"][0], machine["load_after"][0]) > 0.5
    )
    record = {"machine": machine, "config": config, "results": results}
    if len(outputs) == 2:
        ref, ours = outputs["reference"], outputs["ours"]
        diff = (ref.double() - ours.double()).abs()
        cmp = {
            "speedup": results["reference"]["median_s"] / results["ours"]["median_s"],
            "cpu_speedup": results["reference"]["median_cpu_s"] / results["ours"]["median_cpu_s"],
            "memory_ratio": results["ours"]["peak_bytes"]
            / max(1, results["reference"]["peak_bytes"]),
            "max_abs_diff": float(diff.max()),
            "max_abs_diff_out": float(diff[0].max()),
            "max_abs_value": float(ref.abs().max()),
        }
        cmp["goals_met"] = bool(
            cmp["speedup"] >= 3.0 and cmp["memory_ratio"] <= 0.25 and cmp["max_abs_diff"] <= 1e-4
        )
        record["comparison"] = cmp
        print(
            f"[filter_cpu] speed-up {cmp['speedup']:.2f}x, memory ratio {cmp['memory_ratio']:.3f}, "
            f"max abs diff {cmp['max_abs_diff']:.3g}",
            flush=True,
        )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "filter_cpu_quick" if args.quick else "filter_cpu"
    json_path, md_path = args.out_dir / f"{stem}.json", args.out_dir / f"{stem}.md"
    tmp_json = json_path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(record, indent=2) + "\n")
    tmp_json.replace(json_path)
    tmp_md = md_path.with_suffix(".md.tmp")
    write_markdown(tmp_md, record)
    tmp_md.replace(md_path)
    print(f"[filter_cpu] wrote {md_path} and {json_path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
