"""Run the official CACTIF code (inversion, sampling loop, attention processors, AdaIN
callback) on tiny models, recording every step.

What runs is the reference's own code: ``utils/ddpm_inversion.invert``,
``utils/latent_utils.get_init_latents_and_noises``, ``CACTIFModel`` (its attention
processor on every attention layer and its AdaIN callback) and
``CrossImageAttentionStableDiffusionPipeline.__call__`` with ``FreeUUNet2DConditionModel``,
with only the patches of :mod:`.loader`. What is left out is file handling: reading
images and colour label PNGs, saving latents and outputs (``run.py``,
``load_latents_couple``), and ``set_onehot_masks``, whose masks nothing reads and whose
``view(..., 512, 1024)`` only fits 512x1024 labels. Label maps are given at latent size
(``label_content_adain`` / ``label_style_adain``: class ids ``0..18``, 255 = none),
which is what ``process_label`` produces from colour PNGs at 512x1024.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import loader
from .models import TinySD, ddim_scheduler

#: synth2real preset -> the reference's ``RunConfig`` fields for it (README of CACTIF)
PRESETS: dict[str, dict] = {
    "cross-image": {"name": "cross_image", "filtering": False, "adain_class": False},
    "cacti": {"name": "CACTI", "filtering": False, "adain_class": True},
    "cactif": {"name": "CACTIF", "filtering": True, "adain_class": True},
}


@dataclass
class Inverted:
    """Edit-friendly inversion of one image, as the reference returns it.

    Attributes:
        xts: ``(T + 1, C, h, w)`` levels ``0 .. T`` (``xts[T]`` = the clean latent).
        zs: ``(T, C, h, w)`` noise maps (the reference zeroes ``zs[-1]``).
    """

    xts: Tensor
    zs: Tensor

    @property
    def x0(self) -> Tensor:
        return self.xts[-1]


@dataclass
class OfficialWalk:
    """One official walk.

    Attributes:
        steps: after each denoising step's AdaIN callback, ``(3, C, h, w)`` rows
            ``[out, style, content]``.
        before: the same rows after the DDPM step, before the callback.
        swapped: per step, whether any layer swapped keys and values.
        skip: steps skipped before the walk.
    """

    steps: list[Tensor]
    before: list[Tensor] = field(default_factory=list)
    swapped: list[bool] = field(default_factory=list)
    skip: int = 30

    @property
    def out(self) -> Tensor:
        """``(n_steps, C, h, w)``: the out row after every step."""
        return torch.stack([s[0] for s in self.steps])

    @property
    def out_before_adain(self) -> Tensor:
        """``(n_steps, C, h, w)``: the out row of every step before its AdaIN."""
        return torch.stack([s[0] for s in self.before])


def freeu_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``unet`` (same weights) as the reference's ``FreeUUNet2DConditionModel``
    (a subclass that only overrides ``forward``)."""
    cls = loader.cactif().models_unet_2d_condition.FreeUUNet2DConditionModel
    if not isinstance(unet, cls.__mro__[1]):
        raise TypeError(f"expected a UNet2DConditionModel, got {type(unet).__name__}")
    copy_ = copy.deepcopy(unet)
    copy_.__class__ = cls
    return copy_.eval().requires_grad_(False)


