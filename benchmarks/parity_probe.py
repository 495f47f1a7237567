"""Parity probe: the official CACTIF and StyleID code against synth2real, per step, on tiny
random models (CPU): synth2real's reference-quirks mode, then each quirk put back to
synth2real's default on its own, so that every remaining difference has its size.

What runs on the official side is the reference code itself, imported from
``../shared/reference`` by the test harness ``tests/diffusion/reference/`` (patched only
where it hard-codes CUDA, 512x1024 token counts or diffusers 0.19 behaviour). On
synth2real's side: its processors, its three-branch walk (``reference_quirks``, fed the
official inversion's levels or drawing its own with ``shared_noise``) and its StyleID
(``reference_quirks``). Single quirks are turned off through the harness's
``WalkOptions(without=...)``.

Measured:

1. one attention layer: the official processor against synth2real's processor classes
   (random rows, forced argmax ties, chunked), and the degenerate zero-query case;
2. the CACTIF walk (cross-image, cacti, cactif) with classes on the image border, a later
   image of a run (the reference's swap counter then swaps on step 0, not on step 1);
3. AdaIN statistics on small classes (8 x 16 latents);
4. the reference's noise draws: ``torch.manual_seed(42)`` inside class-wise AdaIN;
5. StyleID against the authors' diffusers port;
6. with the cracks data: the reference's colour-label path on the real reference labels,
   synth2real's quirk path, and ``labels_to_latent``;
7. ``--sd-widths``: a short walk on a UNet with SD 1.5's widths, where the reference's
   FreeU acts: synth2real with its reference FreeU hooks, diffusers' FreeU, or none.

Usage (repository root; reads ../shared, writes only docs/benchmarks)::

    python benchmarks/parity_probe.py               # 16 x 32 latents, about 10 minutes
    python benchmarks/parity_probe.py --quick       # 8 x 16 latents, no cracks labels
    python benchmarks/parity_probe.py --sd-widths   # + the FreeU walk at SD 1.5 widths

Writes ``docs/benchmarks/parity_probe.md`` and ``parity_probe.json`` (``--quick``:
``parity_probe_quick.*``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_machine import cpu_model, git_commit, load_average  # noqa: E402

from tests.diffusion.reference import cactif, layer, loader, locate, models, ours  # noqa: E402
from tests.diffusion.reference import styleid as port_styleid  # noqa: E402

PRESETS = ("cross-image", "cacti", "cactif")
SEEDS = {
    "unet": 0,
    "style image": 1,
    "content image": 2,
    "second content image": 3,
    "inversion": 42,
}
#: column groups of the walk tables: (title, first step, end step)
GROUPS = (("0-1", 0, 2), ("2-4", 2, 5), ("5-14", 5, 15), ("15-18", 15, 19), ("19", 19, 20))
#: the walk's quirks, each put back to synth2real's default on its own:
#: (row title, ReferenceQuirks fields, presets it concerns)
SINGLE_QUIRKS = (
    ("- border erosion (border_erodes)", ("border_erodes",), ("cacti", "cactif")),
    ("- AdaIN statistics sqrt(var + 1e-5)", ("reference_statistics",), PRESETS),
    ("- zero last noise map (zero_last_noise)", ("zero_last_noise",), PRESETS),
    ("- no swap on step 1 (no_swap_steps)", ("no_swap_steps",), PRESETS),
    ("- sigma offset 1", ("sigma_offset",), ("cacti", "cactif")),
    ("- untouched pixels, no pooling (classwise_loop)", ("classwise_loop",), ("cacti", "cactif")),
)


# --------------------------------------------------------------------------------------
def run_layer(log) -> dict:
    loader.cactif()
    rows = []
    for filtering in (False, True):
        for ties in (False, True):
            for chunk in (None, 48):
                attn = layer.attention_module()
                hidden = layer.hidden_states()
                if ties:
                    hidden = layer.tied_keys(attn, hidden)
                official, _ = layer.official(attn, hidden, filtering=filtering)
                mine = layer.processor(attn, hidden, filtering=filtering, chunk_size=chunk)
                rows.append(
                    {
                        "preset": "cactif" if filtering else "cross-image",
                        "ties": ties,
                        "chunk": chunk,
                        "rows": layer.row_differences(mine, official),
                    }
                )
    attn = layer.attention_module()
    hidden = layer.zero_queries(layer.hidden_states())
    official, _ = layer.official(attn, hidden, filtering=True)
    mine = layer.processor(attn, hidden, filtering=True)
    zero = {"rows": layer.row_differences(mine, official), "zero_queries": layer.ZERO_QUERIES}
    zero["out_row_scale"] = float(official[0].abs().max())
    log(f"layer: max {max(max(r['rows']) for r in rows):.1e}, zero queries {zero['rows']}")
    return {"tokens": layer.TOKENS, "heads": layer.HEADS, "cases": rows, "zero_queries": zero}


def walk_variants(preset: str) -> list[tuple[str, dict]]:
    """synth2real's walk with every quirk, then one quirk off at a time, then its defaults."""
    out = [
        ("reference_quirks (fed the official levels)", {}),
        ("reference_quirks + shared_noise (its own draws)", {"shared_noise": True}),
    ]
    out += [
        (title, {"without": fields})
        for title, fields, presets in SINGLE_QUIRKS
        if preset in presets
    ]
    out += [
        ("own draws without shared_noise", {"own_draws": True}),
        ("synth2real's defaults (FreeU off)", {"quirks": False}),
    ]
    return out


