#!/usr/bin/env python3
"""The pilot's segmentation training on one device: steps/s and peak memory at crop 512.

    python benchmarks/gpu_train.py             # small-unet-add, small-unet, segformer (MiT-b0)
    python benchmarks/gpu_train.py --smoke     # crop 64, batch 2, on the CPU: checks the code

Used by ``benchmarks/gpu_diffusion.py`` (its "training" section), so one run on a lent
GPU gives the diffusion and the training numbers; alone it prints a table and writes
nothing. Each model trains as ``segment.train.train`` does (AdamW, ce+dice loss, bf16
autocast on CUDA where supported, else fp16 with a grad scaler; channels_last for
the small UNets), at crop 512 on random batches that already lie on the device: the model's throughput,
without decoding and cropping (on a GPU those run on the CPU, in train's prefetch
thread). Random init (no weights are downloaded: time and memory do not depend on them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

MODELS = ("small-unet-add", "small-unet", "segformer")


def time_model(name: str, device, *, crop: int, batch: int, steps: int, warmup: int) -> dict:
    """Train ``name`` for ``warmup`` + ``steps`` steps on random batches; steps/s, peak."""
    import torch

    from synth2real.segment.losses import segmentation_loss
    from synth2real.segment.models import create_model, get_model_entry

    torch.manual_seed(0)
    kw = {"pretrained": False} if name == "segformer" else {}
    model = create_model(name, 2, **kw).to(device)
    if name != "segformer":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=get_model_entry(name).default_lr)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if not cuda or torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and dtype is torch.float16)
    x = torch.rand(batch, 3, crop, crop, device=device)
    y = (torch.rand(batch, crop, crop, device=device) > 0.97).long()

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            logits = model(x)
        loss = segmentation_loss(logits, y, ignore_index=255, loss="ce+dice")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    out = {
        "model": name,
        "crop": crop,
        "batch": batch,
        "steps": steps,
        "autocast": str(dtype) if cuda else "off (fp32)",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    try:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        out["steps_per_s"] = steps / (time.perf_counter() - t0)
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device) if cuda else None
    except torch.OutOfMemoryError:
        out["oom"] = True
    finally:
        model.to("cpu")  # the next model gets the device's memory
        opt.state.clear()
        if cuda:
            torch.cuda.empty_cache()
    return out


def time_training(device, *, smoke: bool) -> list[dict]:
    crop, batch, steps, warmup = (64, 2, 2, 1) if smoke else (512, 8, 30, 5)
    return [
        time_model(m, device, crop=crop, batch=batch, steps=steps, warmup=warmup) for m in MODELS
    ]


def markdown(rows: list[dict]) -> list[str]:
    """The "training" section of gpu_diffusion.md."""
    lines = [
        "## Segmentation training (the pilot's models)",
        "",
        "Bare training steps on random batches already on the device (AdamW, ce+dice; "
        "decoding and cropping not included), random init, after a warm-up "
        "(`benchmarks/gpu_train.py`).",
        "",
        "| model | parameters | crop | batch | autocast | steps/s | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sps = "OOM" if r.get("oom") else f"{r['steps_per_s']:.2f}"
        peak = r.get("peak_bytes")
        mem = "-" if peak is None else f"{peak / 2**30:.2f} GiB"
        lines.append(
            f"| {r['model']} | {r['parameters'] / 1e6:.2f}M | {r['crop']} | {r['batch']} | "
            f"{r['autocast']} | {sps} | {mem} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="crop 64, batch 2, 2 steps")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from synth2real.segment.device import resolve_device

    device = resolve_device("cpu" if args.smoke and args.device == "auto" else args.device)
    print("\n".join(markdown(time_training(device, smoke=args.smoke))))


if __name__ == "__main__":
    main()