class OfficialCACTIF:
    """The official pipeline and ``CACTIFModel`` on a copy of ``tiny``'s UNet (same weights;
    its attention processors are the reference's, ``tiny.unet`` itself is not touched).

    Args:
        tiny: the models.
        preset: ``cross-image``, ``cacti`` or ``cactif`` (:data:`PRESETS`).
        **config: further ``RunConfig`` fields (``num_timesteps``, ``skip_steps``, ...).
    """

    def __init__(self, tiny: TinySD, preset: str, **config):
        ref = loader.cactif()
        self.tiny = tiny
        unet = freeu_unet(tiny.unet)
        pipe_cls = ref.models_stable_diffusion.CrossImageAttentionStableDiffusionPipeline
        pipe = pipe_cls(
            vae=tiny.vae,
            text_encoder=tiny.text_encoder,
            tokenizer=tiny.tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            # the subclass hands its 8th argument on positionally; current diffusers put
            # ``image_encoder`` in that place (before ``requires_safety_checker``), so it
            # gets this value: None, as SD 1.5 has no image encoder
            requires_safety_checker=None,
        )
        loader.drop_image_encoder(pipe)
        loader.encode_prompt_as_0_19(pipe)
        pipe.set_progress_bar_config(disable=True)
        self._tmp = tempfile.TemporaryDirectory()  # RunConfig creates its latents folders
        cfg = ref.config.RunConfig(latents_path=Path(self._tmp.name), **PRESETS[preset], **config)
        self.config = cfg
        self.model = ref.cactif_model.CACTIFModel(cfg, pipe=pipe)
        self.model.pipe.scheduler.set_timesteps(cfg.num_timesteps)

    @property
    def pipe(self):
        return self.model.pipe

    def invert(self, image: Tensor) -> Inverted:
        """``utils/latent_utils.invert_one_image`` without its file I/O: the reference's
        edit-friendly inversion of ``image (1, 3, H, W)`` in [-1, 1], drawing its noise from
        torch's global generator."""
        ref = loader.cactif()
        self.model.enable_edit = False
        with torch.no_grad(), loader.cuda_is_cpu(), loader.quiet_progress(ref):
            zs, xts = ref.utils_ddpm_inversion.invert(
                x0=image,
                pipe=self.pipe,
                prompt_src=self.config.prompt,
                num_diffusion_steps=self.config.num_timesteps,
                cfg_scale_src=3.5,
            )
        self.model.enable_edit = True
        return Inverted(xts=xts.detach().clone(), zs=zs.detach().clone())

    def invert_pair(
        self, style: Tensor, content: Tensor, seed: int = 42
    ) -> tuple[Inverted, Inverted]:
        """Style first, then content, from ``torch.manual_seed(seed)`` (``run.py``'s
        ``set_seed(cfg.seed)`` before the first pair); torch's global state is restored."""
        with loader.preserved_rng():
            torch.manual_seed(seed)
            return self.invert(style), self.invert(content)

    def walk(
        self,
        style: Inverted,
        content: Inverted,
        label_content: np.ndarray | None = None,
        label_style: np.ndarray | None = None,
        *,
        first_image: bool = True,
        isolate_rng: bool = True,
    ) -> OfficialWalk:
        """``run.run_style_transfer`` with latents: the 20 steps and the AdaIN callback.

        Args:
            style, content: their inversions.
            label_content, label_style: ``(h, w)`` uint8 label maps at latent size (class
                ids < 19, 255 = none); needed by class-wise presets.
            first_image: the model's step counter starts at 0 (the first image of a run);
                False: at the last step of a previous image, as for every later image.
            isolate_rng: restore torch's global random state afterwards; False lets the
                class-wise AdaIN's ``torch.manual_seed(42)`` carry over to what runs next
                (the next image's inversion), as in the reference's dataset loop.
        """
        ref = loader.cactif()
        cfg, m = self.config, self.model
        m.label_content_adain, m.label_style_adain = label_content, label_style
        m.set_latents(style.xts.clone(), content.xts.clone())
        m.set_noise(style.zs.clone(), content.zs.clone())
        init_latents, init_zs = ref.utils_latent_utils.get_init_latents_and_noises(model=m, cfg=cfg)
        m.pipe.scheduler.set_timesteps(cfg.num_timesteps)
        m.enable_edit = True
        m.step = 0 if first_image else cfg.num_timesteps - cfg.skip_steps - 1

        steps: list[Tensor] = []
        before: list[Tensor] = []
        swapped: list[bool] = []
        adain_callback = m.get_adain_callback()

        def callback(i: int, t: int, latents: Tensor) -> None:
            before.append(latents.detach().clone())
            adain_callback(i, t, latents)
            steps.append(latents.detach().clone())
            swapped.append(bool(mixed))
            mixed.clear()

        start = min(cfg.cross_attn_32_range.start, cfg.cross_attn_64_range.start)
        end = max(cfg.cross_attn_32_range.end, cfg.cross_attn_64_range.end)
        with (
            torch.no_grad(),
            loader.cuda_is_cpu(),
            loader.preserved_rng() if isolate_rng else contextlib.nullcontext(),
            loader.token_counts_for(self.tiny.latent_hw) as mixed,
            loader.quiet_progress(ref),
        ):
            m.pipe(
                prompt=[cfg.prompt] * 3,
                latents=init_latents,
                guidance_scale=1.0,
                num_inference_steps=cfg.num_timesteps,
                swap_guidance_scale=cfg.swap_guidance_scale,
                callback=callback,
                eta=1,
                zs=init_zs,
                generator=torch.Generator("cpu").manual_seed(cfg.seed),
                cross_image_attention_range=ref.config.Range(start=start, end=end),
                output_type="latent",
            )
        return OfficialWalk(steps=steps, before=before, swapped=swapped, skip=cfg.skip_steps)


def reference_draws(x0: Tensor, seed: int, steps: int = 50) -> Tensor:
    """The levels the reference's inversion draws for ``x0 (C, h, w)`` right after
    ``torch.manual_seed(seed)``: ``sample_xts_from_x0`` draws ``randn_like(x0)`` on torch's
    global generator once per level, from the last level (``t = 1``) up to the first
    (``t = 981``), and keeps ``x0`` as level ``T``. Returns ``(T + 1, C, h, w)``, before
    the inversion's float-level correction of levels ``1 .. T``.

    Since ``utils/adain.py`` calls ``torch.manual_seed(42)`` inside every class-wise
    AdaIN, every image inverted after a class-wise walk (and every style image) gets
    exactly these draws with ``seed = 42``.
    """
    sch = ddim_scheduler()
    sch.set_timesteps(steps)
    abar = sch.alphas_cumprod
    out = torch.zeros((steps + 1, *x0.shape))
    with loader.preserved_rng():
        torch.manual_seed(seed)
        for idx in reversed(range(steps)):
            t = int(sch.timesteps[idx])
            noise = torch.randn_like(x0)
            out[idx] = x0 * abar[t] ** 0.5 + noise * (1 - abar[t]) ** 0.5
    out[steps] = x0
    return out


def noise_of(inv: Inverted, steps: int = 50) -> Tensor:
    """The unit noise of each drawn level: ``(x_i - sqrt(abar_i) x0) / sqrt(1 - abar_i)``,
    ``(T, C, h, w)``."""
    sch = ddim_scheduler()
    sch.set_timesteps(steps)
    rows = []
    for idx in range(steps):
        a = float(sch.alphas_cumprod[int(sch.timesteps[idx])])
        rows.append((inv.xts[idx] - math.sqrt(a) * inv.x0) / math.sqrt(1 - a))
    return torch.stack(rows)