def _invert_after_seed(official, image, seed: int):
    with loader.preserved_rng():
        torch.manual_seed(seed)
        return official.invert(image)


def run_walks(tiny, labels, log) -> dict:
    style = models.random_image(tiny.image_hw, SEEDS["style image"])
    content = models.random_image(tiny.image_hw, SEEDS["content image"])
    out: dict = {}
    inverted = None
    for preset in PRESETS:
        official = cactif.OfficialCACTIF(tiny, preset)
        if inverted is None:  # the state of every style and later content of a CACTI run
            inverted = (
                _invert_after_seed(official, style, SEEDS["inversion"]),
                _invert_after_seed(official, content, SEEDS["inversion"]),
            )
        t = time.time()
        walk = official.walk(*inverted, *labels, first_image=False)
        log(f"{preset}: official walk {time.time() - t:.0f} s")
        rows = []
        for name, kw in walk_variants(preset):
            kw = dict(kw)
            own = kw.pop("own_draws", False) or kw.get("shared_noise", False)
            mine = ours.walk(
                tiny,
                inverted[0].xts,
                inverted[1].xts,
                ours.WalkOptions(preset, swap_steps=None, **kw),
                label_content=labels[0],
                label_style=labels[1],
                num_classes=models.LABEL_CLASSES,
                levels=not own,
            )
            rows.append(
                {
                    "variant": name,
                    "after_adain": ours.per_step(walk.out, mine.after),
                    "before_adain": ours.per_step(walk.out_before_adain, mine.before),
                    "swapped": mine.swapped,
                }
            )
        out[preset] = {
            "swapped_steps": [j for j, s in enumerate(walk.swapped) if s],
            "official_max_abs": [float(s[0].abs().max()) for s in walk.steps],
            "variants": rows,
        }
        log(f"{preset}: quirks max {max(rows[0]['after_adain']):.1e}")
    return out


def run_small_classes(log) -> dict:
    tiny = models.tiny_sd(seed=SEEDS["unet"], sample_size=8)
    labels = models.latent_labels(tiny.latent_hw)
    style = models.random_image(tiny.image_hw, SEEDS["style image"])
    content = models.random_image(tiny.image_hw, SEEDS["content image"])
    official = cactif.OfficialCACTIF(tiny, "cacti")
    inverted = (
        _invert_after_seed(official, style, SEEDS["inversion"]),
        _invert_after_seed(official, content, SEEDS["inversion"]),
    )
    walk = official.walk(*inverted, *labels, first_image=False)
    rows = []
    for name, opts in (
        ("reference_quirks", ours.WalkOptions("cacti", swap_steps=None)),
        (
            "- AdaIN statistics",
            ours.WalkOptions("cacti", swap_steps=None, without=("reference_statistics",)),
        ),
        ("synth2real's defaults (FreeU off)", ours.WalkOptions("cacti", quirks=False)),
    ):
        mine = ours.walk(
            tiny, inverted[0].xts, inverted[1].xts, opts, label_content=labels[0],
            label_style=labels[1], num_classes=models.LABEL_CLASSES,
        )  # fmt: skip
        rows.append(
            {
                "variant": name,
                "before_adain": ours.per_step(walk.out_before_adain, mine.before),
                "ours_max_abs": float(mine.after.abs().max()),
            }
        )
    from synth2real.diffusion.adain import erode_slots

    eroded = {
        name: int(
            erode_slots(ours.slots(lab, models.LABEL_CLASSES)[None], 1, border_erodes=True)[0].sum()
        )
        for name, lab in zip(("content", "style"), labels, strict=True)
    }
    log(f"small classes: quirks {max(rows[0]['before_adain']):.1e}")
    return {
        "latent": list(tiny.latent_hw),
        "rows": rows,
        "kept_after_erosion": eroded,
        "official_max_abs": float(walk.out.abs().max()),
    }


