"""UNet rows per image and wall time of the diffusion presets' batch structure (tiny model).

Counts every row the UNet processes (a forward pre-hook) while translating the same
images, and times it, for:

- StyleID: references inverted with every batch (the structure before the reference
  cache), the cache (default), and the cache with no room for keys/values
  (``style_cache_gb=0``: styles recomputed from their cached trajectories);
- the translate runner with a batched three-branch preset: work grouped by reference
  (``translate.plan_batches``, the default) against dataset order (round-robin
  references: every batch mixes them).
- a filtered (CACTIF) attention processor call: the content rows' attention taken from
  the filter's fused pass (now) against a separate plain attention (before).

The model is the tiny random one of the tests (``tests/diffusion/tiny.py``), on the
CPU: row counts are exact and scale as documented in docs/DIFFUSION.md; wall times only
show the relative cost on this machine (the tiny UNet is cheap, so fixed costs weigh
more than on SD 1.5).

Run from the repository root::

    python benchmarks/diffusion_rows.py            # 32 images, 20 steps, 2 references
    python benchmarks/diffusion_rows.py --quick    # 16 images, 8 steps, 2 references

A reference's inversion is reused when more than one batch uses it (in real runs, about
``images / references / batch_size`` batches per reference: 29 for the cracks benchmark
at the default batch size), so the runs use more images than references x batch size.

Writes ``docs/benchmarks/diffusion_rows.md`` and ``diffusion_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_machine import cpu_model, git_commit, load_average  # noqa: E402


class Rows:
    """Counts the rows of every UNet call."""

    def __init__(self, unet):
        self.rows: list[int] = []
        self._h = unet.register_forward_pre_hook(
            lambda mod, a, kw: self.rows.append(int(a[0].shape[0])), with_kwargs=True
        )

    def close(self) -> None:
        self._h.remove()


def make_data(root: Path, images: int, refs: int) -> tuple[Path, Path]:
    from tests.gen_data import write_generic

    write_generic(root / "syn", [(64, 64)] * images)
    write_generic(root / "real", [(64, 64)] * refs, seed=100, tint=(30, -20, 10))
    return root / "syn", root / "real"


def bench_styleid(model_dir: Path, syn: Path, real: Path, args) -> list[dict]:
    from synth2real.data.readers import open_dataset
    from synth2real.methods import create_method
    from synth2real.translate import choose_references, load_references, plan_batches

    ds, refs = open_dataset(syn), load_references(real)
    images = [ds.image(s) for s in ds.samples]
    labels = [ds.label(s) for s in ds.samples]
    assign = choose_references([s.name for s in ds.samples], refs)
    batches = plan_batches(list(range(len(ds))), assign, args.batch_size)
    out = []
    for variant, params, reset in (
        ("styles inverted with every batch (before)", {}, True),
        ("reference cache (default)", {}, False),
        ("cache, no room for keys/values (style_cache_gb=0)", {"style_cache_gb": 0}, False),
    ):
        m = create_method(
            "styleid",
            model=str(model_dir),
            working_size=64,
            num_inference_steps=args.steps,
            batch_size=args.batch_size,
            **params,
        )
        m.prepare(refs)
        counter = Rows(m.models.unet)
        t0 = time.perf_counter()
        for b in batches:
            if reset:
                m._style_cache = None  # a fresh cache per batch = the old structure
            idx = [i for i, _ in b]
            m.apply_batch([images[i] for i in idx], [labels[i] for i in idx], [r for _, r in b])
        seconds = time.perf_counter() - t0
        counter.close()
        out.append(
            {
                "variant": variant,
                "images": len(images),
                "rows": sum(counter.rows),
                "rows_per_image": sum(counter.rows) / len(images),
                "seconds_per_image": seconds / len(images),
            }
        )
        m.close()
    return out


def bench_grouping(model_dir: Path, syn: Path, real: Path, work: Path, args) -> list[dict]:
    from synth2real import translate as tr
    from synth2real.data.readers import open_dataset
    from synth2real.methods import create_method
    from synth2real.translate import runner

    def ungrouped(todo, assignment, batch_size):
        return [
            [(i, assignment[i]) for i in todo[k : k + batch_size]]
            for k in range(0, len(todo), batch_size)
        ]

    out = []
    for preset in ("cross-image", "cactif"):
        for variant, plan in (
            ("grouped by reference (default)", tr.plan_batches),
            ("dataset order (before)", ungrouped),
        ):
            m = create_method(
                preset,
                model=str(model_dir),
                working_size=64,
                num_inference_steps=args.steps,
                skip=args.steps // 2,
                classwise_steps=(1, 3),
                batch_size=args.batch_size,
            )
            counter = Rows(m.models.unet)
            original, runner.plan_batches = runner.plan_batches, plan  # what the run calls
            try:
                summary = tr.translate_dataset(
                    open_dataset(syn),
                    tr.load_references(real),
                    m,
                    work / f"{preset}-{plan.__name__}",
                    progress=False,
                )
            finally:
                runner.plan_batches = original
                counter.close()
            out.append(
                {
                    "preset": preset,
                    "variant": variant,
                    "images": summary.written,
                    "rows": sum(counter.rows),
                    "rows_per_image": sum(counter.rows) / summary.written,
                    "seconds_per_image": summary.seconds_per_image,
                }
            )
            m.close()
    return out


def bench_filtered_layer(args) -> dict:
    import torch.nn.functional as F

    from synth2real.diffusion.filtering import filtered_attention

    b, u, h, n, d = 1, 1, 8, args.tokens, 40
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2 * b + u, h, n, d, generator=g) for _ in range(3))
    c = slice(b + u, None)

    def before():
        rest = F.scaled_dot_product_attention(q[b:], k[b:], v[b:])
        out = filtered_attention(q[:b], k[b : b + u], v[b : b + u], q[c], k[c], v[c])
        return torch.cat([out, rest])

    def now():
        style = F.scaled_dot_product_attention(q[b : b + u], k[b : b + u], v[b : b + u])
        out, content = filtered_attention(
            q[:b], k[b : b + u], v[b : b + u], q[c], k[c], v[c], return_content=True
        )
        return torch.cat([out, style, content])

    times: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(args.repeats):
        for name, fn in (("before", before), ("now", now)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    diff = float((before() - now()).abs().max())
    return {
        "shape": {"batch_rows": 2 * b + u, "heads": h, "tokens": n, "head_dim": d},
        "seconds_before_median": float(np.median(times["before"])),
        "seconds_now_median": float(np.median(times["now"])),
        "repeats": args.repeats,
        "max_abs_diff": diff,
    }


def write_markdown(path: Path, record: dict) -> None:
    cfg = record["config"]
    lines = [
        "# UNet rows per image: StyleID's reference cache and the runner's grouping",
        "",
        "Generated by `benchmarks/diffusion_rows.py`"
        + (" (quick mode)" if cfg["quick"] else "")
        + f" at commit {record['commit']}, {record['date']}. Do not edit by hand.",
        "",
        f"Tiny random model on the CPU ({record['machine']['cpu']}, {cfg['threads']} thread(s), "
        f"load average {record['machine']['load']}), working size 64, {cfg['steps']} steps, "
        f"batches of {cfg['batch_size']}, {cfg['images']} images, {cfg['references']} references "
        "chosen round-robin. Row counts are exact; times only compare the variants on this "
        "machine (a shared machine: expect noise).",
        "",
        "## StyleID",
        "",
        "| variant | UNet rows / image | s / image |",
        "|---|---|---|",
    ]
    for r in record["styleid"]:
        lines.append(
            f"| {r['variant']} | {r['rows_per_image']:.2f} | {r['seconds_per_image']:.3f} |"
        )
    lines += [
        "",
        "## translate: batches grouped by reference",
        "",
        "| preset | batches | UNet rows / image | s / image (incl. reading and writing) |",
        "|---|---|---|---|",
    ]
    for r in record["grouping"]:
        lines.append(
            f"| {r['preset']} | {r['variant']} | {r['rows_per_image']:.2f} | "
            f"{r['seconds_per_image']:.3f} |"
        )
    f = record["filtered_layer"]
    s = f["shape"]
    lines += [
        "",
        "## A filtered attention layer: content attention from the filter's pass",
        "",
        f"One CACTIF layer call, {s['batch_rows']} rows (out, style, content), {s['heads']} "
        f"heads, {s['tokens']} tokens, head dim {s['head_dim']}, median of {f['repeats']}: "
        f"before {f['seconds_before_median']:.3f} s, now {f['seconds_now_median']:.3f} s, "
        f"max abs difference {f['max_abs_diff']:.1e}.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 images, 8 steps, 2 references")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--references", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=4096, help="filtered layer: tokens")
    ap.add_argument("--repeats", type=int, default=5, help="filtered layer: repeats")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs" / "benchmarks")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.references, args.steps = 16, 2, 8
        args.tokens, args.repeats = 1024, 3
    torch.set_num_threads(args.threads)
    from tests.diffusion.tiny import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = save_tiny_model(work / "tiny-sd")
        syn, real = make_data(work, args.images, args.references)
        styleid = bench_styleid(model_dir, syn, real, args)
        grouping = bench_grouping(model_dir, syn, real, work, args)
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": {"cpu": cpu_model(), "load": load_average()},
        "config": {
            "quick": args.quick,
            "images": args.images,
            "references": args.references,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "threads": args.threads,
        },
        "styleid": styleid,
        "grouping": grouping,
        "filtered_layer": bench_filtered_layer(args),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "diffusion_rows" + ("_quick" if args.quick else "")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(args.out_dir / f"{stem}.md", record)
    print(f"wrote {args.out_dir / stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
