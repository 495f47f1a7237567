"""Import the official code unchanged, and the few patches it needs on a CPU with current
diffusers. Every patch is listed here, and none changes what the code computes:

1. ``.cuda()`` (CACTIF's ``utils/adain.py`` and FreeU's ``Fourier_filter``) becomes a no-op
   while the official code runs (:func:`cuda_is_cpu`);
2. ``diffusers.models.unet_2d_condition`` (moved to ``diffusers.models.unets``) is aliased
   in ``sys.modules`` while ``models/unet_2d_condition.py`` is imported;
3. ``utils/attention_utils.should_mix_keys_and_values`` compares token counts with
   ``32*64`` and ``64*128`` (a 512x1024 input): :func:`token_counts_for` replaces it, for
   the duration of a run, by the same rule with the counts of the run's latent size
   (``(h/2)*(w/2)`` and ``h*w``; at 64x128 these are the original numbers);
4. the text encoder: the code is given a tiny CLIP tokenizer and text encoder
   (:mod:`.models`) instead of SD's; StyleID's script reads the tokenizer, text encoder,
   VAE, scheduler, its own module object and ``guidance_scale`` as globals of
   ``__main__``, which :func:`styleid_globals` sets on the imported module;
5. imports the used code never calls (``matplotlib.pyplot`` and ``imageio`` in StyleID's
   script) are stubbed when those packages are not installed;
6. display only: the progress bars (``tqdm``) are silenced while the code runs;
7. current diffusers' ``StableDiffusionPipeline.__init__`` takes ``image_encoder`` before
   ``requires_safety_checker``: the reference pipeline subclass hands its arguments on
   positionally and its own signature has no ``image_encoder``, so diffusers' component
   check fails; :func:`drop_image_encoder` removes that (empty) entry from the pipeline's
   configuration;
8. the pipeline calls ``self._encode_prompt``, which diffusers 0.19 ended with the prompt
   embeddings (``cat([negative, positive])`` only with classifier-free guidance) and
   current diffusers always ends with ``cat([negative, positive])``, failing without
   guidance: :func:`encode_prompt_as_0_19` gives the instance the 0.19 behaviour on top of
   current diffusers' ``encode_prompt``.

The two code bases use the same top-level module names (``config``, ``utils``), so each is
imported with its folder on ``sys.path`` and its modules taken out of ``sys.modules``
afterwards; ``utils/adain.py`` seeds torch and numpy at import, so the random states are
restored around the import.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .locate import CACTIF, STYLEID, require


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore torch's and numpy's global random states on exit (the CACTIF code calls
    ``torch.manual_seed(42)`` at import and inside class-wise AdaIN)."""
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state is what it seeds
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(np_state)  # noqa: NPY002