def run_noise(tiny, labels, log) -> dict:
    """The reference's dataset loop for one style and two contents (``run.py``)."""
    from synth2real.diffusion.quirks import reference_levels

    images = {k: models.random_image(tiny.image_hw, SEEDS[k]) for k in SEEDS if "image" in k}
    sch = ours.schedule(50)
    out = {}
    for preset in ("cacti", "cross-image"):
        official = cactif.OfficialCACTIF(tiny, preset)
        with loader.preserved_rng():
            torch.manual_seed(SEEDS["inversion"])
            s_inv = official.invert(images["style image"])
            c1 = official.invert(images["content image"])
            official.walk(s_inv, c1, *labels, isolate_rng=False)
            c2 = official.invert(images["second content image"])
        noise = {k: cactif.noise_of(v) for k, v in (("style", s_inv), ("c1", c1), ("c2", c2))}
        out[preset] = {
            "content1_vs_style": ours.max_abs(noise["c1"], noise["style"]),
            "content2_vs_style": ours.max_abs(noise["c2"], noise["style"]),
        }
        if preset == "cacti":
            mine = reference_levels(s_inv.x0[None], sch, 0)[:, 0]
            out["shared_noise_vs_style_levels"] = ours.max_abs(mine, s_inv.xts)
            mine2 = reference_levels(c2.x0[None], sch, 0)[:, 0]
            out["shared_noise_vs_content2_levels"] = ours.max_abs(mine2, c2.xts)
    log(f"noise: {out}")
    return out


def run_styleid(log, steps: int = 20) -> dict:
    tiny = models.tiny_sd(seed=SEEDS["unet"], sample_size=8)
    port = port_styleid.OfficialStyleID(tiny, ddim_steps=steps)
    content = models.random_image(tiny.image_hw, SEEDS["content image"])
    style = models.random_image(tiny.image_hw, SEEDS["style image"])
    inv = port.invert(content, style)
    res: dict = {"steps": steps, "latent": list(tiny.latent_hw)}
    res["inversion_end_point"] = {
        "content": ours.max_abs(
            ours.ddim_invert(tiny, inv.content_latent, steps), inv.content[-1:]
        ),
        "style": ours.max_abs(ours.ddim_invert(tiny, inv.style_latent, steps), inv.style[-1:]),
        "z_T_max_abs": float(inv.content[-1].abs().max()),
    }
    plain = port.sample(inv, init_adain=False, inject=False)
    traj = ours.ddim_trajectory(tiny, inv.content[-1:], steps, x0_last=True)[:, 0]
    inputs = torch.cat([inv.content[-1:], traj[:-1]])
    last_step = ours.ddim_trajectory(tiny, inv.content[-1:], steps)[-1]
    res["plain"] = {
        "inputs_per_step": ours.per_step(plain.inputs, inputs),
        "x0_output_vs_port": ours.max_abs(traj[-1:], plain.output),
        "last_step_vs_port": ours.max_abs(last_step, plain.output),
    }
    full = port.sample(inv)
    variants = (
        ("reference_quirks", {"quirks": True}),
        ("- port's layers (6 layers)", {"quirks": True, "without": ("port_layers",)}),
        ("- port's initial AdaIN", {"quirks": True, "without": ("port_initial_adain",)}),
        ("- x0 output (last DDIM step)", {"quirks": True, "without": ("x0_output",)}),
        ("synth2real's defaults", {}),
    )
    rows = []
    for name, kw in variants:
        mine = ours.styleid(tiny, inv.content_latent, inv.style_latent, steps=steps, **kw)
        rows.append(
            {
                "variant": name,
                "initial": ours.max_abs(mine.initial, full.initial),
                "inputs_per_step": ours.per_step(full.inputs, mine.inputs),
                "output_vs_port": ours.max_abs(mine.steps[-1:], full.output),
            }
        )
    res["injected"] = rows
    log(f"styleid: {[(r['variant'], max(r['inputs_per_step'])) for r in rows]}")
    return res


