"""GPU benchmark: seconds per image and peak memory of every diffusion preset, ours against
a faithful re-creation of the reference code's structure, on SD 1.5's architecture with
random weights (timing and memory do not depend on the weights; nothing is downloaded).

What runs:

* ``ours``: the package's real code path: ``synth2real.methods.create_method(preset,
  ...)`` with the models handed over by ``set_models``, ``prepare(references)``, then
  ``apply_batch`` on random images and label maps, end to end (VAE encode, the walk,
  VAE decode, resize back). One warm-up image first (which also builds the reference
  bank, a one-time cost per working size), then ``--images`` images timed in batches of
  ``--batch-size``. The UNet runs in ``--dtype`` (auto: float16 on CUDA). Each preset
  runs with its own FreeU (the walk presets: the reference's form as up-block hooks;
  styleid: off), or ``--freeu MODE`` for all.
* ``freeu``: one UNet forward of a three-row walk batch at each size with FreeU off,
  diffusers' and the reference's form, CUDA-synchronised: what the FreeU form costs.
* ``reference``: ``benchmarks/reference_impl.ReferenceStructure``, the reference code's
  work per (content, style) pair: full-matrix attention in every layer, the per-position
  filter loop (cactif), content *and* style inverted for every pair (50 UNet passes each,
  batch of one), 20 steps of two UNet passes (the second, "no-swap", unused) on a batch
  of three, all three latents decoded; float32, as the reference loads SD 1.5; the
  reference's FreeU (``synth2real.diffusion.freeu``'s hooks, equal to its hand-written
  UNet at SD 1.5's widths) in every pass. With
  ``--reference-steps sampled`` (default) the inversion is timed over a few steps and the
  walk over a few steps and both are extrapolated linearly to 50 + 50 and 20 steps (every
  step does the same work); ``full`` runs them all.
* ``filter step``: one filtered attention step at the finest layer's real shapes (3 x 8
  heads x N x 40), ours vs ``reference_filtered_step``, CUDA-event timed, and a check that
  ours never synchronises with the host (``torch.cuda.set_sync_debug_mode("error")``).

Usage (one GPU, a few minutes)::

    python benchmarks/gpu_diffusion.py                  # 512x1024 and 1024x2048
    python benchmarks/gpu_diffusion.py --sizes 512x1024 --presets cactif
    python benchmarks/gpu_diffusion.py --smoke          # tiny models on the CPU, seconds
    python benchmarks/gpu_diffusion.py --freeu diffusers # every preset with diffusers' FreeU

Writes ``docs/benchmarks/gpu_diffusion.md`` and ``.json`` (``--smoke``: into ``--out-dir``,
default a temporary folder, never the docs).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_machine import cpu_model, git_commit  # noqa: E402

PRESETS = ("adain-diffusion", "cross-image", "cacti", "cactif", "styleid")
#: reference flags per preset: (swap, filtering, class-wise AdaIN). StyleID's reference is
#: another code base (not the CACTI structure), so it has no entry here.
REFERENCE_FLAGS = {
    "adain-diffusion": (False, False, False),
    "cross-image": (True, False, False),
    "cacti": (True, False, True),
    "cactif": (True, True, True),
}

# --------------------------------------------------------------------------- architectures
# Stable Diffusion v1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5), from its
# unet/config.json, vae/config.json and scheduler/scheduler_config.json.
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,  # diffusers' name for SD 1.5's 8 heads (head dim 40 at 320 ch)
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
SD15_TEXT = (77, 768)  # empty-prompt embeddings: tokens x width

# --smoke: the same block layout with tiny widths, so every code path runs on a CPU
TINY_UNET = dict(
    SD15_UNET,
    sample_size=8,
    block_out_channels=[16, 16, 32, 32],
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=16,
    attention_head_dim=2,
)
TINY_VAE = dict(
    SD15_VAE,
    block_out_channels=[8, 8, 16, 16],
    layers_per_block=1,
    norm_num_groups=4,
    sample_size=64,
)
TINY_TEXT = (8, 16)


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[gpu_diffusion {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


class Clock:
    """Wall time with device synchronisation at both ends (CUDA work is asynchronous)."""

    def __init__(self, device):
        self.device = device

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        self.sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds = time.perf_counter() - self.t0
        return False


class Memory:
    """Peak device memory over a block (``torch.cuda.max_memory_allocated``); on a CPU
    nothing is measured (``None``)."""

    def __init__(self, device):
        self.device = device
        self.peak = self.base = None

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        return False


def gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def free_device(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- models, data


def build_models(smoke: bool, device, dtype):
    """SD 1.5's UNet and VAE (or tiny ones) with random weights, as ``DiffusionModels``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from synth2real.diffusion.loading import DiffusionModels

    torch.manual_seed(0)
    with torch.device(device):  # initialise directly on the device: seconds, not minutes
        unet = UNet2DConditionModel(**(TINY_UNET if smoke else SD15_UNET))
        vae = AutoencoderKL(**(TINY_VAE if smoke else SD15_VAE))
    unet.to(dtype=dtype)
    vae.to(dtype=dtype)
    tokens, width = TINY_TEXT if smoke else SD15_TEXT
    prompt = torch.randn((1, tokens, width), generator=torch.Generator().manual_seed(0))
    return DiffusionModels(
        unet=unet,
        vae=vae,
        scheduler=DDIMScheduler(**SD15_SCHEDULER),
        prompt_embeds=prompt.to(device=device, dtype=dtype),
        device=device,
        dtype=dtype,
        source="random weights, SD 1.5 architecture" if not smoke else "random weights, tiny",
    )


