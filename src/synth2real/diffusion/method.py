"""``DiffusionMethod``: the Stable-Diffusion methods behind the ``Method`` interface.

One class, five presets (``adain-diffusion``, ``cross-image``, ``cacti``, ``cactif``,
``styleid``; see :mod:`.presets`). The method loads the model on :meth:`prepare`, encodes
and draws each reference once per working size, and translates content images in batches
that share one style row per distinct reference.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

from synth2real.diffusion.adain import labels_to_latent
from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.layers import select_layers
from synth2real.diffusion.loading import (
    DEFAULT_MODEL,
    DiffusionModels,
    NonFiniteError,
    load_models,
)
from synth2real.diffusion.pipeline import ReferenceBank, WalkConfig, content_masks, cross_image_walk
from synth2real.diffusion.processors import AttentionState, install_processors, restore_processors
from synth2real.diffusion.styleid import StyleIDConfig, styleid_transfer
from synth2real.errors import ConfigError
from synth2real.methods.base import Method, References

log = logging.getLogger("synth2real.diffusion")

Size = tuple[int, int]


def working_size(height: int, width: int, size: int | Size, multiple: int) -> Size:
    """The size an image is translated at.

    ``size`` an int: the shorter side becomes ``size``, the longer one keeps the aspect
    ratio, and both are rounded to the nearest multiple of ``multiple`` (at least one
    multiple). ``size`` a pair: exactly ``(height, width)``, each a multiple of
    ``multiple``.

    Examples (SD 1.5, multiple 64): 512x512 -> 512x512; 1024x2048 -> 512x1024;
    350x512 -> 512x768; 720x1280 -> 512x896.
    """
    if isinstance(size, (tuple, list)):
        h, w = (int(v) for v in size)
        if h <= 0 or w <= 0 or h % multiple or w % multiple:
            raise ConfigError(
                f"working_size {tuple(size)}: both sides must be positive multiples of {multiple}"
            )
        return h, w
    s = int(size)
    if s < multiple:
        raise ConfigError(f"working_size {s} is smaller than the model's size multiple {multiple}")
    scale = s / min(height, width)

    def snap(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return snap(height * scale), snap(width * scale)


def fit_to(image: np.ndarray, label: np.ndarray | None, size: Size, mode: str):
    """Resize an image (and its label map, nearest) to ``size = (h, w)``.

    ``mode="crop"``: scale to cover the size keeping the aspect ratio, then crop the
    centre; ``"stretch"``: resize to the size, changing the aspect ratio.
    """
    h, w = size
    ih, iw = image.shape[:2]
    if mode == "crop" and (ih, iw) != (h, w):
        scale = max(h / ih, w / iw)
        nh, nw = max(h, math.ceil(ih * scale - 1e-9)), max(w, math.ceil(iw * scale - 1e-9))
        image = _resize(image, (nh, nw))
        label = (
            None if label is None else cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
        )
        y, x = (nh - h) // 2, (nw - w) // 2
        image = image[y : y + h, x : x + w]
        label = None if label is None else label[y : y + h, x : x + w]
        return np.ascontiguousarray(image), None if label is None else np.ascontiguousarray(label)
    if (ih, iw) != (h, w):
        image = _resize(image, (h, w))
        label = (
            None if label is None else cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        )
    return image, label


def _resize(image: np.ndarray, size: Size) -> np.ndarray:
    h, w = size
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image
    shrink = h * w < ih * iw
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def pixel_seed(seed: int, image: np.ndarray, salt: str = "") -> int:
    """A 63-bit seed from the method's seed and the image's pixels: the noise drawn for
    an image does not depend on batch layout, order, workers or shards."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{salt}:{int(seed)}:{image.shape}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return int.from_bytes(h.digest(), "little") % (2**63 - 1)


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    arr = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    x = ((image.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


class DiffusionMethod(Method):
    """Stable-Diffusion style transfer towards the references (StyleID, cross-image
    attention, CACTI, CACTIF), as specified in docs/METHOD.md and docs/DIFFUSION.md.

    Args:
        model: Stable Diffusion weights: a hub id (from the local Hugging Face cache or the
            hub) or a local folder in diffusers layout. Default: SD 1.5,
            ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
        device: ``auto`` (the process's GPU under accelerate, else cuda, mps, cpu), or
            ``cuda``, ``cuda:N``, ``mps``, ``cpu``. Default ``auto``.
        dtype: UNet precision: ``auto`` (float16 on GPUs, float32 on CPU), ``float32``,
            ``float16`` or ``bfloat16``. Latent maths stays float32; a half-precision VAE
            that gives NaNs is moved to float32, and a batch whose UNet output is not
            finite is redone in float32 (with a warning). Default ``auto``.
        pipeline: ``three-branch`` (out/style/content walk: adain-diffusion, cross-image,
            cacti, cactif) or ``styleid``. Default ``three-branch``; the ``styleid``
            preset sets ``styleid``.
        working_size: the size images are translated at: an int sets the shorter side
            (the other keeps the aspect ratio; both rounded to the model's multiple, 64
            for SD 1.5), a pair ``[height, width]`` sets both. The output is resized back
            to the label map's exact size. Default 512.
        reference_fit: how a reference is brought to a content's working size: ``crop``
            (cover, keep aspect, centre crop) or ``stretch``. Default ``crop``.
        num_inference_steps: scheduler steps ``T``. Default 50.
        skip: steps ``S`` skipped before denoising starts (30 of 50: 20 steps from
            t=381 with SD 1.5). Default 30; ``styleid`` sets 0 (full inversion).
        swap: replace the out element's keys/values by its style's in the edited layers
            (cross-image attention). Default True; ``adain-diffusion`` sets False.
        sharpen: attention sharpening ``s`` of the swapped attention,
            ``clamp(s*A + (1-s)/N, 0, 1)``; 1 = none. Default 1.67.
        swap_resolutions: how many of the finest decoder resolutions hold edited
            self-attention layers (2 = SD 1.5's up_blocks.2 and .3). Default 2.
        swap_steps: ``[start, end)`` denoising steps (0-based among the ``T - S`` run)
            with the swap; None = every step. Default None.
        adain: latent AdaIN of out towards its style after every step: ``none``,
            ``global``, or ``classwise`` (class-wise on ``classwise_steps``, global on the
            others; needs label maps). StyleID: applied to the initial latent only
            (``none`` or ``global``). Default ``global``; ``cacti`` and ``cactif`` set
            ``classwise``.
        classwise_steps: ``[start, end)`` denoising steps with class-wise AdaIN. Default
            [5, 15].
        erosion: erosion iterations (3x3 cross) of the class masks at latent size before
            their statistics are computed; classes that vanish use their whole mask.
            0 = none. Default 1.
        thin_share: how label maps reach latent size (one label per 8x8 block): 0 = the
            block's majority class; e.g. 0.25 = the rarest class covering at least a
            quarter of the block, so thin classes (cracks) survive. Default 0.0.
        filtering: CACTIF's selective attention filtering (needs swap). Default False;
            ``cactif`` sets True.
        filter_p: the filter's quantile ``p`` (useful range 0.1 to 0.3). Default 0.25.
        adain_sigma_offset: added to both standard deviations of class-wise AdaIN (the
            reference code uses 1.0); None = 0.0, or 1.0 with ``reference_quirks``.
            Default None.
        reference_quirks: reproduce the reference code's class-wise AdaIN: pixels removed
            by erosion, of classes missing from the reference, of no class, and of class
            index >= 19 stay untouched; sigma offset 1; the last noise map zeroed.
            Default False.
        gamma: StyleID query preservation: ``Q = gamma*Q_content + (1-gamma)*Q``
            (0.3 gives stronger style). Default 0.75.
        tau: StyleID temperature on the attention logits. Default 1.5.
        freeu: diffusers' built-in FreeU on the UNet (see docs/DIFFUSION.md). Default True;
            ``styleid`` sets False (StyleID has no FreeU).
        freeu_params: FreeU factors ``[s1, s2, b1, b2]``. Default [0.9, 0.2, 1.2, 1.4].
        batch_size: content images translated together (they share the style rows).
            On out-of-memory a batch is retried in halves, and later batches stay at
            the size that fitted. Default 4.
        attention_chunk: queries per attention chunk in the edited layers; None = chosen
            from a 1 GiB budget per chunk. Default None.
        seed: seed of the inversion noise (combined with each image's pixels, so results
            do not depend on batching, order or sharding). Default 0.
        compile: ``torch.compile`` the UNet (experimental; pays off on long GPU runs).
            Default False.
    """

    needs_gpu = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        pipeline: Literal["three-branch", "styleid"] = "three-branch",
        working_size: int | tuple[int, int] = 512,
        reference_fit: Literal["crop", "stretch"] = "crop",
        num_inference_steps: int = 50,
        skip: int = 30,
        swap: bool = True,
        sharpen: float = 1.67,
        swap_resolutions: int = 2,
        swap_steps: tuple[int, int] | None = None,
        adain: Literal["none", "global", "classwise"] = "global",
        classwise_steps: tuple[int, int] = (5, 15),
        erosion: int = 1,
        thin_share: float = 0.0,
        filtering: bool = False,
        filter_p: float = 0.25,
        adain_sigma_offset: float | None = None,
        reference_quirks: bool = False,
        gamma: float = 0.75,
        tau: float = 1.5,
        freeu: bool = True,
        freeu_params: tuple[float, float, float, float] = (0.9, 0.2, 1.2, 1.4),
        batch_size: int = 4,
        attention_chunk: int | None = None,
        seed: int = 0,
        compile: bool = False,
    ):
        super().__init__()
        self.model = str(model)
        self.device = str(device)
        self.dtype = str(dtype)
        self.pipeline = pipeline
        self.working_size = (
            tuple(working_size) if isinstance(working_size, (list, tuple)) else int(working_size)
        )
        self.reference_fit = reference_fit
        self.num_inference_steps = int(num_inference_steps)
        self.skip = int(skip)
        self.swap = bool(swap)
        self.sharpen = float(sharpen)
        self.swap_resolutions = int(swap_resolutions)
        self.swap_steps = None if swap_steps is None else tuple(int(v) for v in swap_steps)
        self.adain = adain
        self.classwise_steps = tuple(int(v) for v in classwise_steps)
        self.erosion = int(erosion)
        self.thin_share = float(thin_share)
        self.filtering = bool(filtering)
        self.filter_p = float(filter_p)
        self.adain_sigma_offset = None if adain_sigma_offset is None else float(adain_sigma_offset)
        self.reference_quirks = bool(reference_quirks)
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.freeu = bool(freeu)
        self.freeu_params = tuple(float(v) for v in freeu_params)
        self.batch_size = int(batch_size)
        self.attention_chunk = None if attention_chunk is None else int(attention_chunk)
        self.seed = int(seed)
        self.compile = bool(compile)
        self._validate()
        # class-wise AdaIN needs a label map for every reference
        self.needs_reference_labels = self.adain == "classwise"  # type: ignore[misc]
        self._models: DiffusionModels | None = None
        self._state = AttentionState()
        self._previous_processors: dict | None = None
        self._schedule: Schedule | None = None
        self._ref_latents: dict[Size, torch.Tensor] = {}
        self._banks: dict[Size, ReferenceBank] = {}
        self._batch_limit: int | None = None  # lowered after an out-of-memory error

    # -- parameters ------------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        if self.pipeline not in ("three-branch", "styleid"):
            bad(f"pipeline must be three-branch or styleid, got {self.pipeline!r}")
        if self.reference_fit not in ("crop", "stretch"):
            bad(f"reference_fit must be crop or stretch, got {self.reference_fit!r}")
        if self.adain not in ("none", "global", "classwise"):
            bad(f"adain must be none, global or classwise, got {self.adain!r}")
        if self.pipeline == "styleid" and self.adain == "classwise":
            bad("styleid normalises its initial latent only: adain must be none or global")
        if self.num_inference_steps < 1:
            bad(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if not 0 <= self.skip < self.num_inference_steps:
            bad(f"skip must be in [0, num_inference_steps - 1], got {self.skip}")
        if isinstance(self.working_size, tuple) and len(self.working_size) != 2:
            bad(f"working_size must be an int or [height, width], got {self.working_size}")
        if self.sharpen <= 0:
            bad(f"sharpen must be positive, got {self.sharpen}")
        if self.swap_resolutions < 1:
            bad(f"swap_resolutions must be >= 1, got {self.swap_resolutions}")
        for name in ("swap_steps", "classwise_steps"):
            rng = getattr(self, name)
            if rng is not None and (len(rng) != 2 or rng[0] < 0 or rng[1] < rng[0]):
                bad(f"{name} must be [start, end) with 0 <= start <= end, got {rng}")
        if self.erosion < 0:
            bad(f"erosion must be >= 0, got {self.erosion}")
        if not 0.0 <= self.thin_share <= 1.0:
            bad(f"thin_share must be in [0, 1], got {self.thin_share}")
        if self.filtering and not self.swap:
            bad("filtering acts on the swapped attention: it needs swap=True")
        if not 0.0 <= self.filter_p <= 1.0:
            bad(f"filter_p must be in [0, 1], got {self.filter_p}")
        if not 0.0 <= self.gamma <= 1.0:
            bad(f"gamma must be in [0, 1], got {self.gamma}")
        if self.tau <= 0:
            bad(f"tau must be positive, got {self.tau}")
        if len(self.freeu_params) != 4:
            bad(f"freeu_params must be [s1, s2, b1, b2], got {self.freeu_params}")
        if self.batch_size < 1:
            bad(f"batch_size must be >= 1, got {self.batch_size}")
        if self.attention_chunk is not None and self.attention_chunk < 1:
            bad(f"attention_chunk must be >= 1 or None, got {self.attention_chunk}")

    @property
    def sigma_offset(self) -> float:
        if self.adain_sigma_offset is not None:
            return self.adain_sigma_offset
        return 1.0 if self.reference_quirks else 0.0

    def _walk_config(self) -> WalkConfig:
        return WalkConfig(
            num_inference_steps=self.num_inference_steps,
            skip=self.skip,
            swap=self.swap,
            sharpen=self.sharpen,
            swap_steps=self.swap_steps,  # type: ignore[arg-type]
            filtering=self.filtering,
            filter_p=self.filter_p,
            adain=self.adain,
            classwise_steps=self.classwise_steps,  # type: ignore[arg-type]
            sigma_offset=self.sigma_offset,
            quirks=self.reference_quirks,
            chunk_size=self.attention_chunk,
        )

    def _styleid_config(self) -> StyleIDConfig:
        return StyleIDConfig(
            num_inference_steps=self.num_inference_steps,
            skip=self.skip,
            gamma=self.gamma,
            tau=self.tau,
            adain=self.adain,
            chunk_size=self.attention_chunk,
        )

    # -- models ----------------------------------------------------------------------------
    @property
    def models(self) -> DiffusionModels:
        """The loaded models (loaded on first use)."""
        if self._models is None:
            self.set_models(load_models(self.model, device=self.device, dtype=self.dtype))
        return self._models  # type: ignore[return-value]

    def set_models(self, models: DiffusionModels) -> None:
        """Use already loaded models (e.g. several presets sharing one set of weights)."""
        self.close()
        unet = models.unet
        layers = select_layers(
            unet, part="up", self_attention=True, resolutions=self.swap_resolutions
        )
        if self.freeu:
            s1, s2, b1, b2 = self.freeu_params
            unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
        else:
            unet.disable_freeu()
        self._previous_processors = install_processors(unet, layers, self._state)
        if self.compile:
            models.unet = torch.compile(unet)
        self._models = models
        self._layers = layers
        self._schedule = Schedule.from_scheduler(models.scheduler, self.num_inference_steps)
        self._ref_latents.clear()
        self._banks.clear()

    def close(self) -> None:
        """Restore the UNet's own processors and drop cached reference latents."""
        if self._models is not None and self._previous_processors is not None:
            unet = getattr(self._models.unet, "_orig_mod", self._models.unet)
            restore_processors(unet, self._previous_processors)
        self._previous_processors = None
        self._models = None
        self._ref_latents.clear()
        self._banks.clear()

    # -- life cycle ------------------------------------------------------------------------
    def prepare(self, references: References) -> None:
        """Load the model and, with a fixed ``working_size`` pair, encode and draw every
        reference now; with an int working size this happens on first use of each size
        (once for all content images of that size)."""
        super().prepare(references)
        self._ref_latents.clear()
        self._banks.clear()
        _ = self.models
        if isinstance(self.working_size, tuple):
            self._bank(self.working_size)  # type: ignore[arg-type]

    def size_for(self, height: int, width: int) -> Size:
        """The working size of an ``height x width`` input (see :func:`working_size`)."""
        return working_size(height, width, self.working_size, self.models.size_multiple)

    def _reference_latents(self, size: Size) -> torch.Tensor:
        if size not in self._ref_latents:
            refs = self.check_prepared()
            m = self.models
            lats = []
            for img, lab in zip(refs.images, refs.labels, strict=True):
                fitted, _ = fit_to(img, lab, size, self.reference_fit)
                lats.append(m.encode(_to_tensor([fitted]).to(m.device)))
            self._ref_latents[size] = torch.cat(lats)
        return self._ref_latents[size]

    def _bank(self, size: Size) -> ReferenceBank:
        if size not in self._banks:
            refs = self.check_prepared()
            m = self.models
            lats = self._reference_latents(size)
            k = refs.classes.num_classes
            latent_hw = (lats.shape[2], lats.shape[3])
            slots: list[torch.Tensor | None] = []
            for img, lab in zip(refs.images, refs.labels, strict=True):
                if lab is None or self.adain != "classwise":
                    slots.append(None)
                    continue
                _, fitted = fit_to(img, lab, size, self.reference_fit)
                sl = labels_to_latent(
                    fitted, size, latent_hw, k, refs.classes.ignore_index, self.thin_share
                )
                slots.append(torch.from_numpy(sl).to(m.device))
            seeds = [pixel_seed(self.seed, img, "reference") for img in refs.images]
            self._banks[size] = ReferenceBank(
                lats,
                slots,
                self._schedule,  # type: ignore[arg-type]
                self.skip,
                seeds,
                num_classes=k if self.adain == "classwise" else 0,
                erosion=self.erosion,
                quirks=self.reference_quirks,
            )
        return self._banks[size]

    def apply(self, image: np.ndarray, label: np.ndarray | None, ref: int) -> np.ndarray:
        return self.apply_batch([image], [label], [ref])[0]

    def reference_indices(self, ref: int) -> list[int]:
        """References that shape the output for chosen ``ref``: all of them with class-wise
        AdaIN (a class missing from ``ref`` takes statistics pooled over the others),
        else ``ref`` alone."""
        refs = self.check_prepared()
        if self.adain == "classwise" and not self.reference_quirks:
            return list(range(len(refs)))
        return [ref]

    def apply_batch(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray | None],
        refs: Sequence[int],
        seeds: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """Translate several images: grouped by working size, ``batch_size`` at a time.

        Args:
            images: ``HxWx3 uint8`` RGB content images (any sizes).
            labels: their ``HxW uint8`` label maps (class-wise AdaIN needs them), or None.
            refs: the reference index of each image.
            seeds: one seed per image for its inversion noise (the translate runner passes
                seeds made from the run's seed and the sample's name); None = seeds made
                from ``seed`` and the image's pixels. Either way an image's result does
                not depend on which images share its batch.

        Returns:
            ``HxWx3 uint8`` images of each label map's size (the image's size without one).
        """
        references = self.check_prepared()
        n = len(images)
        if len(labels) != n or len(refs) != n or (seeds is not None and len(seeds) != n):
            raise ConfigError("apply_batch: images, labels, refs and seeds differ in length")
        for r in refs:
            if not 0 <= int(r) < len(references):
                raise ConfigError(f"reference index {r} out of range (0..{len(references) - 1})")
        if self.adain == "classwise" and any(lab is None for lab in labels):
            raise ConfigError(
                f"method {self.name!r} uses class-wise AdaIN and needs the label map of every "
                "content image; use a global preset (cross-image, adain-diffusion) for unlabelled data"
            )
        if seeds is None:
            seeds = [pixel_seed(self.seed, img, "content") for img in images]
        groups: dict[Size, list[int]] = {}
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ConfigError(f"expected HxWx3 uint8 images, got {img.shape} {img.dtype}")
            groups.setdefault(self.size_for(*img.shape[:2]), []).append(i)
        results: list[np.ndarray | None] = [None] * n
        for size, idxs in groups.items():
            step = min(self.batch_size, self._batch_limit or self.batch_size)
            for start in range(0, len(idxs), step):
                chunk = idxs[start : start + step]
                batch = _Batch(
                    size=size,
                    images=[images[i] for i in chunk],
                    labels=[labels[i] for i in chunk],
                    refs=[int(refs[i]) for i in chunk],
                    seeds=[int(seeds[i]) for i in chunk],
                )
                for i, out in zip(chunk, self._run(batch), strict=True):
                    results[i] = out
        return results  # type: ignore[return-value]

    # -- one batch -------------------------------------------------------------------------
    def _run(self, batch: _Batch) -> list[np.ndarray]:
        """Translate one batch; on out-of-memory, retry in halves (and keep the halved
        batch size for the rest of the run)."""
        try:
            return self._run_once(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2
            log.warning("out of memory with %d images per batch; retrying in halves", len(batch))
            self._batch_limit = max(1, half)  # the parameter itself stays as given
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return self._run(batch.part(0, half)) + self._run(batch.part(half, len(batch)))

    def _run_once(self, batch: _Batch) -> list[np.ndarray]:
        m = self.models
        fitted = [_resize(img, batch.size) for img in batch.images]
        with torch.no_grad():
            content = m.encode(_to_tensor(fitted).to(m.device))
            latents = self._translate_latents(batch, content)
            if not bool(torch.isfinite(latents).all()):
                if m.dtype == torch.float32:
                    raise NonFiniteError(
                        f"{self.name}: the UNet produced NaN/inf latents in float32"
                    )
                note = (
                    f"{self.name}: NaN/inf latents with the UNet in {m.dtype}; "
                    "redone in float32, and the UNet stays in float32 for this run"
                )
                log.warning(note)
                m.notes.append(note)
                m.to_dtype(torch.float32)
                latents = self._translate_latents(batch, content)
                if not bool(torch.isfinite(latents).all()):
                    raise NonFiniteError(
                        f"{self.name}: the UNet produced NaN/inf latents in float32"
                    )
            outs = []
            for b, img in enumerate(batch.images):
                dec = _to_uint8(m.decode(latents[b : b + 1])[0])
                lab = batch.labels[b]
                oh, ow = lab.shape if lab is not None else img.shape[:2]
                outs.append(_resize(dec, (oh, ow)))
        return outs

    def _translate_latents(self, batch: _Batch, content: torch.Tensor) -> torch.Tensor:
        m = self.models
        references = self.check_prepared()
        if self.pipeline == "styleid":
            ref_lats = self._reference_latents(batch.size)
            unique = list(dict.fromkeys(batch.refs))
            styles = ref_lats[torch.tensor(unique, device=ref_lats.device)]
            return styleid_transfer(
                m,
                self._schedule,  # type: ignore[arg-type]
                self._styleid_config(),
                self._state,
                content,
                styles,
                [unique.index(r) for r in batch.refs],
            )
        bank = self._bank(batch.size)
        masks = None
        if self.adain == "classwise":
            k = references.classes.num_classes
            hw = (content.shape[2], content.shape[3])
            slots = [
                labels_to_latent(
                    lab,  # type: ignore[arg-type]
                    batch.size,
                    hw,
                    k,
                    references.classes.ignore_index,
                    self.thin_share,
                )
                for lab in batch.labels
            ]
            masks = content_masks(torch.from_numpy(np.stack(slots)).to(m.device), k, self.erosion)
        return cross_image_walk(
            m,
            self._schedule,  # type: ignore[arg-type]
            self._walk_config(),
            self._state,
            content,
            batch.seeds,
            bank,
            batch.refs,
            masks,
        )


@dataclass
class _Batch:
    """Content images translated together (one working size)."""

    size: Size
    images: list[np.ndarray]
    labels: list[np.ndarray | None]
    refs: list[int]
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.images)

    def part(self, start: int, end: int) -> _Batch:
        return _Batch(
            self.size,
            self.images[start:end],
            self.labels[start:end],
            self.refs[start:end],
            self.seeds[start:end],
        )