def run_labels(data: Path, log) -> dict | None:
    """The reference's ``process_label`` on the cracks references, coloured in the
    Cityscapes palette (background = road, cracks = pole), against synth2real."""
    from PIL import Image

    from synth2real.data.readers import open_dataset
    from synth2real.diffusion.adain import labels_to_latent
    from synth2real.diffusion.method import fit_to
    from synth2real.diffusion.quirks import reference_labels_to_latent

    ref = loader.cactif()
    palette = ref.palettes.CITYSCAPES
    road, pole = 0, 5
    splits = json.loads((data / "splits.json").read_text())
    ds = open_dataset(data / "validation")
    wanted = {Path(n).stem for n in splits["references"]} | set(splits["references"])
    samples = [s for s in ds.samples if s.name in wanted or s.image_path.name in wanted]
    crack = list(ds.classes.names).index("cracks")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in samples:
            lab = ds.label(s)
            colour = np.zeros((*lab.shape, 4), np.uint8)
            colour[..., 3] = 255  # Cityscapes' *_gtFine_color.png are RGBA
            colour[lab != crack, :3] = palette[road]
            colour[lab == crack, :3] = palette[pole]
            path = Path(tmp) / f"{s.name}.png"
            Image.fromarray(colour, "RGBA").save(path)
            _, official = ref.utils_mask_utils.process_label(path, palette)  # (64, 128)
            train = np.where(lab == crack, pole, road).astype(np.uint8)
            quirk = reference_labels_to_latent(
                train, (512, 1024), (64, 128), 19, colors=[tuple(c) for c in palette]
            )
            _, fitted = fit_to(np.zeros((*lab.shape, 3), np.uint8), lab, (512, 1024), "crop")
            row = {
                "name": s.name,
                "official_crack": int((official == pole).sum()),
                "official_none": int((official == 255).sum()),
                "quirk_differs": int((np.where(quirk == 19, 255, quirk) != official).sum()),
            }
            for share in (0.0, 0.25):
                lat = labels_to_latent(
                    fitted, (512, 1024), (64, 128), ds.classes.num_classes,
                    ds.classes.ignore_index, share,
                )  # fmt: skip
                row[f"synth2real_crack_{share}"] = int((lat == crack).sum())
                row[f"none_where_synth2real_crack_{share}"] = int(
                    ((official == 255) & (lat == crack)).sum()
                )
            rows.append(row)
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "name"} if rows else {}
    log(f"labels: {total}")
    return {"images": len(rows), "latent_pixels_per_image": 64 * 128, "rows": rows, "total": total}


def run_sd_widths(log, steps: int = 10, skip: int = 6) -> dict:
    """cross-image on a UNet with SD 1.5's widths (FreeU acts in the reference)."""
    tokenizer, encoder = models.tiny_text(SEEDS["unet"])
    tiny = models.TinySD(
        models.sd15_width_unet(sample_size=8, seed=SEEDS["unet"]),
        models.tiny_vae(SEEDS["unet"]),
        tokenizer,
        encoder,
    )
    style = models.random_image(tiny.image_hw, SEEDS["style image"])
    content = models.random_image(tiny.image_hw, SEEDS["content image"])
    official = cactif.OfficialCACTIF(tiny, "cross-image", num_timesteps=steps, skip_steps=skip)
    inverted = official.invert_pair(style, content, seed=SEEDS["inversion"])
    walk = official.walk(*inverted)
    rows = []
    for mode in ("reference", "diffusers", "off"):
        opts = ours.WalkOptions("cross-image", swap_steps=(2, steps - skip), freeu=mode)
        mine = ours.walk(tiny, inverted[0].xts, inverted[1].xts, opts, steps=steps, skip=skip)
        rows.append(
            {
                "freeu": mode,
                "before_adain": ours.per_step(walk.out_before_adain, mine.before),
                "after_adain": ours.per_step(walk.out, mine.after),
            }
        )
    log(f"sd widths: {[(r['freeu'], max(r['after_adain'])) for r in rows]}")
    return {"steps": steps, "skip": skip, "latent": list(tiny.latent_hw), "rows": rows}


