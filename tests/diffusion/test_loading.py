"""Model loading from a diffusers folder, devices, dtypes, hub ids vs paths, compile."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.loading import _local_folder, load_models, resolve_device, resolve_dtype
from synth2real.errors import ConfigError, ModelNotFoundError
from synth2real.methods import create_method
from tests.diffusion.helpers import blobs, make_references


def test_load_a_saved_model_folder(tiny_model_dir):
    m = load_models(tiny_model_dir, device="cpu", dtype="float32")
    assert m.device == torch.device("cpu") and m.dtype == torch.float32
    assert m.vae_scale_factor == 8 and m.size_multiple == 32 and m.latent_channels == 4
    assert m.prompt_embeds.shape == (1, 8, 8)  # tokenizer max length 8, width 8
    # the noise schedule comes from the folder's (PNDM, as SD 1.5's) scheduler config
    assert Schedule.from_scheduler(m.scheduler, 50).timesteps[30] == 381
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    lat = m.encode(x)
    assert lat.shape == (1, 4, 8, 12) and lat.dtype == torch.float32
    assert m.decode(lat).shape == (1, 3, 64, 96)
    bf = load_models(tiny_model_dir, device="cpu", dtype="bf16")
    assert bf.dtype == torch.bfloat16 and next(bf.unet.parameters()).dtype == torch.bfloat16
    assert bf.prompt_embeds.dtype == torch.bfloat16
    assert bf.predict(torch.zeros(1, 4, 8, 8), 10).dtype == torch.float32


def test_a_folder_with_only_fp16_variant_files_loads(tmp_path):
    from tests.diffusion.tiny import save_tiny_model

    folder = save_tiny_model(tmp_path / "fp16", variant="fp16")
    assert list((folder / "unet").glob("*.fp16.safetensors"))
    m = load_models(folder, device="cpu", dtype="float32")
    assert m.predict(torch.zeros(1, 4, 8, 8), 10).shape == (1, 4, 8, 8)


def test_devices_and_dtypes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto").type in ("cpu", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError):
        resolve_device("abacus")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("fp32") == torch.float32
    with pytest.raises(ConfigError):
        resolve_dtype("float8")


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    assert _local_folder("stable-diffusion-v1-5/stable-diffusion-v1-5") is None
    assert _local_folder(str(tmp_path)) == tmp_path
    for bad in ("./sd15", "models/sd/v15", str(tmp_path / "missing"), "~/nothing-here-xyz"):
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            _local_folder(bad)


def test_compile_wraps_the_unet_and_the_edits_reach_the_module(tiny_model_dir, monkeypatch):
    compiled = []

    class Wrapped(torch.nn.Module):
        def __init__(self, mod):
            super().__init__()
            self._orig_mod = mod

        def forward(self, *a, **k):
            compiled.append(1)
            return self._orig_mod(*a, **k)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._orig_mod, name)

    monkeypatch.setattr(torch, "compile", lambda mod, **kw: Wrapped(mod))
    m = create_method(
        "cross-image",
        model=str(tiny_model_dir),
        working_size=64,
        num_inference_steps=4,
        skip=1,
        compile=True,
    )
    m.prepare(make_references(n=1))
    unet = m.models.unet._orig_mod
    before = dict(unet.attn_processors)
    seen = set()
    layer = m._layers[0].module
    hook = layer.register_forward_pre_hook(lambda mod, a: seen.add(type(mod.processor).__name__))
    img, lab = blobs(64, 64, 3)
    try:
        assert m.apply(img, lab, 0).shape == img.shape
    finally:
        hook.remove()
    assert len(compiled) == 3  # every UNet call went through the compiled module
    assert seen == {"SwapProcessor"}  # installed on the module inside the wrapper
    assert unet.attn_processors == before  # and removed again
