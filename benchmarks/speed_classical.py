"""Images per second of every classical method, next to albumentations' global transforms.

Run from the repository root::

    python benchmarks/speed_classical.py            # full: 8 images x 5 rounds per size
    python benchmarks/speed_classical.py --quick    # 2 images x 2 rounds (shared machines)

Writes ``docs/benchmarks/speed_classical.md`` and ``speed_classical.json`` (machine, CPU,
threads, library versions, load average, raw timings). Content images are synthetic
street-like scenes with realistic label maps: a large background, a road region, a few
blobs, and thin classes (crack polylines 2-4 px wide, poles); references are five
scenes of other sizes and a colour cast. Every method sees the same images in the same
run. Timings are per image, after ``prepare`` (reported separately), single-threaded
OpenCV by default (``--threads``): ``translate --workers N`` parallelises over images,
so one thread per process is how the methods run in practice.

albumentations is called as users call it (``transform(image=..., refs=[ref])``,
uint8 in and out): its per-call cost includes resizing the reference to the content's
size, which ours avoid by preparing statistics once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from synth2real import __version__  # noqa: E402
from synth2real.data.classes import ClassSpec  # noqa: E402
from synth2real.methods import References, create_method  # noqa: E402
from synth2real.pilot.machine import cpu_model  # noqa: E402

CLASSES = ClassSpec(("background", "road", "sidewalk", "crack", "pole"))
OURS = [
    ("none", "global"),
    ("reinhard", "global"),
    ("reinhard-cw", "class-wise"),
    ("reinhard-cwc", "class-wise"),
    ("histmatch", "global"),
    ("histmatch-cw", "class-wise"),
    ("histmatch-cwc", "class-wise"),
    ("fda", "global"),
]
#: our method -> the albumentations transform doing the same thing globally
COUNTERPART = {
    "reinhard": "A.PixelDistributionAdaptation",
    "reinhard-cw": "A.PixelDistributionAdaptation",
    "reinhard-cwc": "A.PixelDistributionAdaptation",
    "histmatch": "A.HistogramMatching",
    "histmatch-cw": "A.HistogramMatching",
    "histmatch-cwc": "A.HistogramMatching",
    "fda": "A.FDA",
}


def scene(h: int, w: int, seed: int, tint=(0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """A textured street-like scene and its label map (5 classes incl. two thin ones)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    road = np.array(
        [[0, h], [int(w * 0.35), int(h * 0.45)], [int(w * 0.65), int(h * 0.45)], [w, h]]
    )
    cv2.fillPoly(label, [road.astype(np.int32)], 1)
    for _ in range(4):
        c = (int(rng.integers(0, w)), int(rng.integers(h // 2, h)))
        cv2.ellipse(label, c, (int(w * 0.08), int(h * 0.04)), 0, 0, 360, 2, -1)
    for _ in range(6):  # cracks: thin polylines on the road
        pts = np.cumsum(rng.normal(0, h * 0.03, (8, 2)), 0) + [w / 2, h * 0.75]
        cv2.polylines(label, [pts.astype(np.int32)], False, 3, int(rng.integers(2, 5)))
    for _ in range(3):  # poles: thin vertical bars
        x = int(rng.integers(0, w))
        cv2.line(label, (x, int(h * 0.2)), (x, int(h * 0.6)), 4, max(2, w // 300))
    base = np.array(
        [[150, 170, 200], [90, 90, 95], [140, 130, 120], [40, 38, 36], [70, 70, 80]], float
    )
    base = base + np.asarray(tint, float)
    yy = np.linspace(-25, 25, h)[:, None, None]
    noise = cv2.GaussianBlur(rng.normal(0, 18, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    img = base[label] + yy + noise
    return np.clip(img, 0, 255).astype(np.uint8), label


def references() -> References:
    sizes = [(600, 800), (480, 640), (768, 1024), (720, 540), (512, 900)]
    pairs = [scene(h, w, 100 + i, tint=(25, -10, -20)) for i, (h, w) in enumerate(sizes)]
    return References(
        [p[0] for p in pairs], [p[1] for p in pairs], [f"ref{i}" for i in range(5)], CLASSES
    )


def albumentations_transforms():
    import albumentations as A

    return {
        "A.FDA": A.FDA(beta_limit=(0.01, 0.01), metadata_key="refs", p=1.0),
        "A.HistogramMatching": A.HistogramMatching(
            blend_ratio=(1.0, 1.0), metadata_key="refs", p=1.0
        ),
        "A.PixelDistributionAdaptation": A.PixelDistributionAdaptation(
            blend_ratio=(1.0, 1.0), transform_type="standard", metadata_key="refs", p=1.0
        ),
    }


def time_calls(fn, items, rounds: int) -> list[float]:
    """Per-image seconds of ``fn(item)`` over ``rounds`` passes (after one warm-up call)."""
    fn(items[0])
    out = []
    for _ in range(rounds):
        for it in items:
            t = time.perf_counter()
            fn(it)
            out.append(time.perf_counter() - t)
    return out


def machine() -> dict:
    import scipy

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scipy": scipy.__version__,
        "synth2real": __version__,
    }
    try:
        import albumentations

        versions["albumentations"] = albumentations.__version__
    except ImportError:
        versions["albumentations"] = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "env_threads": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 images x 2 rounds per size")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument("--sizes", default="512x512,1024x2048", help="HxW,HxW")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    n_img, rounds = (2, 2) if args.quick else (8, 5)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    refs = references()
    try:
        alb = albumentations_transforms()
    except ImportError:
        alb = {}
        print("albumentations not installed: comparing our methods only", file=sys.stderr)

    load_start = os.getloadavg()
    results: dict = {"methods": {}, "prepare_seconds": {}}
    methods = {}
    for name, _kind in OURS:
        m = create_method(name)
        t = time.perf_counter()
        m.prepare(refs)
        results["prepare_seconds"][name] = time.perf_counter() - t
        methods[name] = m
    for h, w in sizes:
        key = f"{h}x{w}"
        items = [scene(h, w, i) for i in range(n_img)]
        ref0 = refs.images[0]
        for name, kind in OURS:
            m = methods[name]
            secs = time_calls(lambda it, m=m: m.apply(it[0], it[1], 0), items, rounds)
            results["methods"].setdefault(name, {"kind": kind, "ours": True})[key] = secs
            print(f"{key} {name:15s} {statistics.median(secs) * 1000:8.1f} ms/img", file=sys.stderr)
        for name, tr in alb.items():
            secs = time_calls(
                lambda it, tr=tr, r=ref0: tr(image=it[0], refs=[r])["image"], items, rounds
            )
            results["methods"].setdefault(name, {"kind": "global", "ours": False})[key] = secs
            print(f"{key} {name:15s} {statistics.median(secs) * 1000:8.1f} ms/img", file=sys.stderr)
    load_end = os.getloadavg()

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "images_per_size": n_img,
        "rounds": rounds,
        "cv2_threads": cv2.getNumThreads(),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "machine": machine(),
        "sizes": [f"{h}x{w}" for h, w in sizes],
        "references": [list(im.shape[:2]) for im in refs.images],
        "classes": list(CLASSES.names),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_classical.json").write_text(json.dumps({**info, **results}, indent=1) + "\n")
    (args.out / "speed_classical.md").write_text(render(info, results))
    print(f"wrote {args.out / 'speed_classical.md'}", file=sys.stderr)
    return 0


def render(info: dict, results: dict) -> str:
    sizes = info["sizes"]
    mach = info["machine"]
    med = {n: {s: statistics.median(r[s]) for s in sizes} for n, r in results["methods"].items()}
    lines = [
        "# Speed of the classical methods",
        "",
        "Written by `benchmarks/speed_classical.py`"
        + (" `--quick`" if info["quick"] else "")
        + f" on {info['date']}. Do not edit by hand.",
        "",
        f"- CPU: {mach['cpu']}, {mach['cores']} logical cores; {mach['platform']}",
        f"- OpenCV threads: {info['cv2_threads']} (one process; `translate --workers N` scales over images);"
        f" thread env: {mach['env_threads']}",
        f"- load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in info['load_average_start'])}, "
        f"at end {tuple(round(x, 2) for x in info['load_average_end'])}"
        + (
            " - **the machine was busy: numbers are provisional**"
            if max(info["load_average_start"][0], info["load_average_end"][0])
            > 0.5 * (mach["cores"] or 1)
            else ""
        ),
        f"- versions: {', '.join(f'{k} {v}' for k, v in mach['versions'].items())}",
        f"- {info['images_per_size']} content images per size x {info['rounds']} rounds, median per image; "
        f"5 references of sizes {info['references']} (different from the content's); classes "
        f"{info['classes']} (crack and pole are thin)",
        "",
        "| method | kind | "
        + " | ".join(f"{s} img/s | {s} ms/img" for s in sizes)
        + " | vs albumentations counterpart |",
        "|---|---|" + "---|---|" * len(sizes) + "---|",
    ]
    for name, r in results["methods"].items():
        cells = []
        for s in sizes:
            t = med[name][s]
            cells += [f"{1 / t:.1f}", f"{t * 1000:.1f}"]
        cmp_cell = ""
        other = COUNTERPART.get(name)
        if other in med:
            ratios = [med[other][s] / med[name][s] for s in sizes]
            cmp_cell = f"{' / '.join(f'{x:.1f}x' for x in ratios)} the speed of {other}"
        label = f"`{name}`" if r["ours"] else f"{name} (albumentations)"
        lines.append(f"| {label} | {r['kind']} | " + " | ".join(cells) + f" | {cmp_cell} |")
    cw = [n for n, k in OURS if k == "class-wise"]
    alb = [n for n in med if n.startswith("A.")]
    if alb:
        lines += ["", "Goal: class-wise methods at least as fast as albumentations' global ones."]
        for s in sizes:
            slowest_cw = max(cw, key=lambda n: med[n][s])
            slowest_alb = max(alb, key=lambda n: med[n][s])
            fastest_alb = min(alb, key=lambda n: med[n][s])
            lines.append(
                f"- {s}: slowest class-wise `{slowest_cw}` {med[slowest_cw][s] * 1000:.1f} ms; "
                f"albumentations from {fastest_alb} {med[fastest_alb][s] * 1000:.1f} ms to "
                f"{slowest_alb} {med[slowest_alb][s] * 1000:.1f} ms"
            )
        lines += [
            "",
            "Notes: albumentations 2.0.8's PixelDistributionAdaptation returns a black image "
            "for uint8 input (it blends a [0, 1] result into the [0, 255] image); it is timed "
            "as called, on uint8. Its FDA resizes the reference per call and runs a float "
            "FFT per channel; ours prepares the reference's low-frequency amplitude once and "
            "uses single-precision FFTs (scipy.fft).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