# --------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{v:.1e}"


def _groups(values: list[float]) -> list[str]:
    return [_fmt(max(values[a:b])) if values[a:b] else "-" for _, a, b in GROUPS]


def _walk_table(rows: list[dict], key: str) -> list[str]:
    lines = [
        "| synth2real | " + " | ".join(f"steps {g[0]}" for g in GROUPS) + " | max |",
        "|---|" + "---|" * (len(GROUPS) + 1),
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | " + " | ".join(_groups(row[key])) + f" | {_fmt(max(row[key]))} |"
        )
    return lines


def write_markdown(path: Path, rec: dict) -> None:
    L = [
        "# Parity probe: the official CACTIF and StyleID code against synth2real",
        "",
        f"Generated by `benchmarks/parity_probe.py`{' (quick mode)' if rec['quick'] else ''} "
        f"at commit {rec['commit']}, {rec['date']}. Do not edit by hand.",
        "",
        f"Machine: {rec['machine']['cpu']}, torch {rec['versions']['torch']}, diffusers "
        f"{rec['versions']['diffusers']}, {rec['machine']['threads']} thread(s), load "
        f"{rec['machine']['load_before']} -> {rec['machine']['load_after']}; "
        f"{rec['seconds']:.0f} s. Seeds: "
        + ", ".join(f"{k} {v}" for k, v in rec["seeds"].items())
        + ". Reference code: `"
        + rec["reference"]["root"]
        + "` (file hashes in the JSON).",
        "",
        "Tiny random models in SD 1.5's block layout (UNet widths 8/8/16/16, 2 heads, 2 "
        "layers per block; VAE latents scaled to SD's std of about 1), SD 1.5's schedule, "
        "50 steps, 30 skipped, 20 walked. Every number is a max abs difference between "
        "the official run and synth2real's.",
        "",
    ]
    lay = rec["layer"]
    L += [
        f"## 1. One attention layer ({lay['tokens']} tokens, {lay['heads']} heads)",
        "",
        "The official processor against synth2real's `SwapProcessor` / "
        "`FilteredSwapProcessor` on the same module and rows `[out, style, content]`:",
        "",
        "| preset | argmax ties | chunk | out | style | content |",
        "|---|---|---|---|---|---|",
    ]
    for c in lay["cases"]:
        L.append(
            f"| {c['preset']} | {'forced' if c['ties'] else 'no'} | {c['chunk'] or 'whole'} | "
            + " | ".join(_fmt(v) for v in c["rows"])
            + " |"
        )
    z = lay["zero_queries"]
    L += [
        "",
        f"Degenerate case, not matched: {z['zero_queries']} out tokens with a zero query "
        "attend uniformly, so every style key ties; the official sharpening centres column "
        "`j` on the mean of row `j` (a broadcast), which differs from 1/N by float "
        "rounding, so its argmax picks the column whose row mean rounds lowest, synth2real "
        "the first. CACTIF, out row / style / content: "
        + " / ".join(_fmt(v) for v in z["rows"])
        + f" (out row values up to {z['out_row_scale']:.2f}; the tie-break moves those "
        "tokens' similarity, hence the quantile and every weak column).",
        "",
    ]
    w = rec["walks"]
    L += [
        f"## 2. The CACTIF walk, latents {w['latent'][0]} x {w['latent'][1]}, classes on "
        "the image border",
        "",
        "A later image of a run (the reference's step counter still holds the previous "
        "image's last step: it swaps on step 0, not on step 1), both images inverted right "
        "after `torch.manual_seed(42)`. synth2real runs with `reference_quirks`, "
        "`swap_steps=None` and FreeU off (the reference's FreeU tests for 1280 and 640 "
        "channels, which this narrow UNet never has; see section 7), fed the official "
        "inversion's levels or drawing its own (`shared_noise`); then one quirk at a time "
        "is put back to synth2real's default. After each step's AdaIN, max over the steps "
        "of each group (5-14: class-wise AdaIN for cacti/cactif; 19: the last step):",
        "",
    ]
    for preset, res in w["presets"].items():
        L += [
            f"### {preset}",
            "",
            f"Official out latent: max abs {max(res['official_max_abs']):.2f}; swapped steps "
            + ", ".join(str(s) for s in res["swapped_steps"][:3])
            + f", ..., {res['swapped_steps'][-1]}.",
            "",
            *_walk_table(res["variants"], "after_adain"),
            "",
            "With every quirk, per step after AdaIN: "
            + " ".join(_fmt(v) for v in res["variants"][0]["after_adain"]),
            "",
        ]
    sc = rec["small_classes"]
    L += [
        f"## 3. AdaIN statistics on small classes (cacti, {sc['latent'][0]} x {sc['latent'][1]})",
        "",
        f"Latent pixels kept by the (border) erosion: {sc['kept_after_erosion']}. Before "
        f"each step's AdaIN. Official out latent max abs {sc['official_max_abs']:.2f}; "
        "synth2real's: "
        + ", ".join(f"{r['variant']} {r['ours_max_abs']:.2f}" for r in sc["rows"])
        + ".",
        "",
        *_walk_table(sc["rows"], "before_adain"),
    ]
    n = rec["noise"]
    L += [
        "",
        "## 4. The reference's noise draws",
        "",
        "The reference's dataset loop (`run.py`): `torch.manual_seed(42)`, invert the style, "
        "invert content 1, walk, invert content 2. Max abs difference of the unit noise "
        "`(x_i - sqrt(abar_i) x0) / sqrt(1 - abar_i)` over the 50 levels:",
        "",
        "| preset of the walk | content 1 vs style | content 2 vs style |",
        "|---|---|---|",
    ]
    for preset in ("cacti", "cross-image"):
        L.append(
            f"| {preset} | {_fmt(n[preset]['content1_vs_style'])} | "
            f"{_fmt(n[preset]['content2_vs_style'])} |"
        )
    L += [
        "",
        "synth2real's `shared_noise` draws (`quirks.reference_levels`) against the official "
        f"levels: style {_fmt(n['shared_noise_vs_style_levels'])}, content 2 "
        f"{_fmt(n['shared_noise_vs_content2_levels'])} (the official levels 1..T carry the "
        "inversion's float correction). A run's first content image continues the stream "
        "instead: not reproduced.",
        "",
    ]
    s = rec["styleid"]
    p = s["plain"]
    L += [
        f"## 5. StyleID against the authors' diffusers port ({s['steps']} DDIM steps, "
        f"latents {s['latent'][0]} x {s['latent'][1]})",
        "",
        f"- DDIM inversion end point: content {_fmt(s['inversion_end_point']['content'])}, "
        f"style {_fmt(s['inversion_end_point']['style'])} (z_T max abs "
        f"{s['inversion_end_point']['z_T_max_abs']:.2f}).",
        f"- Plain sampling (no AdaIN, no injection), UNet inputs per step: max "
        f"{_fmt(max(p['inputs_per_step']))}; result {_fmt(p['x0_output_vs_port'])} with "
        f"the last x0 prediction (the port's), {_fmt(p['last_step_vs_port'])} with the "
        "last DDIM step (synth2real's default, to `final_alpha_cumprod` = 0.99915).",
        "- Injected sampling with the initial AdaIN (the port's defaults), synth2real with "
        "StyleID's `reference_quirks`, then one quirk at a time back to synth2real's "
        "default:",
        "",
        "| synth2real | initial latent | UNet inputs, max over steps | result |",
        "|---|---|---|---|",
    ]
    for row in s["injected"]:
        L.append(
            f"| {row['variant']} | {_fmt(row['initial'])} | {_fmt(max(row['inputs_per_step']))} "
            f"| {_fmt(row['output_vs_port'])} |"
        )
    lab = rec.get("labels")
    L += ["", "## 6. Reference label maps at latent size (cracks references)", ""]
    if lab:
        t = lab["total"]
        L += [
            f"{lab['images']} real reference labels of the cracks data, coloured in the "
            "Cityscapes palette (background = road, cracks = pole) and read by the "
            "reference's `process_label` (crop to 2:1, bicubic resize to 1024 x 512, "
            "bicubic resize to 128 x 64, exact palette match, 255 otherwise); "
            "synth2real's quirk path (`reference_labels_to_latent`, `reference_quirks`) "
            f"differs in {t['quirk_differs']} latent pixels; `labels_to_latent` (the "
            "default) of the same crop at 512 x 1024. Latent pixels, all images together "
            f"({lab['latent_pixels_per_image']} per image):",
            "",
            "| | crack | no class (255) | no class where synth2real has crack |",
            "|---|---|---|---|",
            f"| reference | {t['official_crack']} | {t['official_none']} | - |",
            f"| synth2real, thin_share 0 | {t['synth2real_crack_0.0']} | 0 | "
            f"{t['none_where_synth2real_crack_0.0']} |",
            f"| synth2real, thin_share 0.25 | {t['synth2real_crack_0.25']} | 0 | "
            f"{t['none_where_synth2real_crack_0.25']} |",
        ]
    else:
        L.append("Not measured (quick mode, or the cracks data is absent).")
    sd = rec.get("sd_widths")
    L += ["", "## 7. FreeU at SD 1.5's widths (cross-image)", ""]
    if sd:
        L += [
            f"UNet widths 320/640/1280/1280, one layer per block; {sd['steps']} steps, "
            f"{sd['skip']} skipped; latents {sd['latent'][0]} x {sd['latent'][1]}; "
            "synth2real with `reference_quirks` and `swap_steps` of a first image. Max over "
            "the walk:",
            "",
            "| synth2real FreeU | before AdaIN | after AdaIN |",
            "|---|---|---|",
        ]
        for row in sd["rows"]:
            L.append(
                f"| {row['freeu']} | {_fmt(max(row['before_adain']))} | "
                f"{_fmt(max(row['after_adain']))} |"
            )
    else:
        L.append("Not measured (run with `--sd-widths`).")
    path.write_text("\n".join(L) + "\n")