def make_data(n_content: int, n_refs: int, size: tuple[int, int], n_classes: int, seed: int = 0):
    """Smooth random images and blocky label maps (all classes present in each)."""
    import cv2
    import numpy as np

    from synth2real.data.classes import ClassSpec
    from synth2real.methods.base import References

    rng = np.random.default_rng(seed)
    h, w = size

    def image():
        low = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)

    def label():
        low = rng.integers(0, n_classes, (4, 8), dtype=np.uint8)
        low.flat[:n_classes] = np.arange(n_classes)
        return cv2.resize(low, (w, h), interpolation=cv2.INTER_NEAREST)

    images = [image() for _ in range(n_content)]
    labels = [label() for _ in range(n_content)]
    classes = ClassSpec(names=[f"class{i}" for i in range(n_classes)])
    refs = References(
        images=[image() for _ in range(n_refs)],
        labels=[label() for _ in range(n_refs)],
        names=[f"ref{i}" for i in range(n_refs)],
        classes=classes,
    )
    return images, labels, refs


# --------------------------------------------------------------------------- ours


def time_ours(preset, models, size, data, args, *, images: int, warmup: bool) -> dict:
    import torch

    from synth2real.methods import create_method

    imgs, labels, refs = data
    params = dict(working_size=list(size), batch_size=args.batch_size, device=str(models.device))
    if args.freeu is not None:
        params["freeu"] = args.freeu
    if args.smoke:
        params.update(num_inference_steps=args.steps, skip=0 if preset == "styleid" else args.skip)
    requested = models.dtype
    method = create_method(preset, **params)
    method.set_models(models)
    ref_idx = [i % len(refs.images) for i in range(len(imgs))]
    notes_before = len(models.notes)
    rec: dict = {
        "variant": "ours",
        "preset": preset,
        "size": list(size),
        "dtype": str(models.dtype),
        "freeu": method.freeu.mode,
    }
    try:
        with Clock(models.device) as c:
            method.prepare(refs)
        rec["prepare_s"] = c.seconds
        if warmup:
            with Clock(models.device) as c:
                method.apply_batch(imgs[:1], labels[:1], ref_idx[:1])
            rec["warmup_s"] = c.seconds
        n = min(images, len(imgs))
        with Memory(models.device) as mem, Clock(models.device) as c:
            outs = method.apply_batch(imgs[:n], labels[:n], ref_idx[:n])
        assert all(o.shape == labels[i].shape + (3,) for i, o in enumerate(outs))
        rec.update(
            images=n,
            batch_size=method.batch_size,
            seconds=c.seconds,
            seconds_per_image=c.seconds / n,
            peak_bytes=mem.peak,
            weights_and_state_bytes=mem.base,
            includes_reference_preparation=not warmup,
        )
    except torch.OutOfMemoryError as e:
        rec.update(oom=True, error=str(e).splitlines()[0])
    finally:
        rec["notes"] = models.notes[notes_before:]
        method.close()
        if str(models.dtype) != rec["dtype"]:  # the NaN guard moved the UNet to float32
            rec["dtype_after"] = str(models.dtype)
            models.to_dtype(requested)  # keep the presets independent
        if next(models.vae.parameters()).dtype != requested:
            models.vae.to(dtype=requested)
        free_device(models.device)
    return rec


