"""Outputs of every diffusion preset on a tiny random model: record them, compare them.

Written before the diffusion package was split into one method class per pipeline, to
prove the split changed no number: ``record`` stores the final latents (what the VAE
decodes) and the uint8 images of every case below; ``check`` recomputes them and prints
the largest difference per case (0.0 everywhere = bitwise identical).

    python -m tests.diffusion.golden record /tmp/before.npz
    python -m tests.diffusion.golden check /tmp/before.npz

``tests/diffusion/test_golden.py`` runs the cheap cases against the stored
``tests/diffusion/data/golden.npz`` on every test run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from tests.diffusion.helpers import blobs, make_references

#: few steps, tiny images: every code path, seconds on a CPU
BASE = dict(working_size=64, num_inference_steps=5, skip=2, classwise_steps=(1, 3), batch_size=2)
STYLEID = dict(BASE, skip=1)

#: case name -> (preset, parameter overrides); every preset and every parameter path
CASES: dict[str, tuple[str, dict]] = {
    "adain-diffusion": ("adain-diffusion", BASE),
    "cross-image": ("cross-image", BASE),
    "cacti": ("cacti", BASE),
    "cactif": ("cactif", BASE),
    "styleid": ("styleid", STYLEID),
    "cacti-quirks": ("cacti", dict(BASE, reference_quirks=True)),
    "cactif-options": (
        "cactif",
        dict(
            BASE,
            adain_sigma_offset=0.5,
            erosion=0,
            thin_share=0.0,
            swap_steps=(1, 2),
            attention_chunk=16,
            sharpen=1.3,
            filter_p=0.1,
        ),
    ),
    "cactif-quirks-size": (
        "cactif",
        dict(BASE, reference_quirks=True, working_size=(64, 96), reference_fit="stretch"),
    ),
    "cross-image-options": (
        "cross-image",
        dict(BASE, adain="none", freeu=False, swap_resolutions=1, reference_fit="stretch"),
    ),
    "adain-classwise": ("adain-diffusion", dict(BASE, adain="classwise", erosion=2)),
    "styleid-options": (
        "styleid",
        dict(STYLEID, gamma=0.3, tau=1.2, adain="none", style_cache_gb=0, skip=2, freeu=True),
    ),
    "styleid-freeu-params": (
        "styleid",
        dict(STYLEID, freeu=True, freeu_params=(0.8, 0.3, 1.1, 1.3), attention_chunk=8),
    ),
}
#: the cases the test suite recomputes on every run
CHEAP = ("adain-diffusion", "cross-image", "cacti", "cactif", "styleid", "cacti-quirks")


def _model_dir(root: Path) -> Path:
    try:
        from tests.diffusion.tiny import save_tiny_model
    except ImportError:  # before the tiny models moved to the tests
        from synth2real.diffusion.tiny import save_tiny_model  # type: ignore[no-redef]
    return save_tiny_model(root / "tiny-sd")


def run_case(name: str, model_dir: Path) -> dict[str, np.ndarray]:
    """Translate four images (two batches, three references) with case ``name``."""
    from synth2real.diffusion.loading import DiffusionModels
    from synth2real.methods import create_method

    preset, params = CASES[name]
    method = create_method(preset, model=str(model_dir), **params)
    refs = make_references(n=3, h=72, w=96, k=3)
    items = [blobs(64, 64, 3, seed=1), blobs(70, 100, 3, seed=2)]
    items += [blobs(64, 64, 3, seed=3), blobs(64, 80, 3, seed=4)]
    images, labels = [i for i, _ in items], [lab for _, lab in items]
    decoded: list[torch.Tensor] = []
    decode = DiffusionModels.decode

    def recording(self, latents):
        decoded.append(latents.detach().cpu().clone())
        return decode(self, latents)

    DiffusionModels.decode = recording  # type: ignore[method-assign]
    try:
        method.prepare(refs)
        outs = method.apply_batch(images, labels, [0, 1, 2, 1], seeds=[11, 12, 13, 14])
        outs += method.apply_batch(images[:2], labels[:2], [1, 0])  # seeds from pixels
    finally:
        DiffusionModels.decode = decode  # type: ignore[method-assign]
        method.close()
    out = {f"image{i}": o for i, o in enumerate(outs)}
    out.update({f"latent{i}": d.numpy() for i, d in enumerate(decoded)})
    return out


def compute(names, model_dir: Path) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    flat = {}
    for name in names:
        for key, value in run_case(name, model_dir).items():
            flat[f"{name}/{key}"] = value
    return flat


def differences(stored: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest absolute difference per case (images in grey levels, latents as floats)."""
    out: dict[str, float] = {}
    for key in set(got) - set(stored):  # an output the recording does not have
        out[key.split("/")[0]] = float("inf")
    for key, want in stored.items():
        case = key.split("/")[0]
        have = got.get(key)
        if have is None or have.shape != want.shape:
            out[case] = float("inf")
            continue
        d = float(np.abs(have.astype(np.float64) - want.astype(np.float64)).max())
        out[case] = max(out.get(case, 0.0), d)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "check"):
        print(__doc__)
        return 2
    path = Path(argv[1])
    names = list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        got = compute(names, _model_dir(Path(tmp)))
    if argv[0] == "record":
        np.savez_compressed(path, **got)
        print(f"recorded {len(names)} cases ({len(got)} arrays) in {path}")
        return 0
    stored = dict(np.load(path))
    diffs = differences(stored, got)
    for case in names:
        print(f"{case:24s} max abs diff {diffs.get(case, float('nan'))}")
    return 0 if all(d == 0.0 for d in diffs.values()) and len(diffs) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
