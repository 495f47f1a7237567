#!/usr/bin/env python3
"""Training and evaluation throughput of small-unet on the CPU, side by side.

    python benchmarks/train_throughput.py           # ~6 min on 2 quiet cores
    python benchmarks/train_throughput.py --quick   # ~1.5 min: checks the script

At the pilot's default budget (batch 8, 128 px crops of cracks images shrunk to a 256 px
shorter side, ``pilot/config.py`` DEFAULT_BUDGET), one torch thread (what each of the
pilot's two jobs gets on 2 cores) unless said otherwise:

1. **training** steps/s through ``segment.train.train`` itself (data, prefetch thread,
   optimiser) for ``small-unet`` (the default before) in fp32 with and without
   ``channels_last`` and with bf16 autocast (``cpu_amp``), and for ``small-unet-add`` (the
   default now, bf16 where the CPU has native bf16) in fp32 and bf16; the images are in the RAM cache (decoded beforehand);
2. **torch.compile** of the default model (a bare step loop on prepared batches, beside the same
   loop uncompiled): the compile time (first steps) and the steps/s after it;
3. **data side**: per step, the time to build a batch from the cache (crop, scale, flip),
   the time to decode one image (cold cache), the model step alone; and the end-to-end
   step with and without the prefetch thread;
4. **jobs x threads**: steps/s summed over processes for 1 job x 1 thread, 1 x 2 and
   2 x 1 (two processes at once): small-unet fp32, small-unet-add fp32 and bf16;
5. **evaluation** of the 60 cracks test images (inference at the training ``max_size``,
   scores at the images' own resolution): ``segment.evaluate.evaluate`` as the pilot
   calls it, and a loop on decoded images with ``torch.no_grad`` vs
   ``torch.inference_mode``, channels_last, bf16 and batches of same-size images (with
   the crack IoU of each, to show the scores do not move).

Writes ``docs/benchmarks/train_throughput.md`` and ``.json`` (``_quick`` in quick mode)
with the machine line, load average at start and end, and the seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads

from train_throughput_report import BUDGET, render  # noqa: E402

from synth2real.segment.config import TrainConfig  # noqa: E402

OUT = REPO / "docs" / "benchmarks"
__all__ = ["BUDGET", "render"]
#: the model the pilot and ``train`` use by default, and the one it replaced
DEFAULT_MODEL, PREVIOUS_MODEL = TrainConfig().model, "small-unet"
#: ``train()`` rows: (name, TrainConfig fields); the first is the baseline of "x" columns
TRAIN_ROWS = [
    (f"{PREVIOUS_MODEL}, fp32, channels_last", {"model": PREVIOUS_MODEL, "cpu_amp": False}),
    (
        f"{PREVIOUS_MODEL}, fp32, contiguous (channels_last=false)",
        {"model": PREVIOUS_MODEL, "channels_last": False, "cpu_amp": False},
    ),
    (f"{PREVIOUS_MODEL}, bf16 autocast (cpu_amp=true)", {"model": PREVIOUS_MODEL, "cpu_amp": True}),
    ("small-unet-add, fp32, channels_last", {"model": "small-unet-add", "cpu_amp": False}),
    ("small-unet-add, bf16 autocast (cpu_amp=true)", {"model": "small-unet-add", "cpu_amp": True}),
]
#: jobs x threads rows: (model, bf16)
JOB_ROWS = [(PREVIOUS_MODEL, False), ("small-unet-add", False), ("small-unet-add", True)]


def p_stem(args: argparse.Namespace) -> str:
    return "train_throughput" + ("_quick" if args.quick else "")


def previous_compile_rows(path: Path) -> dict | None:
    """The torch.compile rows of an earlier run (``--no-compile`` keeps them, with the
    commit and machine they were measured on), or ``None``."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("compile_before"):
        return old["compile_before"]
    rows = {k: v for k, v in old.get("compile", {}).items() if "torch.compile" in k}
    if not rows:
        return None
    return {"rows": old["compile"], "commit": old.get("commit"), "machine": old["machine_start"]}


def default_row() -> str:
    """The training row of the default path on this CPU: the default model, channels_last,
    bf16 autocast where the CPU has native bf16 (``cpu_amp="auto"``), else fp32."""
    from synth2real.segment.device import native_cpu_bf16

    if native_cpu_bf16():
        return f"{DEFAULT_MODEL}, bf16 autocast (cpu_amp=true)"
    return f"{DEFAULT_MODEL}, fp32, channels_last"


