"""Parity probe: the official CACTIF and StyleID code against synth2real's current code,
per step, on tiny random models (CPU), with each known gap closed in turn.

What runs on the official side is the reference code itself, imported from
``../shared/reference`` by the test harness ``tests/diffusion/reference/`` (patched only
where it hard-codes CUDA, 512x1024 token counts or diffusers 0.19 behaviour). On
synth2real's side: its three-branch walk in reference-quirks mode fed the official
inversion's levels, and its StyleID. The gaps are closed by the harness's emulations in
``tests/diffusion/reference/ours.py`` (``WalkOptions``), to show which gap explains how
much; they are not synth2real features (yet).

Measured:

1. CACTIF walk (cross-image, cacti, cactif), label maps whose classes touch the image
   border: max abs difference of the out latent after every step, for synth2real as it
   is and with the gaps closed one after another (last-step AdaIN target, AdaIN
   statistics, border erosion), and, with all three closed, the effect of synth2real's
   defaults (swap on every step, diffusers' FreeU, quirks off);
2. the AdaIN statistics gap on small classes (8 x 16 latents, labels off the border);
3. the reference's noise draws: ``torch.manual_seed(42)`` inside class-wise AdaIN;
4. StyleID against the authors' diffusers port: inversion end point, plain sampling,
   injected sampling (synth2real's layers or the port's, its AdaIN or the port's);
5. with the cracks data: how the reference's colour-label path (bicubic resizes, exact
   colour matching) reduces the real reference labels to latent size, against
   synth2real's ``labels_to_latent``;
6. ``--sd-widths``: a short walk on a UNet with SD 1.5's widths, where the reference's
   FreeU acts: synth2real with the reference's FreeU hooks, diffusers' FreeU, or none.

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

from tests.diffusion.reference import cactif, loader, locate, models, ours  # noqa: E402
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


def walk_variants(preset: str) -> list[tuple[str, ours.WalkOptions]]:
    """synth2real's walk as it is, then with the gaps closed one after another, then
    synth2real's defaults on top of all three closures."""
    closed = {"last_target": True, "reference_stats": True, "border_erodes": True}
    return [
        ("quirks mode as it is", ours.WalkOptions(preset)),
        ("+ last-step AdaIN target", ours.WalkOptions(preset, last_target=True)),
        (
            "+ AdaIN statistics sqrt(var + 1e-5)",
            ours.WalkOptions(preset, last_target=True, reference_stats=True),
        ),
        ("+ border erosion (all closed)", ours.WalkOptions(preset, **closed)),
        ("all closed, swap on every step", ours.WalkOptions(preset, swap_steps=None, **closed)),
        ("all closed, diffusers' FreeU", ours.WalkOptions(preset, freeu="diffusers", **closed)),
        (
            "quirks off (defaults, FreeU off)",
            ours.WalkOptions(preset, quirks=False, swap_steps=None),
        ),
    ]


def run_walks(tiny, labels, log) -> dict:
    style = models.random_image(tiny.image_hw, SEEDS["style image"])
    content = models.random_image(tiny.image_hw, SEEDS["content image"])
    inverted = None
    out: dict = {}
    for preset in PRESETS:
        official = cactif.OfficialCACTIF(tiny, preset)
        if inverted is None:
            inverted = official.invert_pair(style, content, seed=SEEDS["inversion"])
        t = time.time()
        walk = official.walk(*inverted, *labels)
        log(f"{preset}: official walk {time.time() - t:.0f} s")
        rows = []
        for name, opts in walk_variants(preset):
            mine = ours.walk(
                tiny,
                inverted[0].xts,
                inverted[1].xts,
                opts,
                label_content=labels[0],
                label_style=labels[1],
                num_classes=models.LABEL_CLASSES,
            )
            rows.append(
                {
                    "variant": name,
                    "after_adain": ours.per_step(walk.out, mine.after),
                    "before_adain": ours.per_step(walk.out_before_adain, mine.before),
                }
            )
        out[preset] = {
            "swapped_steps": [j for j, s in enumerate(walk.swapped) if s],
            "official_max_abs": [float(s[0].abs().max()) for s in walk.steps],
            "variants": rows,
        }
        log(
            f"{preset}: as is max {max(rows[0]['after_adain']):.1e}, all closed max "
            f"{max(rows[3]['after_adain']):.1e}"
        )
    return out