# --------------------------------------------------------------------------- FreeU

FREEU_MODES = ("off", "diffusers", "reference")


def time_freeu(models, size, *, repeats: int = 3) -> dict:
    """One UNet forward of a walk batch (three rows: out, style, content) at working size
    ``size`` with each FreeU form; the best of ``repeats`` after a warm-up call."""
    import torch

    from synth2real.diffusion.freeu import install_freeu

    h, w = (v // models.vae_scale_factor for v in size)
    x = torch.randn((3, models.unet.config.in_channels, h, w), generator=torch.Generator())
    x = x.to(models.device)
    rec: dict = {"size": f"{size[0]}x{size[1]}", "rows": 3, "dtype": str(models.dtype)}
    with torch.no_grad():
        for mode in FREEU_MODES:
            try:
                with install_freeu(models.unet, mode) as handle:
                    models.predict(x, 381)  # warm-up (kernels, FFT plans)
                    times = []
                    for _ in range(repeats):
                        with Clock(models.device) as c:
                            models.predict(x, 381)
                        times.append(c.seconds)
                rec[mode] = min(times)
                rec[f"{mode}_stages"] = [st.block for st in handle.stages]
            except torch.OutOfMemoryError as e:
                rec[mode] = None
                rec[f"{mode}_oom"] = str(e).splitlines()[0]
            free_device(models.device)
    if rec.get("off") and rec.get("reference"):
        rec["reference_overhead"] = rec["reference"] / rec["off"] - 1.0
    return rec


# --------------------------------------------------------------------------- reference


def _image_tensor(img, device):
    import torch

    return (torch.from_numpy(img).float() / 127.5 - 1.0).permute(2, 0, 1)[None].to(device)


def _latent_labels(lab, latent_hw, device):
    import cv2
    import torch

    h, w = latent_hw
    small = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(small).long().to(device)


def full_matrix_bytes(size: tuple[int, int], heads: int = 8, batch: int = 3) -> int:
    """Bytes of the reference's finest-level float32 attention logits + probabilities."""
    n = (size[0] // 8) * (size[1] // 8)
    return 2 * batch * heads * n * n * 4


def time_reference(preset, models, size, data, args) -> dict:
    import torch
    from reference_impl import ReferenceStructure

    from synth2real.diffusion.freeu import install_freeu

    swap, filtering, classwise = REFERENCE_FLAGS[preset]
    imgs, labels, refs = data
    dev = models.device
    steps = args.steps if args.smoke else 50
    skip = args.skip if args.smoke else 30
    n_walk = steps - skip
    sampled = args.reference_steps == "sampled"
    k_inv = min(steps, args.sample_inversion_steps) if sampled else steps
    k_walk = min(n_walk, args.sample_walk_steps) if sampled else n_walk
    unet, vae = models.unet, models.vae
    freeu = install_freeu(unet, "reference")  # the reference runs its FreeU in every pass
    rs = ReferenceStructure(
        unet,
        vae,
        models.scheduler,
        models.prompt_embeds,
        swap=swap,
        filtering=filtering,
        classwise=classwise,
        num_inference_steps=steps,
        skip=skip,
    )
    h, w = size
    latent_hw = (h // models.vae_scale_factor, w // models.vae_scale_factor)
    rs.install(latent_hw)
    rec: dict = {
        "variant": "reference",
        "preset": preset,
        "size": list(size),
        "dtype": str(next(unet.parameters()).dtype),
        "freeu": "reference",
        "inversion_steps_timed": k_inv,
        "walk_steps_timed": k_walk,
        "extrapolated": sampled and (k_inv < steps or k_walk < n_walk),
    }
    g = torch.Generator(device=dev).manual_seed(0)
    phase = "setup"
    try:
        with torch.no_grad():
            content = _image_tensor(imgs[0], dev)
            style = _image_tensor(refs.images[0], dev)
            lab = (
                _latent_labels(labels[0], latent_hw, dev),
                _latent_labels(refs.labels[0], latent_hw, dev),
            )
            need = full_matrix_bytes(size)
            total = (
                torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda" else None
            )
            if total is not None and need > total:
                # Likely not to fit: try one batch-3 swap pass before 100 inversion passes.
                phase = "probe: one batch-3 UNet pass with the swap"
                rec["estimated_full_matrix_bytes"] = need
                x = rs.encode(content)
                rs.state.update(enable_edit=True, perform_swap=True)
                rs._unet(torch.cat([x, x, x]), rs.timesteps[skip])
                rs.state.update(enable_edit=False, perform_swap=False)
                del x
                free_device(dev)
            # warm-up (kernels, allocator): one inversion step, not timed
            phase = "warm-up"
            x_c = rs.encode(content)
            rs.invert(x_c, g, steps=1)
            with Memory(dev) as mem:
                phase = "encode"
                with Clock(dev) as c:
                    x_c = rs.encode(content)
                    x_s = rs.encode(style)
                t_enc = c.seconds
                phase = "inversion"
                with Clock(dev) as c:
                    xts_c, zs_c = rs.invert(x_c, g, steps=k_inv)
                    xts_s, zs_s = rs.invert(x_s, g, steps=k_inv)
                t_inv = c.seconds
                phase = "walk"
                with Clock(dev) as c:
                    lat = rs.walk(
                        xts_c[skip][None], xts_s[skip][None], zs_c, zs_s, lab, steps=k_walk
                    )
                t_walk = c.seconds
                phase = "decode"
                with Clock(dev) as c:
                    rs.decode(lat)
                t_dec = c.seconds
            inv_total = t_inv * steps / k_inv
            walk_total = t_walk * n_walk / k_walk
            rec.update(
                encode_s=t_enc,
                inversion_s=inv_total,
                walk_s=walk_total,
                decode_s=t_dec,
                seconds_per_image=t_enc + inv_total + walk_total + t_dec,
                peak_bytes=mem.peak,
                weights_and_state_bytes=mem.base,
            )
    except torch.OutOfMemoryError as e:
        rec.update(oom=True, oom_phase=phase, error=str(e).splitlines()[0])
    finally:
        rs.uninstall()
        freeu.remove()
        free_device(dev)
    return rec


# --------------------------------------------------------------------------- filter step


def filter_step(tokens: int, device, dtype, *, reference: bool, repeats: int = 3) -> dict:
    """One filtered attention step at the finest layer's shapes: ours (+ sync check) and
    the reference's ``reference_filtered_step``."""
    import torch
    from reference_impl import reference_filtered_step

    from synth2real.diffusion.attention import attention
    from synth2real.diffusion.filtering import filtered_attention

    g = torch.Generator(device=device).manual_seed(0)
    q = (torch.randn((3, 8, tokens, 40), generator=g, device=device) * 2).to(dtype)
    k = torch.randn((3, 8, tokens, 40), generator=g, device=device).to(dtype)
    v = torch.randn((3, 8, tokens, 40), generator=g, device=device).to(dtype)

    def ours():
        out, content = filtered_attention(
            q[0:1], k[1:2], v[1:2], q[2:3], k[2:3], v[2:3], return_content=True
        )
        return torch.cat([out, attention(q[1:2], k[1:2], v[1:2]), content])

    rec: dict = {"tokens": tokens, "dtype": str(dtype), "device": str(device)}

    def timed(fn, name):
        try:
            fn()  # warm-up
            times = []
            with Memory(device) as mem:
                for _ in range(repeats):
                    with Clock(device) as c:
                        res = fn()
                    times.append(c.seconds)
            rec[f"{name}_s"] = sorted(times)[len(times) // 2]
            rec[f"{name}_peak_bytes"] = mem.peak
            return res
        except torch.OutOfMemoryError as e:
            rec[f"{name}_oom"] = str(e).splitlines()[0]
            free_device(device)
            return None

    res_ours = timed(ours, "ours")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        try:
            torch.cuda.set_sync_debug_mode("error")
            ours()
            rec["ours_host_sync_free"] = True
        except RuntimeError as e:
            rec["ours_host_sync_free"] = False
            rec["ours_sync_error"] = str(e).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    if reference:
        res_ref = timed(lambda: reference_filtered_step(q, k, v), "reference")
        if res_ref is not None and res_ours is not None:
            rec["max_abs_diff"] = float((res_ref.float() - res_ours.float()).abs().max())
            rec["speedup"] = rec["reference_s"] / rec["ours_s"]
    free_device(device)
    return rec


# --------------------------------------------------------------------------- report


def write_markdown(path: Path, record: dict) -> None:
    m, cfg = record["machine"], record["config"]
    lines = [
        "# GPU benchmark: diffusion presets, ours vs the reference code's structure",
        "",
        f"Generated by `benchmarks/gpu_diffusion.py{' --smoke' if cfg['smoke'] else ''}` on {m['date']} "
        f"(commit {m['commit']}). Do not edit by hand.",
        "",
        f"Device: **{m['device_name']}** ({gib(m.get('device_memory_bytes'))}), torch {m['torch']}, "
        f"CUDA {m.get('cuda')}, diffusers {m.get('diffusers')}, host {m['cpu']}.",
        f"Model: {cfg['model']}. Ours: UNet in {cfg['dtype']}, batches of {cfg['batch_size']}, "
        f"FreeU {cfg.get('freeu', '-')}; "
        f"reference structure: float32, batch of one pair, reference steps {cfg['reference_steps']}"
        + (
            f" (inversion timed over {cfg['sample_inversion_steps']} steps, walk over "
            f"{cfg['sample_walk_steps']}, extrapolated linearly)"
            if cfg["reference_steps"] == "sampled"
            else ""
        )
        + ".",
        "",
        "| size | preset | FreeU | ours s/image | ours peak | reference s/image | reference peak "
        "| speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        o, r = row.get("ours") or {}, row.get("reference") or {}

        def cell_time(x):
            if not x:
                return "-"
            if x.get("oom"):
                return f"OOM ({x.get('oom_phase', '')})".replace(" ()", "")
            return f"{x['seconds_per_image']:.2f}"

        speed = (
            f"{r['seconds_per_image'] / o['seconds_per_image']:.1f}x"
            if r.get("seconds_per_image") and o.get("seconds_per_image")
            else "-"
        )
        lines.append(
            f"| {row['size']} | {row['preset']} | {o.get('freeu', '-')} | {cell_time(o)} | "
            f"{gib(o.get('peak_bytes'))} | {cell_time(r)} | {gib(r.get('peak_bytes'))} | {speed} |"
        )
    if record.get("freeu_forward"):
        lines += [
            "",
            "One UNet forward of a three-row walk batch, by FreeU form (best of 3):",
            "",
            "| size | off | diffusers | reference | reference vs off |",
            "|---|---|---|---|---|",
        ]
        for f in record["freeu_forward"]:

            def ms(v):
                return "OOM" if v is None else f"{v * 1e3:.1f} ms"

            over = f.get("reference_overhead")
            lines.append(
                f"| {f['size']} | {ms(f.get('off'))} | {ms(f.get('diffusers'))} | "
                f"{ms(f.get('reference'))} | {'-' if over is None else f'{100 * over:+.0f} %'} |"
            )
    if record.get("filter_steps"):
        lines += [
            "",
            "One filtered attention step (3 elements x 8 heads x N tokens x 40):",
            "",
            "| N | dtype | ours | reference | speed-up | max abs diff | ours host-sync free |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in record["filter_steps"]:
            ref = (
                f"{f['reference_s'] * 1e3:.1f} ms"
                if "reference_s" in f
                else ("OOM" if "reference_oom" in f else "-")
            )
            ours = f"{f['ours_s'] * 1e3:.1f} ms" if "ours_s" in f else "OOM"
            lines.append(
                f"| {f['tokens']} | {f['dtype']} | {ours} | {ref} | "
                f"{f.get('speedup', 0):.1f}x | {f.get('max_abs_diff', float('nan')):.2g} | "
                f"{f.get('ours_host_sync_free', '-')} |"
            )
    notes = [
        n
        for row in record["rows"]
        for x in (row.get("ours"), row.get("reference"))
        if x
        for n in x.get("notes", [])
    ]
    lines += [
        "",
        "Ours times `apply_batch` end to end after a warm-up image (which builds the reference "
        "bank once per working size); rows without warm-up (large sizes) include that one-time "
        "cost. Peak memory is `torch.cuda.max_memory_allocated` over the timed run, model "
        "weights included. Random weights: the numbers are about time and memory only.",
    ]
    if notes:
        lines += ["", "Notes raised during the runs:", ""] + [f"- {n}" for n in notes]
    if record.get("train"):
        from gpu_train import markdown

        lines += ["", *markdown(record["train"])]
    lines.append("")
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--smoke", action="store_true", help="tiny models on the CPU (or --device), seconds"
    )
    ap.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    ap.add_argument(
        "--dtype", default="auto", help="UNet dtype for ours: auto, float16, bfloat16, float32"
    )
    ap.add_argument(
        "--sizes", default=None, help="comma list HxW (default 512x1024,1024x2048; smoke 64x128)"
    )
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument(
        "--freeu",
        choices=FREEU_MODES,
        default=None,
        help="FreeU of every preset (default: each preset's own: reference, styleid off)",
    )
    ap.add_argument("--no-freeu-forward", action="store_true", help="skip the FreeU forward timing")
    ap.add_argument(
        "--reference-presets",
        default="cross-image,cactif",
        help="presets also run as the reference structure ('' = none)",
    )
    ap.add_argument(
        "--large-presets", default="cross-image,cactif", help="presets run at sizes above 512x1024"
    )
    ap.add_argument("--images", type=int, default=4, help="images timed per preset (ours)")
    ap.add_argument("--batch-size", type=int, default=4, help="ours: content images per batch")
    ap.add_argument("--reference-steps", choices=("sampled", "full"), default="sampled")
    ap.add_argument("--sample-inversion-steps", type=int, default=3)
    ap.add_argument("--sample-walk-steps", type=int, default=2)
    ap.add_argument(
        "--no-filter-step", action="store_true", help="skip the single-step filter timing"
    )
    ap.add_argument("--steps", type=int, default=6, help=argparse.SUPPRESS)  # smoke only
    ap.add_argument("--skip", type=int, default=3, help=argparse.SUPPRESS)  # smoke only
    ap.add_argument("--no-train", action="store_true", help="skip the segmentation training timing")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from synth2real.diffusion.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device if not args.smoke or args.device != "auto" else "cpu")
    dtype = resolve_dtype(args.dtype, device)
    sizes = [
        parse_size(s)
        for s in (args.sizes or ("64x128" if args.smoke else "512x1024,1024x2048")).split(",")
    ]
    presets = [p for p in args.presets.split(",") if p]
    ref_presets = [p for p in args.reference_presets.split(",") if p and p in REFERENCE_FLAGS]
    large_presets = set(p for p in args.large_presets.split(",") if p)
    if args.out_dir is None:
        args.out_dir = (
            Path(tempfile.mkdtemp(prefix="s2r-gpu-smoke-"))
            if args.smoke
            else REPO / "docs" / "benchmarks"
        )
    if not args.smoke and device.type != "cuda":
        log(f"warning: no CUDA device ({device}); numbers will not be GPU numbers")
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # the "casting with to()" notices
    # one thread for the tiny smoke models: OpenMP workers only contend on a busy CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if args.smoke else min(4, os.cpu_count() or 1))
    try:
        return _run(args, device, dtype, sizes, presets, ref_presets, large_presets)
    finally:
        torch.set_num_threads(threads)


def _run(args, device, dtype, sizes, presets, ref_presets, large_presets) -> int:
    import diffusers
    import torch

    machine = {
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({cpu_model()})",
        "device_memory_bytes": torch.cuda.get_device_properties(device).total_memory
        if device.type == "cuda"
        else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
    }
    config = {
        "smoke": args.smoke,
        "model": "tiny random (smoke)" if args.smoke else "SD 1.5 architecture, random weights",
        "dtype": str(dtype),
        "batch_size": args.batch_size,
        "images": args.images,
        "sizes": [f"{h}x{w}" for h, w in sizes],
        "presets": presets,
        "freeu": args.freeu or "each preset's default",
        "reference_presets": ref_presets,
        "reference_steps": args.reference_steps,
        "sample_inversion_steps": args.sample_inversion_steps,
        "sample_walk_steps": args.sample_walk_steps,
    }
    log(f"device {machine['device_name']}, dtype {dtype}, sizes {config['sizes']}")

    with Clock(device) as c:
        models = build_models(args.smoke, device, dtype)
    log(f"built models in {c.seconds:.1f} s")
    rows = []
    t_start = time.perf_counter()
    for i, size in enumerate(sizes):
        large = i > 0 and size[0] * size[1] > 512 * 1024
        todo = [p for p in presets if not large or p in large_presets]
        n_images = 1 if large else args.images
        data = make_data(max(n_images, 1), 2, size, n_classes=3, seed=i)
        for preset in todo:
            log(f"ours {preset} at {size[0]}x{size[1]} ...")
            ours = time_ours(preset, models, size, data, args, images=n_images, warmup=not large)
            log(
                f"  -> {ours.get('seconds_per_image', 'OOM')} s/image, peak {gib(ours.get('peak_bytes'))}"
            )
            rows.append({"size": f"{size[0]}x{size[1]}", "preset": preset, "ours": ours})
    freeu_forward = []
    if not args.no_freeu_forward:
        for size in sizes:
            log(f"FreeU forward at {size[0]}x{size[1]} ...")
            freeu_forward.append(time_freeu(models, size))
    # reference structure: float32 (as the reference), after all of ours
    if ref_presets:
        if dtype != torch.float32:
            models.to_dtype(torch.float32)
            models.vae.to(dtype=torch.float32)
        for i, size in enumerate(sizes):
            large = i > 0 and size[0] * size[1] > 512 * 1024
            data = make_data(1, 1, size, n_classes=3, seed=100 + i)
            for preset in ref_presets:
                if large and preset not in large_presets:
                    continue
                log(f"reference {preset} at {size[0]}x{size[1]} ...")
                ref = time_reference(preset, models, size, data, args)
                log(
                    f"  -> {ref.get('seconds_per_image', 'OOM' if ref.get('oom') else 'probe')} s/image"
                )
                row = next(
                    (
                        r
                        for r in rows
                        if r["size"] == f"{size[0]}x{size[1]}" and r["preset"] == preset
                    ),
                    None,
                )
                if row is None:
                    row = {"size": f"{size[0]}x{size[1]}", "preset": preset}
                    rows.append(row)
                row["reference"] = ref
    filter_steps = []
    if not args.no_filter_step:
        toks = [8 * 16] if args.smoke else [64 * 128, 128 * 256]
        for n in toks:
            for dt in [torch.float32] + ([torch.float16] if device.type == "cuda" else []):
                log(f"filter step N={n} {dt} ...")
                filter_steps.append(filter_step(n, device, dt, reference=n <= 64 * 128))
    train = []
    if not args.no_train:
        from gpu_train import time_training

        del models
        free_device(device)
        log("segmentation training (small-unet, segformer) ...")
        train = time_training(device, smoke=args.smoke)
    record = {
        "machine": machine,
        "config": config,
        "rows": rows,
        "freeu_forward": freeu_forward,
        "filter_steps": filter_steps,
        "train": train,
        "total_seconds": time.perf_counter() - t_start,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "gpu_diffusion_smoke" if args.smoke else "gpu_diffusion"
    json_path, md_path = args.out_dir / f"{stem}.json", args.out_dir / f"{stem}.md"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(json_path)
    tmp = md_path.with_suffix(".md.tmp")
    write_markdown(tmp, record)
    tmp.replace(md_path)
    log(f"wrote {md_path} and {json_path} ({record['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
