"""Loading Stable Diffusion components, devices, dtypes and VAE encode/decode.

``load_models(model)`` accepts a hub id (default SD 1.5,
``stable-diffusion-v1-5/stable-diffusion-v1-5``, from the local Hugging Face cache; from
the hub only when the user named the id, see :func:`allow_download`) or a local folder in diffusers layout (``unet/``, ``vae/``, ``scheduler/``,
``text_encoder/``, ``tokenizer/``; what ``save_pretrained`` or ``hf download`` writes).
The safety checker and feature extractor are never loaded. The text encoder runs once
for the empty prompt and is then released.

Precision: the UNet runs in the requested dtype; latents, the sampler's maths and the
statistics stay float32. The VAE starts in the same dtype; if encoding or decoding
gives non-finite values in half precision it is moved to float32 (once, with a warning)
and the call is redone, so NaNs never reach an output image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from synth2real.diffusion.config import DEFAULT_MODEL
from synth2real.errors import ConfigError, ModelNotFoundError, Synth2RealError
from synth2real.hub import cached_folder, hub_offline

log = logging.getLogger("synth2real.diffusion")

_SUBFOLDERS = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class NonFiniteError(Synth2RealError, FloatingPointError):
    """The model produced NaN or infinite values even in float32."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the process's GPU under ``accelerate launch``/``torchrun`` (``LOCAL_RANK``),
    else ``cuda``, else ``mps``, else ``cpu``. Explicit names (``cuda:1``, ``cpu``) are
    checked for availability."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
            return torch.device("cuda", rank % max(torch.cuda.device_count(), 1))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r} (auto, cuda, cuda:N, mps, cpu)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for but CUDA is not available; use device=auto or cpu"
        )
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"device {device!r} asked for but MPS is not available")
    return dev


def resolve_dtype(
    dtype: str | torch.dtype = "auto", device: torch.device | None = None
) -> torch.dtype:
    """``"auto"``: float16 on CUDA and MPS, float32 on the CPU; or float32/float16/bfloat16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).strip().lower()
    if name == "auto":
        return (
            torch.float16
            if device is not None and device.type in ("cuda", "mps")
            else torch.float32
        )
    if name not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}: auto, float32, float16 or bfloat16")
    return _DTYPES[name]


@dataclass
class DiffusionModels:
    """The loaded components the pipelines need.

    Attributes:
        unet: ``UNet2DConditionModel`` in ``dtype`` on ``device``, in eval mode.
        vae: ``AutoencoderKL`` on ``device`` (dtype may be upgraded to float32, see module).
        scheduler: the model's scheduler (its config defines the noise schedule).
        prompt_embeds: ``(1, L, D)`` text embeddings of the empty prompt, in ``dtype``.
        device, dtype: where and in which precision the UNet runs.
        source: what was loaded (hub id or folder), for the manifest.
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    prompt_embeds: Tensor
    device: torch.device
    dtype: torch.dtype
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.unet.eval().requires_grad_(False)
        self.vae.eval().requires_grad_(False)

    # -- geometry ----------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (64 for SD 1.5: VAE 8 x UNet 8)."""
        from synth2real.diffusion.layers import size_multiple

        return self.vae_scale_factor * size_multiple(self.unet)

    # -- UNet ------------------------------------------------------------------------------
    def predict(self, x: Tensor, timestep: int | Tensor) -> Tensor:
        """The UNet's raw output for float32 latents ``x (n, C, h, w)`` at ``timestep``
        (an int, or a 0-d tensor already on the device: no host transfer), empty prompt,
        as float32."""
        emb = self.prompt_embeds.expand(x.shape[0], -1, -1)
        t = timestep if isinstance(timestep, Tensor) else torch.tensor(timestep, device=self.device)
        out = self.unet(x.to(self.dtype), t, encoder_hidden_states=emb, return_dict=False)[0]
        return out.float()

    def to_dtype(self, dtype: torch.dtype) -> None:
        """Move the UNet (and the prompt embeddings) to another dtype."""
        self.unet.to(dtype=dtype)
        self.prompt_embeds = self.prompt_embeds.to(dtype=dtype)
        self.dtype = dtype

    # -- VAE -------------------------------------------------------------------------------
    @property
    def _scaling(self) -> tuple[float, float]:
        cfg = self.vae.config
        shift = getattr(cfg, "shift_factor", None)
        return float(cfg.scaling_factor), float(shift) if shift is not None else 0.0

    def _vae_upcast(self, what: str) -> bool:
        if next(self.vae.parameters()).dtype == torch.float32:
            return False
        note = f"the VAE gave non-finite values in {self.vae.dtype} while {what}; it now runs in float32"
        log.warning(note)
        self.notes.append(note)
        self.vae.to(dtype=torch.float32)
        return True

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """``images (n, 3, H, W)`` float in [-1, 1] -> float32 latents ``(n, C, H/f, W/f)``
        (``latent_dist.mode()`` times the scaling factor)."""
        scale, shift = self._scaling
        while True:
            vdt = next(self.vae.parameters()).dtype
            lat = self.vae.encode(images.to(self.device, vdt)).latent_dist.mode().float()
            if bool(torch.isfinite(lat).all()):
                return (lat - shift) * scale
            if not self._vae_upcast("encoding"):
                raise NonFiniteError("the VAE encoder produced NaN/inf values even in float32")

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """float32 latents -> images ``(n, 3, H, W)`` float32 clamped to [-1, 1]."""
        scale, shift = self._scaling
        while True:
            vdt = next(self.vae.parameters()).dtype
            img = self.vae.decode(
                (latents / scale + shift).to(self.device, vdt), return_dict=False
            )[0]
            img = img.float()
            if bool(torch.isfinite(img).all()):
                return img.clamp_(-1.0, 1.0)
            if not self._vae_upcast("decoding"):
                raise NonFiniteError("the VAE decoder produced NaN/inf values even in float32")