def default_cracks() -> Path:
    from pilot_cracks import default_cracks as dc

    return dc()


def open_data(cracks: Path, n_source: int, n_test: int):
    from synth2real.data.readers import open_dataset

    splits = json.loads((cracks / "splits.json").read_text(encoding="utf-8"))
    source = open_dataset(cracks / splits["source"])
    source = source.select([s.name for s in source.samples[:n_source]])
    val = open_dataset(cracks / "validation")
    refs = val.select(list(splits["references"]))
    test = val.select(list(splits["test"])[:n_test])
    return source, refs, test


def train_cfg(iters: int, **kw):
    from synth2real.segment.config import make_config

    return make_config(
        {
            **BUDGET,
            "iterations": iters,
            "save_every": 10**6,
            "device": "cpu",
            "real_fraction": 0.5,
            "seed": 0,
            **kw,
        }
    )


def warm_cache(datasets, max_size: int) -> float:
    """Decode every image into the RAM cache; seconds per image."""
    from synth2real.segment.sampling import SampleLoader

    t0, n = time.perf_counter(), 0
    for d in datasets:
        loader = SampleLoader(d, max_size)
        for i in range(len(loader)):
            loader.load(i)
            n += 1
    return (time.perf_counter() - t0) / max(n, 1)


def time_train(datasets, iters: int, **kw) -> dict:
    """steps/s of ``train()`` (its own wall time, model creation excluded)."""
    from synth2real.segment.train import train

    with tempfile.TemporaryDirectory() as tmp:
        res = train(datasets, train_cfg(iters, **kw), Path(tmp) / "m", resume=False, progress=False)
    return {
        "steps_per_s": iters / res.seconds,
        "seconds": res.seconds,
        "iterations": iters,
        "final_loss": res.losses[-1],
    }


def make_batches(datasets, n: int):
    from synth2real.segment.recipes import BatchSampler
    from synth2real.segment.sampling import SampleLoader, mixing_weights
    from synth2real.segment.train import _make_batch

    cfg = train_cfg(n)
    loaders = [SampleLoader(d, cfg.max_size) for d in datasets]
    probs = mixing_weights([len(d) for d in datasets], None, 0.5)
    classes = datasets[0].classes
    sampler = BatchSampler(loaders, probs, cfg, classes.num_classes, classes.ignore_index)
    t0 = time.perf_counter()
    batches = [_make_batch(sampler, i) for i in range(n)]
    sec = (time.perf_counter() - t0) / n
    return [(b.images, b.labels) for b in batches], sec


def step_loop(
    batches,
    *,
    bf16: bool,
    channels_last: bool = True,
    compile_: bool = False,
    warm: int = 3,
    model_name: str = "small-unet",
    num_classes: int = 2,
) -> dict:
    """A bare training loop (model, loss, AdamW) on prepared batches."""
    import torch

    from synth2real.segment.losses import segmentation_loss
    from synth2real.segment.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    fwd = torch.compile(model) if compile_ else model
    xs = []
    for img, lab in batches:
        x = torch.from_numpy(img).permute(0, 3, 1, 2).float().div_(255)
        xs.append((x if channels_last else x.contiguous(), torch.from_numpy(lab).long()))

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = fwd(x)
        loss = segmentation_loss(logits, y, ignore_index=255, loss="ce+dice")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for x, y in xs[:warm]:
        step(x, y)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x, y in xs[warm:]:
        step(x, y)
    n = len(xs) - warm
    sps = n / (time.perf_counter() - t0)
    return {
        "steps_per_s": sps,
        "warmup_seconds": first,
        "compile_seconds": max(0.0, first - warm / sps) if compile_ else None,
    }


# -- evaluation ------------------------------------------------------------------------------
def eval_loop(
    model,
    decoded,
    k: int,
    max_size: int,
    *,
    batch: int = 1,
    bf16: bool = False,
    inference_mode: bool = True,
    ignore_index: int = 255,
) -> dict:
    """``evaluate``'s maths on decoded images: shrink to ``max_size``, pad to the stride,
    softmax, upsample to full size, argmax, one confusion matrix; images of one size are
    batched ``batch`` at a time."""
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F

    from synth2real.segment import metrics
    from synth2real.segment.infer import _pad_to

    groups: dict[tuple, list] = {}
    for img, lab in decoded:
        groups.setdefault(img.shape, []).append((img, lab))
    cm = np.zeros((k, k), dtype=np.int64)
    ctx = torch.inference_mode if inference_mode else torch.no_grad
    t0 = time.perf_counter()
    with ctx():
        for items in groups.values():
            for j in range(0, len(items), batch):
                chunk = items[j : j + batch]
                h0, w0 = chunk[0][0].shape[:2]
                s = max_size / min(h0, w0)
                imgs = [
                    cv2.resize(im, (round(w0 * s), round(h0 * s)), interpolation=cv2.INTER_AREA)
                    if s < 1
                    else im
                    for im, _ in chunk
                ]
                x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255)
                h, w = x.shape[-2:]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = model(_pad_to(x, model.stride))
                probs = logits[..., :h, :w].float().softmax(1)
                if (h, w) != (h0, w0):
                    probs = F.interpolate(
                        probs, size=(h0, w0), mode="bilinear", align_corners=False
                    )
                pred = probs.argmax(1).to(torch.uint8).numpy()
                for p, (_, lab) in zip(pred, chunk, strict=True):
                    cm += metrics.confusion_matrix(p, lab, k, ignore_index)
    sec = time.perf_counter() - t0
    iou = metrics.iou_from_confusion(cm)
    return {
        "images_per_s": len(decoded) / sec,
        "seconds": sec,
        "iou": iou.tolist(),
        "iou_cracks": float(iou[1]),
    }


def time_eval(ckpt: Path, test, max_size: int, quick: bool) -> dict:
    import torch

    from synth2real.segment.checkpoint import load_checkpoint
    from synth2real.segment.evaluate import evaluate

    out: dict = {}
    t0 = time.perf_counter()
    decoded = [test.pair(s) for s in test.samples]
    out["decode_seconds_per_image"] = (time.perf_counter() - t0) / len(decoded)
    out["image_sizes"] = sorted({f"{im.shape[0]}x{im.shape[1]}" for im, _ in decoded})
    ev = evaluate(ckpt, test, device="cpu", progress=False)
    out["evaluate (pilot path: decode + fp32, inference_mode, 1 image)"] = {
        "images_per_s": len(test) / ev.seconds,
        "seconds": ev.seconds,
        "iou_cracks": ev.iou_of("cracks"),
    }
    model, _ = load_checkpoint(ckpt, "cpu")
    variants = [
        ("loop: fp32, no_grad, 1 image", dict(inference_mode=False), False),
        ("loop: fp32, inference_mode, 1 image", {}, False),
        ("loop: fp32, channels_last, 1 image", {}, True),
        ("loop: bf16, channels_last, 1 image", dict(bf16=True), True),
        ("loop: fp32, channels_last, batch 4", dict(batch=4), True),
        ("loop: bf16, channels_last, batch 4", dict(batch=4, bf16=True), True),
    ]
    if quick:
        variants = [variants[1], variants[3], variants[5]]
    for name, kw, cl in variants:
        model = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        out[name] = eval_loop(model, decoded, 2, max_size, **kw)
    return out


# -- jobs x threads (subprocesses) -----------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    source, refs, _ = open_data(Path(args.cracks), args.n_source, 1)
    warm_cache([source, refs], BUDGET["max_size"])
    kw = {"cpu_amp": args.bf16, "model": args.model}
    time_train([source, refs], 3, **kw)  # first steps: allocator, kernels
    r = time_train([source, refs], args.iters, **kw)
    print("RESULT " + json.dumps(r), flush=True)


def jobs_threads(args: argparse.Namespace, bf16: bool, model: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--cracks",
        str(args.cracks),
        "--iters",
        str(args.iters),
        "--n-source",
        str(args.n_source),
        "--model",
        model,
    ]
    cmd += ["--bf16"] if bf16 else []
    out = {}
    for jobs, threads in ((1, 1), (1, 2), (2, 1)):
        procs = [
            subprocess.Popen([*cmd, "--threads", str(threads)], stdout=subprocess.PIPE, text=True)
            for _ in range(jobs)
        ]
        rates = []
        for p in procs:
            text, _ = p.communicate()
            line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            if p.returncode or not line:
                raise SystemExit(f"worker failed ({p.returncode})")
            rates.append(json.loads(line[0][7:])["steps_per_s"])
        out[f"{jobs}x{threads}"] = {"per_job": rates, "total_steps_per_s": sum(rates)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps, 12 test images")
    ap.add_argument("--cracks", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=DEFAULT_MODEL, help=argparse.SUPPRESS)
    ap.add_argument("--iters", type=int, default=None, help="timed steps per training row")
    ap.add_argument("--n-source", type=int, default=None)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    args.cracks = Path(args.cracks) if args.cracks else default_cracks()
    args.iters = args.iters or (12 if args.quick else 60)
    args.n_source = args.n_source or (48 if args.quick else 256)
    if args.worker:
        worker(args)
        return
    if args.render_only:
        from synth2real.data.io import atomic_write_text

        stem = "train_throughput" + ("_quick" if args.quick else "")
        p = json.loads((OUT / f"{stem}.json").read_text(encoding="utf-8"))
        atomic_write_text(OUT / f"{stem}.md", render(p))
        return

    import torch
    from bench_machine import git_commit

    from synth2real.data.io import atomic_write_text
    from synth2real.pilot.machine import describe_machine, machine_info

    torch.set_num_threads(args.threads)
    start = machine_info("cpu")
    n_test = 12 if args.quick else 60
    source, refs, test = open_data(args.cracks, args.n_source, n_test)
    data = [source, refs]
    p: dict = {
        "mode": "quick" if args.quick else "full",
        "seed": 0,
        "iters": args.iters,
        "n_source": args.n_source,
        "n_test": n_test,
        "commit": git_commit(),
        "machine_start": describe_machine(start),
        "machine_start_info": start,
    }
    t0 = time.perf_counter()
    decode = warm_cache(data, BUDGET["max_size"])
    time_train(data, 3)  # first steps of the process: allocator, oneDNN kernels
    p["default_model"] = DEFAULT_MODEL
    p["default_row"] = default_row()  # the report marks it
    p["train"] = {}
    for name, kw in TRAIN_ROWS:
        p["train"][name] = time_train(data, args.iters, **kw)
        print(name, p["train"][name], flush=True)
    no_prefetch = time_train(data, args.iters, prefetch=False)
    batches, batch_s = make_batches(data, args.iters + 3)
    p["compile"] = {}
    for bf16 in (False, True):
        tag = f"{DEFAULT_MODEL}, {'bf16' if bf16 else 'fp32'}"
        kw = {"bf16": bf16, "model_name": DEFAULT_MODEL}
        p["compile"][f"{tag}, eager"] = step_loop(batches, **kw)
        if not args.no_compile:
            try:
                p["compile"][f"{tag}, torch.compile"] = step_loop(batches, compile_=True, **kw)
            except Exception as e:  # no compiler here: say so
                p["compile"][f"{tag}, torch.compile"] = {"error": str(e).splitlines()[0][:200]}
        print(tag, p["compile"], flush=True)
    if args.no_compile:  # keep the compile rows of the last run that measured them
        p["compile_before"] = previous_compile_rows(OUT / f"{p_stem(args)}.json")
    p["data"] = {
        "batch_seconds": batch_s,
        "decode_seconds_per_image": decode,
        "model_fp32_steps_per_s": p["compile"][f"{DEFAULT_MODEL}, fp32, eager"]["steps_per_s"],
        "model_bf16_steps_per_s": p["compile"][f"{DEFAULT_MODEL}, bf16, eager"]["steps_per_s"],
        "train_prefetch_steps_per_s": p["train"][p["default_row"]]["steps_per_s"],
        "train_no_prefetch_steps_per_s": no_prefetch["steps_per_s"],
    }
    # a checkpoint to evaluate: the current path, a few more steps than the timed rows
    from synth2real.segment.train import train

    with tempfile.TemporaryDirectory() as tmp:
        res = train(data, train_cfg(3 * args.iters), Path(tmp) / "m", resume=False, progress=False)
        p["eval"] = time_eval(res.checkpoint, test, BUDGET["max_size"], args.quick)
    print("eval", p["eval"], flush=True)
    p["jobs"] = {
        f"{m}, {'bf16' if bf16 else 'fp32'}": jobs_threads(args, bf16, m) for m, bf16 in JOB_ROWS
    }
    p["seconds"] = time.perf_counter() - t0
    p["machine_end"] = machine_info("cpu")
    p["stem"] = p_stem(args)
    atomic_write_text(OUT / f"{p['stem']}.json", json.dumps(p, indent=1, default=str) + "\n")
    atomic_write_text(OUT / f"{p['stem']}.md", render(p))
    print(render(p))


if __name__ == "__main__":
    main()