def _shown(path: Path) -> str:
    """``path`` relative to the checkout's parent (``../shared/reference``) when under it."""
    try:
        return str(Path("..") / path.absolute().relative_to(REPO.parent))
    except ValueError:
        return str(path)


def _hashes(root: Path) -> dict:
    out = {}
    for rel in (
        "CACTIF/cactif_model.py",
        "CACTIF/models/stable_diffusion.py",
        "CACTIF/models/unet_2d_condition.py",
        "CACTIF/utils/adain.py",
        "CACTIF/utils/attention_utils.py",
        "CACTIF/utils/ddpm_inversion.py",
        "CACTIF/utils/mask_utils.py",
        "StyleID/diffusers_implementation/run_styleid_diffusers.py",
    ):
        f = root / rel
        out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 x 16 latents, no cracks labels")
    ap.add_argument("--sd-widths", action="store_true", help="also the FreeU walk at SD widths")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--data", type=Path, default=None, help="the cracks dataset folder")
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs" / "benchmarks")
    args = ap.parse_args(argv)
    if (
        locate.reference_folder(locate.CACTIF) is None
        or locate.reference_folder(locate.STYLEID) is None
    ):
        raise SystemExit(locate.missing_reason("CACTIF and StyleID"))
    torch.set_num_threads(args.threads)
    start, load_before = time.time(), load_average()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {msg}", flush=True)

    size = 8 if args.quick else 16
    tiny = models.tiny_sd(seed=SEEDS["unet"], sample_size=size)
    labels = models.latent_labels(tiny.latent_hw)
    record: dict = {
        "quick": args.quick,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "seeds": SEEDS,
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__},
        "reference": {
            "root": _shown(locate.reference_root()),
            "sha256": _hashes(locate.reference_root()),
        },
    }
    record["layer"] = run_layer(log)
    record["walks"] = {"latent": list(tiny.latent_hw), "presets": run_walks(tiny, labels, log)}
    record["small_classes"] = run_small_classes(log)
    record["noise"] = run_noise(tiny, labels, log)
    record["styleid"] = run_styleid(log)
    data = args.data or (REPO.parent / "shared" / "datasets" / "cracks")
    record["labels"] = (
        run_labels(data, log) if not args.quick and (data / "splits.json").is_file() else None
    )
    record["sd_widths"] = run_sd_widths(log) if args.sd_widths else None
    record["seconds"] = time.time() - start
    record["machine"] = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "load_before": load_before,
        "load_after": load_average(),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "parity_probe" + ("_quick" if args.quick else "")
    tmp = args.out_dir / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(args.out_dir / f"{stem}.json")
    tmp = args.out_dir / f".{stem}.md.tmp"
    write_markdown(tmp, record)
    tmp.replace(args.out_dir / f"{stem}.md")
    log(f"wrote {args.out_dir / stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