def _how_to_provide(model: str) -> str:
    return (
        "Provide Stable Diffusion weights in one of these ways:\n"
        f"  1. on a machine with internet: `hf download {DEFAULT_MODEL} --local-dir sd15 "
        '--include "unet/*" "vae/*" "text_encoder/*" "tokenizer/*" "scheduler/*" "model_index.json"` '
        "(or `huggingface-cli download ...`), copy the folder here and pass "
        "`--param model=/path/to/sd15`;\n"
        "  2. let the hub download it on first use: unset HF_HUB_OFFLINE and run with internet "
        "(the files go to the Hugging Face cache, ~5 GB);\n"
        "  3. point HF_HOME (or HF_HUB_CACHE) at a cache that already holds it.\n"
        f"Any folder in diffusers layout works (unet/, vae/, scheduler/, text_encoder/, tokenizer/); "
        f"asked for: {model!r}."
    )


#: hub ids the user named (``--diffusion-model ID``): only these, and ids other than the default,
#: may be downloaded; the default model is otherwise read from the local cache alone
_NAMED: set[str] = set()


def allow_download(model: str) -> None:
    """The user asked for the hub id ``model``: loading it may download it."""
    _NAMED.add(str(model))


def _may_download(model: str) -> bool:
    return not hub_offline() and (model != DEFAULT_MODEL or model in _NAMED)


def _cached(model: str) -> Path | None:
    """The hub id's snapshot folder in the local cache (no network), or ``None``."""
    return cached_folder(model, "unet/config.json")


def check_weights(model: str | os.PathLike, what: str = "this method") -> None:
    """Fail fast, without the network, when ``model``'s weights cannot be had.

    A local folder must exist and have the diffusers layout; a hub id must be in the
    local cache, or be one the user named (:func:`allow_download`, or any id but the
    default) while the hub is not offline.

    Raises:
        ModelNotFoundError: one line saying what is missing and how to provide it.
    """
    name = os.fspath(model)
    folder = _local_folder(name)
    if folder is not None:
        _check_folder(folder)
        return
    if _cached(name) is not None or _may_download(name):
        return
    folder_hint = (
        "a folder in diffusers layout (--diffusion-model /path/to/sd15, or --param model=...)"
    )
    get = f"fetch it with `hf download {name} --local-dir sd15` on a machine with internet"
    if name == DEFAULT_MODEL and not hub_offline():
        why = f"none were given and the default {name} is not in the local Hugging Face cache"
        ways = f"pass {folder_hint}, --diffusion-model {name} to download it (~5 GB), or {get}"
    else:
        why = f"{name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        ways = f"pass {folder_hint}, unset HF_HUB_OFFLINE to download it, or {get}"
    raise ModelNotFoundError(f"{what} needs Stable Diffusion weights: {why}; {ways}")