def run_small_classes(log) -> dict:
    tiny = models.tiny_sd(seed=SEEDS["unet"], sample_size=8)
    labels = models.latent_labels(tiny.latent_hw, framed=True)
    style = models.random_image(tiny.image_hw, SEEDS["style image"])
    content = models.random_image(tiny.image_hw, SEEDS["content image"])
    official = cactif.OfficialCACTIF(tiny, "cacti")
    inverted = official.invert_pair(style, content, seed=SEEDS["inversion"])
    walk = official.walk(*inverted, *labels)
    rows = []
    for name, opts in (
        ("quirks mode as it is", ours.WalkOptions("cacti")),
        ("+ AdaIN statistics", ours.WalkOptions("cacti", reference_stats=True)),
    ):
        mine = ours.walk(
            tiny, inverted[0].xts, inverted[1].xts, opts, label_content=labels[0],
            label_style=labels[1], num_classes=models.LABEL_CLASSES,
        )  # fmt: skip
        rows.append(
            {"variant": name, "before_adain": ours.per_step(walk.out_before_adain, mine.before)}
        )
    eroded = {
        name: int(ours.erode_border_zero(ours.slots(lab, models.LABEL_CLASSES)[None])[0].sum())
        for name, lab in zip(("content", "style"), labels, strict=True)
    }
    log(f"small classes: as is {max(rows[0]['before_adain']):.1e}")
    return {"latent": list(tiny.latent_hw), "rows": rows, "kept_after_erosion": eroded}


