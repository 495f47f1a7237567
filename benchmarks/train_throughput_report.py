"""The report of ``benchmarks/train_throughput.py``: the markdown tables and the estimate
of the full cracks benchmark's wall time (kept apart so each file has one job)."""

from __future__ import annotations

#: the pilot's default budget (pilot/config.py DEFAULT_BUDGET) without its iterations
BUDGET = {"batch_size": 8, "crop": 128, "max_size": 256}


def render(p: dict) -> str:
    f = "{:.2f}".format
    tr = p["train"]
    first = next(iter(tr))
    base = tr[first]["steps_per_s"]
    default = p.get("default_model", "small-unet")
    path = p.get("default_row", f"{default}, fp32, channels_last")  # older runs: fp32
    lines = [
        "# small-unet and small-unet-add throughput on the CPU: training and evaluation",
        "",
        f"Written by `benchmarks/train_throughput.py` ({p['mode']} mode). Machine at start: "
        f"{p['machine_start']}; load avg at end "
        + "/".join(f"{x:g}" for x in p["machine_end"].get("load_avg") or [])
        + ". "
        + (
            "Other jobs shared the cores: timings are noisier and slower than on a quiet machine. "
            # the load at start: at the end it holds this script's own two-job rows
            if (p["machine_start_info"].get("load_avg") or [0])[0] > 1.0
            else ""
        )
        + f"Seed {p['seed']}; {p['iters']} timed steps per training row; commit {p['commit']}.",
        "",
        f"Budget: batch {BUDGET['batch_size']}, crop {BUDGET['crop']}, max_size "
        f"{BUDGET['max_size']}, cracks source ({p['n_source']} images) + the 10 references "
        "mixed 50/50; images in the RAM cache; 1 torch thread unless the row says otherwise. "
        f"The default model of `train` and the pilot: {default}.",
        "",
        "## Training (`segment.train.train`, end to end)",
        "",
        f"| path | steps/s | x {first} | final loss |",
        "|---|---|---|---|",
    ]
    for name, r in tr.items():
        mark = (
            " (default)" if name == p.get("default_row", f"{default}, fp32, channels_last") else ""
        )
        lines.append(
            f"| {name}{mark} | {f(r['steps_per_s'])} | {f(r['steps_per_s'] / base)} | "
            f"{r['final_loss']:.3f} |"
        )
    lines += [
        "",
        "## torch.compile (bare step loop on prepared batches)",
        "",
        "| path | steps/s | warm-up s (incl. compile) | compile s |",
        "|---|---|---|---|",
    ]
    lines += [_compile_row(name, r) for name, r in p["compile"].items()]
    before = p.get("compile_before")
    if before:
        lines += [
            "",
            f"Not compiled in this run (`--no-compile`); measured by the run of commit "
            f"{before['commit']} on {before['machine']} (small-unet):",
            "",
            "| path | steps/s | warm-up s (incl. compile) | compile s |",
            "|---|---|---|---|",
        ]
        lines += [_compile_row(name, r) for name, r in before["rows"].items()]
    d = p["data"]
    lines += [
        "",
        "## Data side (per step of 8 crops)",
        "",
        "| part | ms |",
        "|---|---|",
        f"| build a batch from the RAM cache (scale, crop, flip) | {1e3 * d['batch_seconds']:.1f} |",
        f"| decode one image (cold cache; once per image per process) | "
        f"{1e3 * d['decode_seconds_per_image']:.1f} |",
        f"| {default} model step fp32 (bare loop) | {1e3 / d['model_fp32_steps_per_s']:.1f} |",
        f"| {default} model step bf16 (bare loop) | {1e3 / d['model_bf16_steps_per_s']:.1f} |",
        f"| train() step of the default path ({path}), prefetch on | "
        f"{1e3 / d['train_prefetch_steps_per_s']:.1f} |",
        f"| train() step of the default path ({path}), prefetch off | "
        f"{1e3 / d['train_no_prefetch_steps_per_s']:.1f} |",
        "",
        "## Jobs x torch threads (steps/s summed over the jobs running at once)",
        "",
        "| path | 1 job x 1 thread | 1 job x 2 threads | 2 jobs x 1 thread |",
        "|---|---|---|---|",
    ]
    for path, r in p["jobs"].items():
        lines.append(
            f"| {path} | "
            + " | ".join(f(r[k]["total_steps_per_s"]) for k in ("1x1", "1x2", "2x1"))
            + " |"
        )
    ev = p["eval"]
    lines += [
        "",
        f"## Evaluation ({p['n_test']} cracks test images in {len(ev['image_sizes'])} "
        f"distinct sizes, {_size_range(ev['image_sizes'])}; inference at max_size "
        f"{BUDGET['max_size']}, scores at full size; a batch holds images of one size)",
        "",
        f"Decoding an image and its label: {1e3 * ev['decode_seconds_per_image']:.1f} ms "
        "(inside `evaluate`, not in the loop rows).",
        "",
        "| path | images/s | crack IoU |",
        "|---|---|---|",
    ]
    for name, r in ev.items():
        if isinstance(r, dict):
            lines.append(f"| {name} | {f(r['images_per_s'])} | {r['iou_cracks']:.4f} |")
    lines += [
        "",
        "The full cracks benchmark's wall time with the default path is measured by "
        "`benchmarks/pilot_cracks.py --full` itself (docs/RESULTS.md).",
    ]
    lines += ["", f"Raw numbers: `{p['stem']}.json`.", ""]
    return "\n".join(lines)


def _compile_row(name: str, r: dict) -> str:
    if "error" in r:
        return f"| {name} | failed: {r['error']} | | |"
    c = r["compile_seconds"]
    return (
        f"| {name} | {r['steps_per_s']:.2f} | {r['warmup_seconds']:.1f} | "
        f"{'' if c is None else f'{c:.1f}'} |"
    )


def _size_range(sizes: list[str]) -> str:
    hw = sorted((int(a) * int(b), f"{a}x{b}") for a, b in (x.split("x") for x in sizes))
    return hw[0][1] if len(hw) == 1 else f"{hw[0][1]} to {hw[-1][1]}"
