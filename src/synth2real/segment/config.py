"""Training settings: :class:`TrainConfig` and the one parser of ``key=value`` settings.

Every way of giving training settings goes through :func:`parse_settings` /
:func:`make_config`, so every key and value form works everywhere:
``synth2real train --set K=V`` and ``--crop``, ``--config file.yaml``,
``synth2real pilot --budget K=V,...`` and :meth:`TrainConfig.from_dict`:

- keys are :class:`TrainConfig` field names or the aliases ``batch`` (``batch_size``),
  ``iters`` and ``steps`` (``iterations``);
- values are YAML scalars or flow collections (``lr=3e-4``, ``hflip=false``,
  ``max_size=none``, ``model_kwargs={channels: [4, 8]}``), then checked against the
  field's type; ``crop`` also takes ``256``, ``256x512`` and ``[256, 512]``;
- an unknown key or a value of the wrong type raises :class:`ConfigError` naming the
  option and the key.

Torch is not imported here (the pilot validates budgets before loading it).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth2real.errors import ConfigError, DataError
from synth2real.segment.recipe_options import RCSConfig, SelfTrainConfig

#: how the data is used: ``mix`` (every dataset mixed by weight from the first step),
#: ``finetune`` (the mix, then the last dataset alone at a lower learning rate),
#: ``selftrain`` (the mix plus a mean teacher's ClassMix on unlabelled images)
RECIPES = ("mix", "finetune", "selftrain")
#: the model ``train`` and the pilot use unless told otherwise: small-unet with additive
#: skips, ~1.6x the steps/s of ``small-unet`` on the CPU with crack IoU within the seed
#: spread (docs/benchmarks/train_throughput.md, docs/RESULTS.md)
DEFAULT_MODEL = "small-unet-add"
SCHEDULES = ("cosine", "poly", "constant")
CLASS_WEIGHTINGS = ("none", "frequency")
#: what a field was, implicitly, in runs stored before it existed, where its default
#: has changed since: ``cpu_amp`` came as ``False`` (fp32), then became ``"auto"``
LEGACY_VALUES: dict[str, Any] = {"cpu_amp": False}
#: fields that change how fast a run goes, not what it computes: a run may resume with
#: different values
RUNTIME_FIELDS = ("device", "num_threads", "cache", "cache_max_gb", "save_every", "prefetch")
#: short names of TrainConfig fields, accepted wherever settings are given
ALIASES = {"batch": "batch_size", "iters": "iterations", "steps": "iterations"}


@dataclass
class TrainConfig(SelfTrainConfig, RCSConfig):
    """Everything that defines a training run (stored in the checkpoint).

    The self-training keys ``st_*`` are those of
    :class:`~synth2real.segment.recipe_options.SelfTrainConfig`, the rare-class sampling
    keys ``rcs*`` those of :class:`~synth2real.segment.recipe_options.RCSConfig` (their
    defaults and sources are documented there); the others:

    Args:
        recipe: how the datasets are used, one of :data:`RECIPES` (default ``"mix"``:
            every crop drawn from dataset ``i`` with its mixing weight, all run long).
            ``"finetune"``: the first ``ft_split`` of the iterations as ``"mix"``, the
            rest on the *last* dataset alone (the references) from ``ft_lr_scale * lr``;
            needs >= 2 datasets. ``"selftrain"``: ``"mix"`` plus, every step, a ClassMix
            batch of unlabelled real images pseudo-labelled by an EMA teacher
            (:mod:`synth2real.segment.selftrain`); needs unlabelled images.
        ft_split: share of the iterations of fine-tuning's phase 1, rounded to whole
            iterations, each phase getting at least one (default 0.9, measured: below).
        ft_lr_scale: peak learning rate of phase 2 as a factor of ``lr`` (default 0.03,
            measured: below). Each phase has its own schedule, as a run of its length: a
            linear warm-up of ``min(warmup, phase // 10)`` iterations, then
            ``schedule`` from its peak (phase 1: ``lr``, phase 2: ``ft_lr_scale * lr``).
            Tried (``benchmarks/finetune_sweep.py``, ``docs/benchmarks/finetune_sweep.md``;
            cracks, the pilot's CPU budget at 1000 iterations, 3 seeds): ``ft_split``
            0.8, 0.9, 0.95 x ``ft_lr_scale`` 0.3, 0.1, 0.03. 0.9 / 0.03 scored best
            (crack IoU 0.289 ± 0.002), 0.1 0.280 ± 0.010; within the seed spread, but
            0.03 beat 0.1 for every split and seed (9 of 9 pairs), 0.3 did worst. Plain
            ``mix`` scored 0.293 ± 0.023: on cracks the gentlest phase 2 hurts least.
            The 300-iteration sweep (``finetune_sweep_300steps.md``) had picked 0.1.
        model: registered model name (default :data:`DEFAULT_MODEL`, ``"small-unet-add"``;
            see ``list_models()``).
        model_kwargs: architecture options of the model (default ``{}``).
        pretrained: pretrained weights: ``None`` (default) the model's default when
            in the local cache (no download), else random init with a warning; ``False`` random init; a hub id
            or local folder (an error when not found).
        iterations: optimizer steps (default 2000).
        batch_size: crops per step (default 8).
        crop: training crop size in pixels, ``int`` or ``(height, width)``, a multiple of
            the model stride (default 256; 32 for both models).
        scale_range: random scale factors ``(min, max)``, drawn log-uniformly before
            cropping (default ``(0.75, 1.5)``).
        hflip: random horizontal flips (default True).
        vflip: random vertical flips (default False; fine for top-down imagery).
        color_jitter: brightness/contrast/saturation jitter strength in ``[0, 1)``
            (default 0: off, because it would blur the colour differences between
            translation methods that a pilot compares).
        lr: peak learning rate of AdamW (default ``None``: the model's own, 2e-3 for
            small-unet, 6e-5 for segformer).
        weight_decay: AdamW weight decay on conv/linear weights (default 0.01).
        warmup: linear warm-up iterations (default 50, at most a tenth of the run).
        schedule: ``"cosine"`` (default, to 1 % of ``lr``), ``"poly"`` (power 0.9) or
            ``"constant"``, after the warm-up.
        loss: ``"ce+dice"`` (default: cross-entropy + soft Dice over present classes,
            robust to rare thin classes), ``"ce"`` or ``"dice"``.
        dice_weight: factor of the Dice term in ``"ce+dice"`` (default 1.0).
        class_weighting: ``"none"`` (default) or ``"frequency"``: cross-entropy weights
            ``median(f) / f_c`` from the training labels' pixel shares, clipped to
            ``max_class_weight``.
        max_class_weight: upper bound of a class weight (default 10).
        real_fraction: probability of drawing from the *last* dataset (the real
            references) when ``train(weights=None)``; the others share the rest in
            proportion to their size (default ``None``: all in proportion to size).
        seed: seed of initialisation, sampling and augmentation (default 0).
        device: ``"auto"`` (default: cuda, mps, else cpu), ``"cpu"``, ``"cuda"``, ``"mps"``.
        num_threads: CPU threads for torch during the run (default ``None``: unchanged).
        amp: mixed precision on CUDA (bf16 where supported, else fp16) (default True).
        cpu_amp: bf16 autocast on the CPU: ``"auto"`` (default: on where the CPU has
            native bf16, AVX512-BF16 or AMX, else off), ``True`` or ``False``. ~1.4x the
            small-unet-add steps/s here, crack IoU at least fp32's (docs/SEGMENT.md, AMP).
        channels_last: NHWC memory layout, ~1.3x faster convolutions on CPU (default True).
        max_size: shorter-side cap applied when images are decoded (default 1024;
            ``None``: full size). Crops are taken from the capped images.
        cache: keep decoded images in RAM across iterations and runs (default True).
        cache_max_gb: RAM budget of that cache (default 4.0).
        save_every: iterations between training-state checkpoints (default 250).
        prefetch: prepare the next batch (decode, augment) in a background thread while
            the current one trains (default True; the batches are the same either way).
    """

    recipe: str = "mix"
    ft_split: float = 0.9
    ft_lr_scale: float = 0.03
    model: str = DEFAULT_MODEL
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool | str | None = None
    iterations: int = 2000
    batch_size: int = 8
    crop: int | tuple[int, int] = 256
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    vflip: bool = False
    color_jitter: float = 0.0
    lr: float | None = None
    weight_decay: float = 0.01
    warmup: int = 50
    schedule: str = "cosine"
    loss: str = "ce+dice"
    dice_weight: float = 1.0
    class_weighting: str = "none"
    max_class_weight: float = 10.0
    real_fraction: float | None = None
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    amp: bool = True
    cpu_amp: bool | str = "auto"
    channels_last: bool = True
    max_size: int | None = 1024
    cache: bool = True
    cache_max_gb: float = 4.0
    save_every: int = 250
    prefetch: bool = True

    def __post_init__(self) -> None:
        self.validate()

    @property
    def crop_hw(self) -> tuple[int, int]:
        c = self.crop
        if isinstance(c, int):
            return (c, c)
        h, w = c
        return (int(h), int(w))

    @property
    def effective_lr(self) -> float:
        from synth2real.segment.models import get_model_entry

        return float(self.lr) if self.lr is not None else get_model_entry(self.model).default_lr

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        from synth2real.segment.losses import LOSSES
        from synth2real.segment.models import get_model_entry

        get_model_entry(self.model)

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"TrainConfig.{name}: {why} (got {getattr(self, name)!r})")

        SelfTrainConfig.validate(self)
        RCSConfig.validate(self)
        if self.recipe not in RECIPES:
            bad("recipe", f"must be one of {RECIPES}")
        if not 0 < self.ft_split < 1:
            bad("ft_split", "must be in (0, 1)")
        if self.recipe == "finetune" and self.iterations < 2:
            bad("ft_split", f"leaves a fine-tuning phase empty at {self.iterations} iterations")
        if not self.ft_lr_scale > 0:
            bad("ft_lr_scale", "must be > 0")

        if isinstance(self.crop, (list, tuple)):
            if len(self.crop) != 2:
                bad("crop", "an int or (height, width)")
            self.crop = (int(self.crop[0]), int(self.crop[1]))
        if min(self.crop_hw) < 8:
            bad("crop", "must be >= 8 pixels")
        if self.iterations < 1:
            bad("iterations", "must be >= 1")
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1")
        lo, hi = (float(v) for v in self.scale_range)
        if not 0 < lo <= hi:
            bad("scale_range", "needs 0 < min <= max")
        self.scale_range = (lo, hi)
        if not 0 <= self.color_jitter < 1:
            bad("color_jitter", "must be in [0, 1)")
        if self.lr is not None and not self.lr > 0:
            bad("lr", "must be > 0")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if self.warmup < 0:
            bad("warmup", "must be >= 0")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"must be one of {SCHEDULES}")
        if self.loss not in LOSSES:
            bad("loss", f"must be one of {LOSSES}")
        if not (isinstance(self.cpu_amp, bool) or self.cpu_amp == "auto"):
            bad("cpu_amp", "must be true, false or auto")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            bad("class_weighting", f"must be one of {CLASS_WEIGHTINGS}")
        if self.max_class_weight < 1:
            bad("max_class_weight", "must be >= 1")
        if self.real_fraction is not None and not 0 <= self.real_fraction <= 1:
            bad("real_fraction", "must be in [0, 1]")
        if self.max_size is not None and self.max_size < 8:
            bad("max_size", "must be >= 8 or None")
        if self.save_every < 1:
            bad("save_every", "must be >= 1")
        if self.num_threads is not None and self.num_threads < 1:
            bad("num_threads", "must be >= 1 or None")
        if not isinstance(self.model_kwargs, dict):
            bad("model_kwargs", "must be a dict")

    @property
    def ft_phase1(self) -> int:
        """Iterations of fine-tuning's phase 1: ``round(ft_split * iterations)``, kept
        within ``[1, iterations - 1]`` so that each phase has at least one."""
        return min(max(1, round(self.ft_split * self.iterations)), self.iterations - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists); the recipe keys ``st_*``, ``rcs*`` last."""
        d = dataclasses.asdict(self)
        mixed_in = [f.name for c in (SelfTrainConfig, RCSConfig) for f in dataclasses.fields(c)]
        d = {**{k: v for k, v in d.items() if k not in mixed_in}, **{k: d[k] for k in mixed_in}}
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], option: str = "train config") -> TrainConfig:
        """Inverse of :meth:`to_dict`, through :func:`make_config`: aliases and every value
        form are accepted; an unknown key or a bad value raises :class:`ConfigError`."""
        return make_config(d, option=option)

    def result_dict(self) -> dict[str, Any]:
        """The fields that determine the result (what a resumed run must share)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}


# -- the settings parser -------------------------------------------------------------------
def parse_settings(
    spec: str | Iterable[str] | None,
    base: Mapping[str, Any] | None = None,
    *,
    option: str = "--set",
) -> dict[str, Any]:
    """``"iterations=300,batch=8,crop=256x512"`` (or a list of such strings) -> settings.

    Each item is ``key=value``; several may share a string, separated by commas outside
    brackets and braces (``crop=[256, 512],lr=3e-4``). ``base`` (a preset) is updated, not
    replaced. The result holds :class:`TrainConfig` field names and values of the field's
    type (``{"iterations": 300, "batch_size": 8, "crop": (256, 512)}``).

    Raises:
        ConfigError: an item that is not ``key=value``, an unknown key, a bad value;
            the message starts with ``option``.
    """
    out = normalise_settings(base or {}, option=option)
    items = [spec] if isinstance(spec, str) else list(spec or [])
    for item in items:
        for part in _split_top_level(item):
            part = part.strip()
            if not part:
                continue
            key, sep, raw = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{option}: expected key=value, got {part!r}")
            name = canonical_key(key.strip(), option=option)
            out[name] = parse_setting(name, raw, option=option)
    return out


def parse_setting(key: str, raw: str, *, option: str) -> Any:
    """The value of one setting typed as text (``parse_setting("crop", "256x512", ...)``
    -> ``(256, 512)``), as :func:`parse_settings` reads it."""
    return coerce_setting(canonical_key(key, option=option), read_value(raw), option=option)


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML file (a mapping of option: value), checked like ``--set``.

    Raises:
        DataError: naming the file when it cannot be read or is not a mapping.
        ConfigError: an unknown key or a bad value (naming the file and the key).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(path, f"cannot read the train config ({e})") from None
    if not isinstance(data, dict):
        raise DataError(path, "a train config is a mapping of option: value")
    return normalise_settings(data, option=str(path))


def normalise_settings(settings: Mapping[str, Any], *, option: str) -> dict[str, Any]:
    """``settings`` with aliases resolved and every value checked and converted."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = canonical_key(str(key), option=option)
        out[name] = coerce_setting(name, value, option=option)
    return out