def run_noise(tiny, labels, log) -> dict:
    """The reference's dataset loop for one style and two contents (``run.py``)."""
    images = {k: models.random_image(tiny.image_hw, SEEDS[k]) for k in SEEDS if "image" in k}
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
            draws = cactif.reference_draws(s_inv.x0, SEEDS["inversion"])
            out["recipe_vs_style_levels"] = ours.max_abs(draws, s_inv.xts)
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
    traj = ours.ddim_trajectory(tiny, inv.content[-1:], steps)
    inputs = torch.cat([inv.content[-1:], traj[:-1, 0]])
    res["plain"] = {
        "inputs_per_step": ours.per_step(plain.inputs, inputs),
        "output_vs_port": ours.max_abs(traj[-1], plain.output),
    }
    full = port.sample(inv)
    no_adain = port.sample(inv, init_adain=False)
    rows = []
    for name, kw, ref_run in (
        ("synth2real as it is (6 layers, population std)", {}, full),
        ("port's 5 layers", {"layer_keys": port_styleid.port_layer_keys()}, full),
        (
            "port's 5 layers + port's AdaIN",
            {"layer_keys": port_styleid.port_layer_keys(), "port_adain": True},
            full,
        ),
        (
            "no initial AdaIN, port's 5 layers",
            {"layer_keys": port_styleid.port_layer_keys(), "adain": "none"},
            no_adain,
        ),
    ):
        mine = ours.styleid(tiny, inv.content_latent, inv.style_latent, steps=steps, **kw)
        mine_inputs = torch.cat([mine.initial, mine.steps[:-1, 0]])
        rows.append(
            {
                "variant": name,
                "initial": ours.max_abs(mine.initial, ref_run.initial),
                "inputs_per_step": ours.per_step(ref_run.inputs, mine_inputs),
                "output_vs_port": ours.max_abs(mine.steps[-1], ref_run.output),
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
            _, fitted = fit_to(np.zeros((*lab.shape, 3), np.uint8), lab, (512, 1024), "crop")
            row = {
                "name": s.name,
                "official_crack": int((official == pole).sum()),
                "official_none": int((official == 255).sum()),
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
    log(f"sd widths: {[(r['freeu'], max(r['before_adain'])) for r in rows]}")
    return {"steps": steps, "skip": skip, "latent": list(tiny.latent_hw), "rows": rows}


# --------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{v:.1e}"


def _groups(values: list[float]) -> list[str]:
    return [_fmt(max(values[a:b])) if values[a:b] else "-" for _, a, b in GROUPS]


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
        "50 steps, 30 skipped, 20 walked. Every number is the max abs difference of the "
        "out latent between the official run and synth2real's, fed the official "
        "inversion's levels.",
        "",
    ]
    w = rec["walks"]
    L += [
        f"## 1. CACTIF walk, latents {w['latent'][0]} x {w['latent'][1]}, classes touching the border",
        "",
        "After each step's AdaIN, max over the steps of each group (steps 0-1: the reference "
        "does not swap; 5-14: class-wise AdaIN for cacti/cactif; 19: the last step). "
        "synth2real runs with `reference_quirks`, `swap_steps=[2, 20]` and FreeU off (the "
        "reference's FreeU tests for 1280 and 640 channels, which this narrow UNet never "
        "has; see section 6). The variants close the known gaps one after another in the "
        "harness (`tests/diffusion/reference/ours.py`), then put synth2real's defaults back "
        "one at a time:",
        "",
        "- *last-step AdaIN target*: the reference's last global AdaIN aims at its style "
        "row after the last step, whose noise map it zeroed (the style's posterior mean "
        "`mu(x_1)`), synth2real's at the style's clean latent;",
        "- *AdaIN statistics*: the reference's standard deviations are `sqrt(var + 1e-5)` "
        "(unbiased variance in global AdaIN), synth2real's the population std;",
        "- *border erosion*: the reference erodes class masks with "
        "`scipy.ndimage.binary_erosion` (`border_value=0`: pixels on the image border "
        "erode, so they are neither counted nor transformed), synth2real does not erode "
        "the border;",
        "- *swap on every step*: synth2real's default `swap_steps=None` instead of the "
        "reference's lagging counter (no swap on steps 0 and 1);",
        "- *diffusers' FreeU*: synth2real's current default `freeu=True`;",
        "- *quirks off*: `reference_quirks=False`, every step swapped, FreeU off.",
        "",
    ]
    for preset, res in w["presets"].items():
        L += [
            f"### {preset}",
            "",
            f"Official out latent: max abs {max(res['official_max_abs']):.2f}; swapped steps "
            f"{res['swapped_steps'][0]}..{res['swapped_steps'][-1]}.",
            "",
            "| synth2real variant | " + " | ".join(f"steps {g[0]}" for g in GROUPS) + " |",
            "|---|" + "---|" * len(GROUPS),
        ]
        for row in res["variants"]:
            L.append(f"| {row['variant']} | " + " | ".join(_groups(row["after_adain"])) + " |")
        first = res["variants"][0]
        L += [
            "",
            "As it is, per step after AdaIN: " + " ".join(_fmt(v) for v in first["after_adain"]),
            "",
            "As it is, per step before AdaIN: " + " ".join(_fmt(v) for v in first["before_adain"]),
            "",
        ]
    sc = rec["small_classes"]
    L += [
        f"## 2. AdaIN statistics on small classes (cacti, {sc['latent'][0]} x {sc['latent'][1]}, "
        "labels off the border)",
        "",
        f"Latent pixels kept by the erosion: {sc['kept_after_erosion']}. Before each step's "
        "AdaIN (so the last-step target plays no part):",
        "",
        "| synth2real variant | " + " | ".join(f"steps {g[0]}" for g in GROUPS) + " |",
        "|---|" + "---|" * len(GROUPS),
    ]
    for row in sc["rows"]:
        L.append(f"| {row['variant']} | " + " | ".join(_groups(row["before_adain"])) + " |")
    n = rec["noise"]
    L += [
        "",
        "## 3. The reference's noise draws",
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
        "The draws themselves: `torch.manual_seed(42)`, then one `randn_like(x0)` per level "
        "from the last level (t = 1) to the first (t = 981) "
        f"(`cactif.reference_draws`): max abs difference to the style's levels "
        f"{_fmt(n['recipe_vs_style_levels'])}.",
        "",
    ]
    s = rec["styleid"]
    L += [
        f"## 4. StyleID against the authors' diffusers port ({s['steps']} DDIM steps, "
        f"latents {s['latent'][0]} x {s['latent'][1]})",
        "",
        f"- DDIM inversion end point: content {_fmt(s['inversion_end_point']['content'])}, "
        f"style {_fmt(s['inversion_end_point']['style'])} (z_T max abs "
        f"{s['inversion_end_point']['z_T_max_abs']:.2f}).",
        f"- Plain sampling (no AdaIN, no injection), UNet inputs per step: max "
        f"{_fmt(max(s['plain']['inputs_per_step']))}; result "
        f"{_fmt(s['plain']['output_vs_port'])} (the port returns the last step's x0 "
        "prediction, synth2real the last DDIM step, to `final_alpha_cumprod` = 0.99915).",
        "- Injected sampling: the port injects in 5 layers (its numbering 7..11: "
        "`up_blocks.2.attentions.1/2`, `up_blocks.3.attentions.0/1/2`), synth2real in 6 "
        "(also `up_blocks.2.attentions.0`); the port's initial AdaIN divides by "
        "`std + 1e-4` (unbiased `torch.std`), synth2real's by the population std. The "
        "result column includes the last-step difference above.",
        "",
        "| synth2real variant | initial latent | UNet inputs, max over steps | result |",
        "|---|---|---|---|",
    ]
    for row in s["injected"]:
        L.append(
            f"| {row['variant']} | {_fmt(row['initial'])} | {_fmt(max(row['inputs_per_step']))} "
            f"| {_fmt(row['output_vs_port'])} |"
        )
    lab = rec.get("labels")
    L += ["", "## 5. Reference label maps at latent size (cracks references)", ""]
    if lab:
        t = lab["total"]
        L += [
            f"{lab['images']} real reference labels of the cracks data, coloured in the "
            "Cityscapes palette (background = road, cracks = pole) and read by the "
            "reference's `process_label` (crop to 2:1, bicubic resize to 1024 x 512, "
            "bicubic resize to 128 x 64, exact palette match, 255 otherwise); "
            "synth2real: `labels_to_latent` of the same crop at 512 x 1024. Latent pixels, "
            f"all images together ({lab['latent_pixels_per_image']} per image):",
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
    L += ["", "## 6. FreeU at SD 1.5's widths (cross-image)", ""]
    if sd:
        L += [
            f"UNet widths 320/640/1280/1280, one layer per block; {sd['steps']} steps, "
            f"{sd['skip']} skipped; latents {sd['latent'][0]} x {sd['latent'][1]}. Before "
            "each step's AdaIN, max over the walk:",
            "",
            "| synth2real FreeU | max before AdaIN | max after AdaIN, last step excluded |",
            "|---|---|---|",
        ]
        for row in sd["rows"]:
            L.append(
                f"| {row['freeu']} | {_fmt(max(row['before_adain']))} | "
                f"{_fmt(max(row['after_adain'][:-1]))} |"
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
    raise SystemExit(main())
