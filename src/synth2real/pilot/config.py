"""The pilot's configuration: budgets, seeds, jobs, and every check made before any work.

:class:`PilotConfig` holds everything a pilot depends on and checks its own values;
:func:`check_methods`, :func:`check_recipes` and :func:`check_metric` check what needs the
registry or the data (method names and parameters, the budget against the recipes,
``--metric`` against the source's classes) so that a typo fails before anything is
translated or trained. What must stay fixed within one pilot is recorded in
``OUT/pilot.json`` (:func:`check_out`, :func:`save_pilot_json`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth2real.errors import ConfigError, OutputExistsError
from synth2real.guard import is_empty
from synth2real.segment.config import (
    DEFAULT_MODEL,
    make_config,
    normalise_settings,
    parse_settings,
)

#: Training budget of ``--quick``: a first look, about a minute per run on one CPU core;
#: too short to separate close methods (the report says so).
QUICK_BUDGET: dict[str, Any] = {"iterations": 300, "batch_size": 8, "crop": 128, "max_size": 256}
#: Default budget, sized for a CPU: images shrunk to a 256 px shorter side, 128 px crops,
#: 1000 steps of 8 (about 93 s per run of the mix recipe, two at a time on a 2-core Xeon,
#: in docs/RESULTS.md; so a 2-method pilot with 3 seeds, 21 runs, takes ~16 min there: an
#: estimate). At equal compute this beat full resolution on the cracks set
#: (docs/benchmarks/segment_cpu.md). On cracks it is too short for a verdict: 2000 steps
#: separated what 1000 could not (docs/RESULTS.md, recipes-long mode).
#: On a GPU raise it, e.g. ``--budget max_size=1024,crop=512,iterations=4000``.
DEFAULT_BUDGET: dict[str, Any] = {
    "iterations": 1000,
    "batch_size": 8,
    "crop": 128,
    "max_size": 256,
}
#: TrainConfig fields the pilot sets per run, with the option that sets them: not
#: budget keys.
PER_RUN = {
    "recipe": "--recipes",
    "seed": "--seeds",
    "model": "--seg-model",
    "device": "--device",
    "real_fraction": "--real-ratio",
}
#: TrainConfig fields that are not part of the budget: set per run by the pilot, or
#: runtime details that do not change the result.
NOT_BUDGET = {*PER_RUN, "num_threads", "cache", "cache_max_gb", "save_every"}
METRICS = ("miou", "pixel_accuracy")
#: how the data is used (``--recipes``): ``mix`` (the references drawn into every batch
#: from the first step, the pilot's original runs), ``finetune`` (the synthetic mix
#: first, then the references alone at a lower rate), ``selftrain`` (the mix plus
#: pseudo-labelled unlabelled real images, ``--unlabeled``); see segment/config.py
DEFAULT_RECIPES = ("mix",)
#: the fixed settings a resumed pilot may add (from none), never change
UNLABELED_KEYS = ("unlabeled", "unlabeled_names")


# ---------------------------------------------------------------------------------------
# option parsers
# ---------------------------------------------------------------------------------------
def parse_budget(spec: str | Sequence[str] | None, base: dict[str, Any] | None = None) -> dict:
    """``"iterations=300,batch=8,crop=256x512"`` -> ``{"iterations": 300, "batch_size": 8,
    "crop": (256, 512)}``: :func:`synth2real.segment.config.parse_settings`, the parser
    of ``train --set`` (same keys, aliases and value forms). ``base`` (a preset) is
    updated, not replaced."""
    return parse_settings(spec, base, option="--budget")


def parse_seeds(spec: int | str | Sequence[int]) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``"0,5,7"`` -> ``[0, 5, 7]``."""
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(
                f"--seeds is a count (3 -> seeds 0,1,2) and must be >= 1, got {spec}; "
                "to name seeds, list them: --seeds 0,1"
            )
        return list(range(spec))
    if isinstance(spec, str):
        s = spec.strip()
        if "," not in s:
            try:
                count = int(s)
            except ValueError:
                raise ConfigError(
                    f"--seeds: expected a count or a comma list, got {spec!r}"
                ) from None
            return parse_seeds(count)
        try:
            seeds = [int(x) for x in s.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--seeds: expected integers, got {spec!r}") from None
    else:
        seeds = [int(x) for x in spec]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: need distinct seeds, got {spec!r}")
    return seeds


def parse_recipes(spec: str | Sequence[str] | None) -> list[str]:
    """``"mix,finetune"`` -> ``["mix", "finetune"]`` (order kept, duplicates dropped);
    ``None`` or empty -> ``["mix"]``. A name outside ``segment.config.RECIPES`` is an
    error naming it."""
    from synth2real.segment.config import RECIPES

    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    recipes: list[str] = []
    for r in items:
        r = str(r).strip().lower()
        if not r:
            continue
        if r not in RECIPES:
            raise ConfigError(f"--recipes: unknown recipe {r!r}; choose from {', '.join(RECIPES)}")
        if r not in recipes:
            recipes.append(r)
    return recipes or list(DEFAULT_RECIPES)


# ---------------------------------------------------------------------------------------
# the configuration
# ---------------------------------------------------------------------------------------
@dataclass
class PilotConfig:
    """Everything a pilot depends on. Recorded in ``DIR/pilot.json``.

    Args:
        source: folder of the labelled synthetic images.
        references: folder holding the labelled real references.
        test: folder holding the labelled real test images (may equal ``references``;
            then ``test_names``/``reference_names`` tell them apart).
        methods: translation methods (registry names); ``none`` is implied by the
            ``source-*`` baselines and dropped.
        seeds: training seeds; every setting is trained once per seed.
        budget: TrainConfig settings that fix the training budget (iterations,
            batch_size, crop, ...; the keys and value forms of :func:`parse_budget`);
            identical for every run.
        source_names / reference_names / test_names: name subsets (``None``: all).
        source_limit: use a fixed random subset of this many synthetic images (``None``:
            all); drawn with seed 0, recorded.
        real_ratio: share of each training batch drawn from the references in the
            ``+real`` settings (0..1, default 0.5).
        model: segmentation model name (``small-unet``, ``segformer``; ``--seg-model``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...: where the models train and
            where the diffusion methods translate (their ``device`` parameter, unless
            ``method_params`` sets it).
        diffusion_model: Stable Diffusion weights for the diffusion methods (a hub id or
            a local folder; their ``model`` parameter, unless ``method_params`` sets it;
            ``--diffusion-model``). ``None``: each method's default (SD 1.5).
        workers: translation worker processes.
        jobs: training runs at once, each in its own process with ``cores // jobs``
            torch threads (default 1). With ``device`` ``auto``/``cuda`` and several
            GPUs, each process is pinned to one
            (:func:`~synth2real.pilot.devices.job_devices`). On a 2-core CPU two
            single-threaded runs trained
            ~1.6-2x faster in total than one run on both cores (small convolutions do not
            scale across threads; docs/PILOT.md). Results do not depend on it beyond
            float rounding.
        metric: what the verdict is judged on: ``miou``, ``pixel_accuracy`` or
            ``iou:<class name>`` (checked against the source's classes at start-up).
        format / classes / class_map: passed to ``open_dataset`` for all three folders.
        method_params: per-method parameter overrides ``{method: {param: value}}``.
        translate_seed: seed of the (single) translation per method.
        budget_name: what the budget is called in the report (``quick``, ``default``,
            ``demo``, ``custom``); a quick budget gets a warning next to the verdict.
        translate_at_train_size: when the budget caps the training resolution
            (``max_size``: shorter side in pixels) and synthetic images are larger, shrink
            them once to that size (``DIR/source_max<N>``) and translate those: training
            would shrink them anyway, and translation gets cheaper (default True).
        cache_dir: where the shrunken source and the translations are kept (default
            ``None``: inside the output folder). Pilots that share it (other budgets,
            more seeds) reuse translations made with the same method parameters, source
            and references.
        recipes: how the data is used (:func:`parse_recipes`; default ``["mix"]``, the
            pilot's original runs). ``finetune`` adds the settings with synthetic and
            real labelled data; ``selftrain`` adds ``real-only``, ``source+real`` and
            ``translated+real`` with the unlabelled images (docs/PILOT.md).
        unlabeled: folder of unlabelled real images (any image folder, or a labelled
            dataset whose labels are not read) for ``selftrain``; required by it and
            refused without it. Checked at start-up: not empty, every image readable,
            none the same file content as a test image.
        unlabeled_names: name subset of ``unlabeled`` (``None``: all).

    Raises:
        ConfigError: a bad value among those checkable without the data (the budget's
            keys and value types, seeds, ratios, jobs, the metric's form).
    """

    source: Path
    references: Path
    test: Path
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BUDGET))
    source_names: list[str] | None = None
    reference_names: list[str] | None = None
    test_names: list[str] | None = None
    source_limit: int | None = None
    real_ratio: float = 0.5
    model: str = DEFAULT_MODEL
    device: str = "auto"
    diffusion_model: str | None = None
    workers: int = 1
    jobs: int = 1
    metric: str = "miou"
    format: str | None = None
    classes: str | None = None
    class_map: str | None = None
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    translate_seed: int = 0
    budget_name: str = "custom"
    translate_at_train_size: bool = True
    cache_dir: Path | None = None
    recipes: list[str] = field(default_factory=lambda: list(DEFAULT_RECIPES))
    unlabeled: Path | None = None
    unlabeled_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.source, self.references, self.test = (
            Path(self.source),
            Path(self.references),
            Path(self.test),
        )
        methods = []
        for m in self.methods:
            m = m.strip()
            if m and m not in methods:
                methods.append(m)
        self.methods = methods
        if not 0.0 < self.real_ratio < 1.0:
            raise ConfigError(
                f"--real-ratio must be strictly between 0 and 1, got {self.real_ratio}"
            )
        if int(self.jobs) < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")
        self.jobs = int(self.jobs)
        if self.source_limit is not None and self.source_limit < 1:
            raise ConfigError(f"--source-limit must be >= 1, got {self.source_limit}")
        if not (self.metric in METRICS or self.metric.startswith("iou:")):
            raise ConfigError(
                f"--metric must be miou, pixel_accuracy or iou:<class>, got {self.metric!r}"
            )
        self.seeds = parse_seeds(self.seeds)
        self.recipes = parse_recipes(self.recipes)
        self.unlabeled = Path(self.unlabeled) if self.unlabeled is not None else None
        if "selftrain" in self.recipes and self.unlabeled is None:
            raise ConfigError(
                "--recipes selftrain needs unlabelled real images: give --unlabeled PATH"
            )
        if self.unlabeled_names is not None and self.unlabeled is None:
            raise ConfigError("--unlabeled-names needs --unlabeled (the folder they are in)")
        if self.unlabeled is not None and "selftrain" not in self.recipes:
            raise ConfigError(
                f"--unlabeled {self.unlabeled}: only the selftrain recipe reads unlabelled "
                "images; add selftrain to --recipes or drop --unlabeled"
            )
        self.budget = normalise_settings(self.budget, option="--budget")
        clash = sorted(set(self.budget) & set(PER_RUN))
        if clash:
            raise ConfigError(
                f"--budget: {clash[0]} is set by the pilot for each run "
                f"({PER_RUN[clash[0]]}), not by the budget"
            )

    @property
    def translation_methods(self) -> list[str]:
        """The methods that get their own settings (``none`` is the source baseline)."""
        return [m for m in self.methods if m != "none"]

    def params_for(self, method: str) -> dict[str, Any]:
        """The parameters ``method`` is created with: its ``method_params``, with the
        pilot's ``device`` and ``diffusion_model`` where it takes them
        (:func:`synth2real.translate.method_overrides`, as ``translate`` does)."""
        from synth2real.translate import method_overrides

        return method_overrides(
            method,
            self.method_params.get(method, {}),
            model=self.diffusion_model,
            device=self.device,
            strict=False,
        )

    def fixed(self) -> dict[str, Any]:
        """What must not change between a run and its resume (methods/seeds may grow)."""
        return {
            "source": str(self.source.resolve()),
            "references": str(self.references.resolve()),
            "test": str(self.test.resolve()),
            "source_names": self.source_names,
            "reference_names": self.reference_names,
            "test_names": self.test_names,
            "source_limit": self.source_limit,
            "real_ratio": self.real_ratio,
            "model": self.model,
            "budget": self.budget,
            "format": self.format,
            "classes": self.classes,
            "class_map": self.class_map,
            "translate_seed": self.translate_seed,
            "translate_at_train_size": self.translate_at_train_size,
            # None for a pilot without self-training, as in pilot.json files written
            # before recipes existed: those still resume
            "unlabeled": str(self.unlabeled.resolve()) if self.unlabeled else None,
            "unlabeled_names": self.unlabeled_names,
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.fixed()
        d.update(
            methods=self.methods,
            seeds=self.seeds,
            device=self.device,
            diffusion_model=self.diffusion_model,
            workers=self.workers,
            jobs=self.jobs,
            metric=self.metric,
            method_params=self.method_params,
            budget_name=self.budget_name,
            recipes=self.recipes,
            cache_dir=str(self.cache_dir) if self.cache_dir else None,
        )
        return d


# ---------------------------------------------------------------------------------------
# checks before any work
# ---------------------------------------------------------------------------------------
def check_methods(cfg: PilotConfig) -> None:
    """Every method exists and takes its ``method_params`` (an error names the method);
    ``diffusion_model`` needs a method that takes weights."""
    from synth2real.methods import create_method

    takes_weights = False
    for m in cfg.methods:
        if m == "none":
            continue
        method = create_method(m, **cfg.params_for(m))  # unknown names/params fail here
        takes_weights |= "model" in method.params()
    if cfg.diffusion_model is not None and not takes_weights:
        raise ConfigError(
            f"--diffusion-model {cfg.diffusion_model}: none of the methods "
            f"{cfg.translation_methods} is a diffusion method (see `synth2real methods`)"
        )
    stray = sorted(set(cfg.method_params) - set(cfg.translation_methods))
    if stray:
        raise ConfigError(
            f"--param: parameters given for {stray}, which are not among the methods "
            f"{cfg.translation_methods}"
        )


def check_metric(metric: str, class_names: Sequence[str]) -> None:
    """``iou:<class>`` must name one of the data's classes."""
    if metric.startswith("iou:") and metric[4:] not in class_names:
        raise ConfigError(
            f"--metric {metric}: no class {metric[4:]!r}; the classes are {list(class_names)} "
            f"(use iou:<one of them>, miou or pixel_accuracy)"
        )


def make_train_config(
    cfg: PilotConfig, seed: int, real_fraction: float | None, recipe: str = "mix"
):
    """The TrainConfig of one run: the pilot's budget plus model, seed, device, mix and
    recipe."""
    return make_config(
        cfg.budget,
        option="--budget",
        model=cfg.model,
        seed=seed,
        device=cfg.device,
        real_fraction=real_fraction,
        recipe=recipe,
    )


def check_recipes(cfg: PilotConfig) -> None:
    """The budget makes a valid TrainConfig for every recipe of the pilot (fine-tuning's
    two phases fit in its iterations, ...): an error names the key before any work."""
    for recipe in cfg.recipes:
        make_train_config(cfg, 0, cfg.real_ratio, recipe)


def effective_budget(cfg: PilotConfig) -> dict[str, Any]:
    """Every TrainConfig field that is the same for all runs (the budget as trained)."""
    tc = make_train_config(cfg, seed=0, real_fraction=None)
    d = json.loads(json.dumps(dataclasses.asdict(tc), default=str))
    return {k: v for k, v in d.items() if k not in NOT_BUDGET}


def is_newer_field(name: str) -> bool:
    """A TrainConfig field newer than the pilot's budget ids: those of the fine-tuning /
    self-training recipes and rare-class sampling (``ft_*``, ``st_*``, ``rcs*``) and the
    CPU's bf16 autocast (``cpu_amp``)."""
    return name.startswith(("ft_", "st_", "rcs")) or name == "cpu_amp"


def budget_id(budget: dict[str, Any], model: str) -> str:
    """Short hash of the effective budget and model: a finished run counts on resume only
    with the same one. Newer fields at their default are left out, so the id of a
    budget that does not touch them is the one it had before they existed (runs of
    older pilot folders still count). A newer field whose default changed since
    (:data:`LEGACY_VALUES`) is left out only at its old value."""
    from synth2real.segment.config import LEGACY_VALUES, TrainConfig

    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig()), default=str))
    legacy = {**defaults, **LEGACY_VALUES}
    kept = {k: v for k, v in budget.items() if not (is_newer_field(k) and legacy.get(k) == v)}
    blob = json.dumps({"budget": kept, "model": model}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# OUT/pilot.json
# ---------------------------------------------------------------------------------------
def check_out(out: Path, cfg: PilotConfig, resume: bool) -> None:
    """``out`` may take this pilot: new or empty, or (with ``resume``) holding one with the
    same :meth:`PilotConfig.fixed` settings. The unlabelled images may be added to a
    pilot that had none (``--recipes`` gains ``selftrain``), not changed afterwards.

    Raises:
        OutputExistsError: naming what differs, or asking for ``--resume``.
    """
    meta = out / "pilot.json"
    if meta.is_file():
        if not resume:
            raise OutputExistsError(
                f"{out} already holds a pilot; rerun with --resume to continue it, or choose another --out"
            )
        old = json.loads(meta.read_text(encoding="utf-8")).get("fixed", {})
        new = json.loads(json.dumps(cfg.fixed(), default=str))
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if old.get("unlabeled") is None:  # self-training may join a pilot that had none;
            diff = [k for k in diff if k not in UNLABELED_KEYS]  # once given, it is fixed
        if diff:
            raise OutputExistsError(
                f"{out} holds a pilot with other settings ({', '.join(diff)}: not the same); "
                "the budget and data must stay fixed within one pilot: choose another --out"
            )
    elif not is_empty(out) and not resume:  # (the pilot's own lock file does not count)
        raise OutputExistsError(f"{out} exists and is not empty; choose another --out")


def save_pilot_json(out: Path, cfg: PilotConfig, budget: dict[str, Any]) -> None:
    """Write ``out/pilot.json``: the fixed settings, the whole config and the budget."""
    from synth2real.data.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "fixed": json.loads(json.dumps(cfg.fixed(), default=str)),
        "config": cfg.to_dict(),
        "budget": budget,
        "budget_id": budget_id(budget, cfg.model),
    }
    atomic_write_text(out / "pilot.json", json.dumps(meta, indent=2, default=str))