def check_device(device: str, what: str = "this method", cpu_hint: str = "--device cpu") -> None:
    """A diffusion method on ``device="auto"`` needs a GPU: on a machine without one the
    user must ask for the CPU explicitly (``cpu_hint``), knowing it is very slow.

    Raises:
        ConfigError: no GPU for ``auto``, or the named device is not available.
    """
    dev = resolve_device(device)
    if str(device).strip().lower() == "auto" and dev.type == "cpu":
        raise ConfigError(
            f"{what} needs a GPU and torch sees none (no CUDA or MPS device); pass "
            f"{cpu_hint} to run it on the CPU anyway (minutes per image at working size 512)"
        )


def _local_folder(model: str) -> Path | None:
    """The folder ``model`` names, ``None`` for a hub id (``owner/name``)."""
    p = Path(model).expanduser()
    if p.exists():
        return p
    parts = model.split("/")
    hub_id = (
        len(parts) <= 2 and all(parts) and not model.startswith((".", "~")) and "\\" not in model
    )
    if not hub_id:
        raise ModelNotFoundError(f"model folder {p} does not exist.\n" + _how_to_provide(model))
    return None


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder} is not a folder.\n" + _how_to_provide(str(folder)))
    missing = [s for s in _SUBFOLDERS if not (folder / s).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"{folder} is not a complete diffusers model folder: missing "
            f"{', '.join(m + '/' for m in missing)}.\n" + _how_to_provide(str(folder))
        )


def _load(cls, model: str, subfolder: str, local: bool, **kw):
    kwargs = dict(subfolder=subfolder, **kw)
    if local:
        kwargs["local_files_only"] = True
    try:
        return cls.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as first:
        # weights stored only as the fp16 variant
        if "torch_dtype" in kw:
            try:
                return cls.from_pretrained(model, variant="fp16", **kwargs)
            except (OSError, ValueError):
                pass
        raise ModelNotFoundError(
            f"could not load {subfolder}/ of {model!r}: {first}\n" + _how_to_provide(model)
        ) from first


@torch.no_grad()
def empty_prompt_embeddings(tokenizer, text_encoder, device: torch.device) -> Tensor:
    """``(1, L, D)`` embeddings of the empty prompt (padded to the tokenizer's max length)."""
    ids = tokenizer(
        [""],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    text_encoder.to(device)
    return text_encoder(ids.to(device))[0]


def load_models(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
) -> DiffusionModels:
    """Load UNet, VAE, scheduler and the empty-prompt embedding.

    Args:
        model: hub id or local diffusers folder; default SD 1.5.
        device: ``auto``, ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
        dtype: ``auto`` (float16 on GPUs, float32 on CPU), ``float32``, ``float16`` or
            ``bfloat16``.

    Raises:
        ModelNotFoundError: the weights are not reachable; the message says how to get them.
        ConfigError: bad device or dtype.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    name = os.fspath(model)
    folder = _local_folder(name)
    if folder is None and not _may_download(name):  # no network unless the id was asked for
        folder = _cached(name)
        if folder is None:
            check_weights(name)  # says how to provide them
    local = folder is not None
    if folder is not None:
        _check_folder(folder)
        name = str(folder)
    unet = _load(UNet2DConditionModel, name, "unet", local, torch_dtype=dt)
    vae = _load(AutoencoderKL, name, "vae", local, torch_dtype=dt)
    scheduler = _load(DDIMScheduler, name, "scheduler", local)
    tokenizer = _load(CLIPTokenizer, name, "tokenizer", local)
    text_encoder = _load(CLIPTextModel, name, "text_encoder", local, torch_dtype=dt)
    embeds = empty_prompt_embeddings(tokenizer, text_encoder, dev).to(dt)
    del text_encoder, tokenizer
    return DiffusionModels(
        unet=unet.to(dev),
        vae=vae.to(dev),
        scheduler=scheduler,
        prompt_embeds=embeds,
        device=dev,
        dtype=dt,
        source=name,
    )