def make_config(
    settings: Mapping[str, Any] | None = None, *, option: str = "train config", **fields: Any
) -> TrainConfig:
    """The :class:`TrainConfig` of ``settings`` updated by ``fields`` (any form above).

    Raises:
        ConfigError: an unknown key, a bad value or a failed check, prefixed by ``option``.
    """
    kw = normalise_settings({**(settings or {}), **fields}, option=option)
    try:
        return TrainConfig(**kw)
    except ConfigError as e:
        raise ConfigError(f"{option}: {e}") from None


def canonical_key(key: str, *, option: str) -> str:
    """The TrainConfig field ``key`` names (``batch`` -> ``batch_size``)."""
    name = ALIASES.get(key, key)
    if name not in _field_types():
        raise ConfigError(
            f"{option}: unknown train option {key!r}; options: {sorted(_field_types())} "
            f"(aliases: {', '.join(f'{a}={t}' for a, t in ALIASES.items())})"
        )
    return name


def read_value(raw: str) -> Any:
    """A value as typed on a command line: a YAML scalar or flow collection, else the text.

    ``3e-4`` (a string to YAML 1.1) reads as a float.
    """
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw.strip()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def coerce_setting(key: str, value: Any, *, option: str) -> Any:
    """``value`` converted to the type of field ``key``, or a :class:`ConfigError`."""
    hint = _field_types()[key]
    got = _convert(value, hint)
    if got is _BAD:
        raise ConfigError(f"{option}: {key}={value!r}: expected {_describe(hint)}")
    return got


