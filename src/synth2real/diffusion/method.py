"""``DiffusionMethod``: what every Stable-Diffusion method shares behind ``Method``.

One subclass per pipeline: :class:`~synth2real.diffusion.cross_image.CrossImageMethod`
(the three-branch walk: ``adain-diffusion``, ``cross-image``, ``cacti``, ``cactif``) and
:class:`~synth2real.diffusion.styleid.StyleIDMethod` (``styleid``); the presets are named
parameter sets of them (:mod:`synth2real.methods.presets`). A subclass names its
parameters' dataclass (:mod:`.config`) and runs its walk on a batch of content latents;
this base loads the model on :meth:`~DiffusionMethod.prepare`, fits images to their
working size, encodes each reference once per working size, translates content images
in batches, halves a batch on out-of-memory, redoes a non-finite batch in float32, and
decodes and resizes the results back.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch

from synth2real.diffusion.config import PIPELINES, DiffusionConfig
from synth2real.diffusion.freeu import FreeUOptions, install_freeu
from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.layers import AttentionLayer, select_layers
from synth2real.diffusion.loading import DiffusionModels, NonFiniteError, load_models
from synth2real.errors import ConfigError
from synth2real.methods.base import Method, config_parameters

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
    """Base of the Stable-Diffusion methods (docs/METHOD.md, docs/DIFFUSION.md).

    ``Subclass(**params)`` takes the fields of the subclass's ``config_class`` (their
    defaults and documentation live there, and ``synth2real methods NAME`` lists them).
    The parameters of the other diffusion pipeline are accepted too and ignored with a
    warning, so one set of ``--param`` values serves every diffusion preset; so is
    ``pipeline``, when it names this method's own pipeline.

    Subclasses implement :meth:`_translate_latents` and may extend the hooks
    :meth:`_prepare_size`, :meth:`_drop_reference_caches`, :meth:`_default_seeds` and
    :meth:`_dtype_changed`.
    """

    needs_gpu = True
    #: the dataclass of the method's parameters
    config_class: ClassVar[type[DiffusionConfig]] = DiffusionConfig
    #: the method's key in :data:`~synth2real.diffusion.config.PIPELINES`
    pipeline: ClassVar[str] = ""

    def __init__(self, **params: Any):
        super().__init__()
        self.config = self._make_config(params)
        self.batch_size = self.config.batch_size
        self._models: DiffusionModels | None = None
        self._layers: list[AttentionLayer] = []
        self._schedule: Schedule | None = None
        self._ref_latents: dict[Size, torch.Tensor] = {}
        self._batch_limit: int | None = None  # lowered after an out-of-memory error
        #: the FreeU the UNet runs with while this method translates (docs/DIFFUSION.md)
        self.freeu = FreeUOptions.parse(self.config.freeu, self.config.freeu_params)

    # -- parameters ------------------------------------------------------------------------
    @classmethod
    def compatible_parameters(cls) -> list[inspect.Parameter]:
        """``pipeline`` and the other pipelines' parameters: accepted, and ignored."""
        own = {f.name for f in fields(cls.config_class)}
        kind = inspect.Parameter.KEYWORD_ONLY
        out = {
            "pipeline": inspect.Parameter(
                "pipeline", kind, default=cls.pipeline, annotation=Literal[tuple(PIPELINES)]
            )
        }
        for config in PIPELINES.values():
            if config is cls.config_class:
                continue
            for p in config_parameters(config):
                if p.name not in own and p.name not in out:
                    out[p.name] = p
        return list(out.values())

    def _make_config(self, params: dict[str, Any]) -> DiffusionConfig:
        pipeline = params.pop("pipeline", self.pipeline)
        if pipeline != self.pipeline:
            others = ", ".join(f"{k!r}" for k in PIPELINES if k != self.pipeline)
            raise ConfigError(
                f"pipeline={pipeline!r}: {type(self).__name__} runs the {self.pipeline!r} "
                f"pipeline; choose a preset of the other one ({others}) instead"
            )
        own = {f.name for f in fields(self.config_class)}
        compatible = {p.name for p in self.compatible_parameters()}
        ignored = sorted(k for k in params if k not in own and k in compatible)
        if ignored:
            log.warning(
                "%s does not use %s (parameters of another diffusion pipeline): ignored",
                type(self).__name__,
                ", ".join(ignored),
            )
        return self.config_class(**{k: v for k, v in params.items() if k not in ignored})

    # -- models ----------------------------------------------------------------------------
    @property
    def models(self) -> DiffusionModels:
        """The loaded models (loaded on first use)."""
        if self._models is None:
            cfg = self.config
            self.set_models(load_models(cfg.model, device=cfg.device, dtype=cfg.dtype))
            self._announce()
        return self._models  # type: ignore[return-value]

    def _announce(self) -> None:
        """Say once per model load where and how the method runs (the CLI shows it)."""
        m = self._models
        if m is None:
            return
        name = self.name or "diffusion"
        log.info(
            "%s: model %s on %s, UNet in %s, working size %s, batches of %d",
            name,
            m.source or self.config.model,
            m.device,
            str(m.dtype).removeprefix("torch."),
            self.config.working_size,
            self.batch_size,
        )
        if m.device.type == "cpu":
            log.warning(
                "%s runs on the CPU: it works, but expect minutes per image at working size "
                "512 (a GPU is tens of times faster; device=auto uses one when torch sees it)",
                name,
            )

    def set_models(self, models: DiffusionModels) -> None:
        """Use already loaded models (e.g. several presets sharing one set of weights)."""
        self.close()
        cfg = self.config
        unet = models.unet
        layers = select_layers(
            unet, part="up", self_attention=True, resolutions=cfg.swap_resolutions
        )
        if cfg.compile:
            models.unet = torch.compile(unet)
        self._models = models
        self._layers = layers
        self._schedule = Schedule.from_scheduler(models.scheduler, cfg.num_inference_steps)
        self._drop_reference_caches()

    def _drop_reference_caches(self) -> None:
        """Forget everything computed from the references (hook: subclasses extend it)."""
        self._ref_latents.clear()

    def close(self) -> None:
        """Drop the models and every cached reference latent."""
        self._models = None
        self._drop_reference_caches()

    # -- life cycle ------------------------------------------------------------------------
    def prepare(self, references) -> None:
        """Load the model and, with a fixed ``working_size`` pair, prepare every reference
        now; with an int working size this happens on first use of each size (once for
        all content images of that size)."""
        super().prepare(references)
        self._drop_reference_caches()
        _ = self.models
        if isinstance(self.config.working_size, tuple):
            self._prepare_size(self.config.working_size)

    def _prepare_size(self, size: Size) -> None:
        """What the references need at working size ``size`` (hook: the latents here)."""
        self._reference_latents(size)

    def size_for(self, height: int, width: int) -> Size:
        """The working size of an ``height x width`` input (see :func:`working_size`)."""
        return working_size(height, width, self.config.working_size, self.models.size_multiple)

    def _reference_latents(self, size: Size) -> torch.Tensor:
        """``(R, C, h, w)`` float32 latents of the references fitted to ``size``."""
        if size not in self._ref_latents:
            refs = self.check_prepared()
            m = self.models
            lats = []
            for img, lab in zip(refs.images, refs.labels, strict=True):
                fitted, _ = fit_to(img, lab, size, self.config.reference_fit)
                lats.append(m.encode(_to_tensor([fitted]).to(m.device)))
            self._ref_latents[size] = torch.cat(lats)
        return self._ref_latents[size]

    def apply(self, image: np.ndarray, label: np.ndarray | None, ref: int) -> np.ndarray:
        return self.apply_batch([image], [label], [ref])[0]

    def apply_batch(self, images, labels, refs, seeds=None) -> list[np.ndarray]:
        """Translate several images (as :meth:`Method.apply_batch`): grouped by working
        size, ``batch_size`` at a time.

        ``images`` may have any sizes; ``labels`` are needed with class-wise AdaIN;
        ``seeds`` (one per image, for the inversion noise; the translate runner passes
        seeds made from the run's seed and the sample's name) default to seeds made from
        the method's ``seed`` and the image's pixels. Either way an image's result does
        not depend on which images share its batch. The results have each label map's
        size (the image's size without one).
        """
        references = self.check_prepared()
        n = len(images)
        if len(labels) != n or len(refs) != n or (seeds is not None and len(seeds) != n):
            raise ConfigError("apply_batch: images, labels, refs and seeds differ in length")
        for r in refs:
            if not 0 <= int(r) < len(references):
                raise ConfigError(f"reference index {r} out of range (0..{len(references) - 1})")
        if self.needs_reference_labels and any(lab is None for lab in labels):
            raise ConfigError(
                f"method {self.name!r} uses class-wise AdaIN and needs the label map of every "
                "content image; use a global preset (cross-image, adain-diffusion) for unlabelled data"
            )
        if seeds is None:
            seeds = self._default_seeds(images)
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

    def _default_seeds(self, images: Sequence[np.ndarray]) -> list[int]:
        """Seeds of images given none (hook: deterministic pipelines draw no noise)."""
        return [0] * len(images)

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
        # FreeU is on for every UNet call of the batch (inversion included) and off
        # afterwards, so that methods sharing one UNet each get their own
        with torch.no_grad(), install_freeu(m.unet, self.freeu):
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
                self._dtype_changed()
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

    def _dtype_changed(self) -> None:
        """The UNet moved to float32 (hook: drop what depends on its dtype)."""

    def _translate_latents(self, batch: _Batch, content: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` float32 clean latents of the translations of ``batch``, whose
        clean content latents are ``content``."""
        raise NotImplementedError


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