@contextlib.contextmanager
def cuda_is_cpu() -> Iterator[None]:
    """``Tensor.cuda()`` returns the tensor itself (patch 1)."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _import_isolated(
    folder: Path, tops: set[str], names: list[str], stubs: dict[str, types.ModuleType]
) -> types.SimpleNamespace:
    """Import ``names`` from ``folder`` and return every module of ``tops`` they loaded,
    leaving ``sys.path`` and ``sys.modules`` as they were (except the imported libraries)."""
    saved = {k: v for k, v in sys.modules.items() if _top(k) in tops}
    for k in saved:
        del sys.modules[k]
    added = {k: v for k, v in stubs.items() if k not in sys.modules}
    sys.modules.update(added)
    sys.path.insert(0, str(folder))
    try:
        with preserved_rng():
            for name in names:
                importlib.import_module(name)
        loaded = {k: v for k, v in sys.modules.items() if _top(k) in tops}
    finally:
        sys.path.remove(str(folder))
        for k in [k for k in sys.modules if _top(k) in tops]:
            del sys.modules[k]
        sys.modules.update(saved)
        for k in added:
            sys.modules.pop(k, None)
    ns = types.SimpleNamespace()
    for k, v in loaded.items():
        setattr(ns, k.replace(".", "_"), v)
    return ns


@functools.cache
def cactif() -> types.SimpleNamespace:
    """The official CACTIF modules (``ns.cactif_model``, ``ns.models_stable_diffusion``,
    ``ns.models_unet_2d_condition``, ``ns.utils_attention_utils``, ``ns.utils_adain``,
    ``ns.utils_ddpm_inversion``, ``ns.utils_latent_utils``, ``ns.config``, ...).
    Skips the calling test when the code is absent."""
    folder = require(CACTIF)
    alias = "diffusers.models.unet_2d_condition"
    added_alias = False
    if importlib.util.find_spec("einops") is None:
        import pytest

        pytest.skip("the CACTIF reference code needs einops (pip install einops)")
    try:
        importlib.import_module(alias)
    except ImportError:
        from diffusers.models.unets import unet_2d_condition

        sys.modules[alias] = unet_2d_condition  # patch 2
        added_alias = True
    try:
        return _import_isolated(
            folder,
            {"config", "constants", "palettes", "cactif_model", "models", "utils"},
            ["cactif_model", "palettes", "utils.latent_utils", "utils.mask_utils"],
            {},
        )
    finally:
        if added_alias:
            del sys.modules[alias]


def _stub(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__doc__ = "stub: imported by the StyleID script, never called by the parity harness"
    return mod


@functools.cache
def styleid() -> types.SimpleNamespace:
    """The StyleID diffusers port (``ns.run_styleid_diffusers``, ``ns.stable_diffusion``).
    Skips the calling test when the code is absent."""
    folder = require(STYLEID)
    # the libraries first: while the stubs are in sys.modules, a library probing for
    # matplotlib (diffusers does, at import) would trip over them
    for lib in ("cv2", "diffusers", "transformers", "tqdm"):
        importlib.import_module(lib)
    stubs: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("matplotlib") is None:  # patch 5
        stubs["matplotlib"] = _stub("matplotlib")
        stubs["matplotlib.pyplot"] = _stub("matplotlib.pyplot")
        stubs["matplotlib"].pyplot = stubs["matplotlib.pyplot"]  # type: ignore[attr-defined]
    if importlib.util.find_spec("imageio") is None:
        stubs["imageio"] = _stub("imageio")
    return _import_isolated(
        folder,
        {"config", "utils", "stable_diffusion", "run_styleid_diffusers"},
        ["run_styleid_diffusers"],
        stubs,
    )


@contextlib.contextmanager
def token_counts_for(latent_hw: tuple[int, int]) -> Iterator[list[tuple[int, int]]]:
    """Patch 3: the swap layers of a ``latent_hw`` latent instead of a 64x128 one.

    Yields a list that receives ``(model.step, tokens)`` each time a layer swaps (the
    caller may clear it between steps)."""
    au = cactif().utils_attention_utils
    mixed: list[tuple[int, int]] = []
    original = au.should_mix_keys_and_values
    h, w = latent_hw
    n32, n64 = (h // 2) * (w // 2), h * w

    def should_mix_keys_and_values(model, hidden_states: torch.Tensor) -> bool:
        # the reference's rule verbatim, with its two token counts taken from latent_hw
        is_in_32_timestep_range = (
            model.config.cross_attn_32_range.start
            <= model.step
            < model.config.cross_attn_32_range.end
        )
        is_in_64_timestep_range = (
            model.config.cross_attn_64_range.start
            <= model.step
            < model.config.cross_attn_64_range.end
        )
        is_hidden_states_32 = hidden_states.shape[1] == n32
        is_hidden_states_64 = hidden_states.shape[1] == n64
        should_mix = (is_in_64_timestep_range and is_hidden_states_64) or (
            is_in_32_timestep_range and is_hidden_states_32
        )
        if should_mix:
            mixed.append((int(model.step), int(hidden_states.shape[1])))
        return should_mix

    au.should_mix_keys_and_values = should_mix_keys_and_values
    try:
        yield mixed
    finally:
        au.should_mix_keys_and_values = original


@contextlib.contextmanager
def styleid_globals(**values) -> Iterator[types.ModuleType]:
    """Patch 4 (StyleID): set the script's ``__main__`` globals on the imported module."""
    mod = styleid().run_styleid_diffusers
    missing = object()
    old = {k: getattr(mod, k, missing) for k in values}
    for k, v in values.items():
        setattr(mod, k, v)
    try:
        yield mod
    finally:
        for k, v in old.items():
            if v is missing:
                delattr(mod, k)
            else:
                setattr(mod, k, v)


def _no_bar(iterable=None, *args, **kwargs):
    return iterable


@contextlib.contextmanager
def quiet_progress(ns: types.SimpleNamespace) -> Iterator[None]:
    """Patch 6 (display only): ``tqdm`` in the modules of ``ns`` returns its iterable."""
    mods = [m for m in vars(ns).values() if hasattr(m, "tqdm")]
    old = [m.tqdm for m in mods]
    for m in mods:
        m.tqdm = _no_bar
    try:
        yield
    finally:
        for m, o in zip(mods, old, strict=True):
            m.tqdm = o


def drop_image_encoder(pipe) -> None:
    """Patch 7: forget the ``image_encoder`` entry that the reference pipeline's signature
    does not know (it holds None: SD 1.5 has no image encoder)."""
    from diffusers.configuration_utils import FrozenDict

    if getattr(pipe, "image_encoder", None) is not None:
        raise RuntimeError("the reference pipeline was given an image encoder")
    cfg = {k: v for k, v in pipe._internal_dict.items() if k != "image_encoder"}
    pipe._internal_dict = FrozenDict(cfg)


def encode_prompt_as_0_19(pipe) -> None:
    """Patch 8: ``pipe._encode_prompt`` as in diffusers 0.19."""

    def _encode_prompt(
        prompt,
        device,
        num_images_per_prompt,
        do_classifier_free_guidance,
        negative_prompt=None,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        lora_scale=None,
    ):
        positive, negative = pipe.encode_prompt(
            prompt,
            device,
            num_images_per_prompt,
            do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            lora_scale=lora_scale,
        )
        return torch.cat([negative, positive]) if do_classifier_free_guidance else positive

    pipe._encode_prompt = _encode_prompt