_BAD = object()


def _convert(value: Any, hint: Any) -> Any:
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if isinstance(value, str) and value.strip().lower() in ("none", "null"):
        value = None if type(None) in options else value  # max_size=none; loss=none stays
    if value is None:
        return None if type(None) in options else _BAD
    for t in options:
        got = _convert_one(value, t)
        if got is not _BAD:
            return got
    return _BAD


def _convert_one(value: Any, t: Any) -> Any:
    origin = typing.get_origin(t)
    if t is bool:
        return value if isinstance(value, bool) else _BAD
    if t is int:
        if isinstance(value, bool):
            return _BAD
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return _BAD
    if t is float:
        if isinstance(value, bool):
            return _BAD
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _BAD
        return _BAD
    if t is str:
        return value if isinstance(value, str) else _BAD
    if origin is tuple:
        if isinstance(value, str):  # "256x512"
            value = value.lower().replace(" ", "").split("x")
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(t)):
            return _BAD
        items = [_convert_one(v, a) for v, a in zip(value, typing.get_args(t), strict=True)]
        return _BAD if any(i is _BAD for i in items) else tuple(items)
    if origin is dict or t is dict:
        return dict(value) if isinstance(value, dict) else _BAD
    return _BAD  # None (handled by the caller)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, getattr(types, "UnionType", None))


def _describe(hint: Any) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "none",
    }
    parts = []
    for t in typing.get_args(hint) if _is_union(hint) else (hint,):
        if typing.get_origin(t) is tuple:
            n = len(typing.get_args(t))
            inner = typing.get_args(t)[0]
            parts.append(
                "HxW or [H, W]" if inner is int and n == 2 else f"a list of {n} {names[inner]}s"
            )
        elif typing.get_origin(t) is dict:
            parts.append("a mapping like {a: 1}")
        else:
            parts.append(names.get(t, str(t)))
    return " or ".join(parts)


def _field_types() -> dict[str, Any]:
    global _FIELD_TYPES
    if _FIELD_TYPES is None:
        hints = typing.get_type_hints(TrainConfig)
        _FIELD_TYPES = {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}
    return _FIELD_TYPES


_FIELD_TYPES: dict[str, Any] | None = None


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and braces: ``a=1,b=[1, 2]`` -> 2 parts."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts
