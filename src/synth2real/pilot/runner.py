"""The pilot: translate, train and score every setting of docs/BENCHMARK.md, resumably.

Given labelled synthetic images (``source``), a few labelled real images
(``references``) and a labelled real test set, the pilot trains one segmentation model
per *setting* x *method* x *seed*, all with one fixed training budget, and scores each on
the test set at the test images' own resolution:

======================  ==========================================================
setting                 training data
======================  ==========================================================
``source-only``         the synthetic images as they are
``real-only``           the real references alone
``source+real``         the untouched synthetic images mixed with the references
``translated``          the synthetic images after method M
``translated+real``     method M's output mixed with the references
======================  ==========================================================

Layout of the output folder ``DIR``::

    DIR/pilot.json                       the settings (budget, data, model): fixed for resume
    DIR/translated/<method>/             each method's translation (resumable)
    DIR/translated/<method>.json         its timing (seconds per image) and parameters
    DIR/runs/<setting>[/<method>]/seed<k>/result.json   one finished run (atomic)
    DIR/runs/.../train/                  the run's checkpoint (written by segment.train)
    DIR/results.json, results.csv        every run, the summary and the verdict
    DIR/report.html                      the self-contained report

A run counts as finished when its ``result.json`` exists; a rerun with ``resume=True``
skips it, and translation resumes image by image.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from synth2real.data.io import atomic_write_text
from synth2real.errors import ConfigError, OutputExistsError
from synth2real.pilot.verdict import BASELINES, PER_METHOD, decide, metric_label

#: Training budget of ``--quick``: a first look, about a minute per run on one CPU core;
#: too short to separate close methods (the report says so).
QUICK_BUDGET: dict[str, Any] = {"iterations": 300, "batch_size": 8, "crop": 128, "max_size": 256}
#: Default budget, sized for a CPU: images shrunk to a 256 px shorter side, 128 px crops,
#: 1000 steps of 8 (184-227 s per run, two at a time on 2 cores, in docs/RESULTS.md; so a
#: 2-method pilot with 3 seeds, 21 runs, should take ~40 min there: an estimate). At equal compute this beat full resolution on
#: the cracks set (docs/benchmarks/segment_cpu.md). On a GPU raise it, e.g.
#: ``--budget max_size=1024,crop=512,iterations=4000``.
DEFAULT_BUDGET: dict[str, Any] = {
    "iterations": 1000,
    "batch_size": 8,
    "crop": 128,
    "max_size": 256,
}
#: ``--budget`` short names -> TrainConfig fields.
BUDGET_ALIASES = {"batch": "batch_size", "iters": "iterations", "steps": "iterations"}
#: TrainConfig fields that are not part of the budget: set per run by the pilot, or
#: runtime details that do not change the result.
NOT_BUDGET = {
    "seed",
    "device",
    "model",
    "real_fraction",
    "num_threads",
    "cache",
    "cache_max_gb",
    "save_every",
}

console = Console(stderr=True, highlight=False)


# ---------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------
def parse_budget(spec: str | None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``"iterations=300,batch=8,crop=256"`` -> ``{"iterations": 300, "batch_size": 8, ...}``.

    Values are read as YAML scalars (``lr=3e-4`` -> float). Keys are TrainConfig field
    names or the aliases ``batch``, ``iters``, ``steps``; they are checked against the
    trainer when the pilot starts. ``base`` (a preset) is updated, not replaced.
    """
    import yaml

    out = dict(base or {})
    if not spec:
        return out
    for part in _split_top_level(spec):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--budget: expected key=value, got {part!r}")
        key = BUDGET_ALIASES.get(key.strip(), key.strip())
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[key] = value
    return out


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


def parse_seeds(spec: int | str | Sequence[int]) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``"0,5,7"`` -> ``[0, 5, 7]``."""
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"--seeds must be >= 1, got {spec}")
        return list(range(spec))
    if isinstance(spec, str):
        s = spec.strip()
        if "," not in s:
            try:
                return parse_seeds(int(s))
            except ValueError:
                raise ConfigError(
                    f"--seeds: expected a count or a comma list, got {spec!r}"
                ) from None
        try:
            seeds = [int(x) for x in s.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--seeds: expected integers, got {spec!r}") from None
    else:
        seeds = [int(x) for x in spec]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: need distinct seeds, got {spec!r}")
    return seeds


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
        budget: TrainConfig overrides that fix the training budget (iterations,
            batch_size, crop, ...); identical for every run.
        source_names / reference_names / test_names: name subsets (``None``: all).
        source_limit: use a fixed random subset of this many synthetic images (``None``:
            all); drawn with seed 0, recorded.
        real_ratio: share of each training batch drawn from the references in the
            ``+real`` settings (0..1, default 0.5).
        model: segmentation model name (``small-unet``, ``segformer``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        workers: translation worker processes.
        jobs: training runs at once, each in its own process with ``cores // jobs``
            torch threads (default 1). On a 2-core CPU two single-threaded runs trained
            ~1.6-2x faster in total than one run on both cores (small convolutions do not
            scale across threads; docs/PILOT.md). Results do not depend on it beyond
            float rounding.
        metric: what the verdict is judged on: ``miou`` or ``iou:<class name>``.
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
    model: str = "small-unet"
    device: str = "auto"
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
        if not (
            self.metric == "miou"
            or self.metric == "pixel_accuracy"
            or self.metric.startswith("iou:")
        ):
            raise ConfigError(
                f"--metric must be miou, pixel_accuracy or iou:<class>, got {self.metric!r}"
            )
        self.seeds = parse_seeds(self.seeds)

    @property
    def translation_methods(self) -> list[str]:
        """The methods that get their own settings (``none`` is the source baseline)."""
        return [m for m in self.methods if m != "none"]

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
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.fixed()
        d.update(
            methods=self.methods,
            seeds=self.seeds,
            device=self.device,
            workers=self.workers,
            jobs=self.jobs,
            metric=self.metric,
            method_params=self.method_params,
            budget_name=self.budget_name,
            cache_dir=str(self.cache_dir) if self.cache_dir else None,
        )
        return d


@dataclass(frozen=True)
class RunSpec:
    """One training run: a setting, its method (``None`` for the baselines) and a seed."""

    setting: str
    method: str | None
    seed: int

    @property
    def relpath(self) -> str:
        mid = f"{self.method}/" if self.method else ""
        return f"runs/{self.setting}/{mid}seed{self.seed}"

    @property
    def label(self) -> str:
        return (
            f"{self.setting}" + (f" [{self.method}]" if self.method else "") + f" seed {self.seed}"
        )


def plan_runs(methods: Sequence[str], seeds: Sequence[int]) -> list[RunSpec]:
    """Every run of a pilot, seed-major: one seed of every setting comes first, so an
    interrupted pilot already holds a full (one-seed) picture."""
    runs = []
    for seed in seeds:
        runs += [RunSpec(s, None, seed) for s in BASELINES]
        for m in methods:
            if m == "none":
                continue
            runs += [RunSpec(s, m, seed) for s in PER_METHOD]
    return runs


# ---------------------------------------------------------------------------------------
# the pilot
# ---------------------------------------------------------------------------------------
@dataclass
class PilotResult:
    """What :func:`run_pilot` wrote. ``results`` is the content of ``results.json``."""

    out: Path
    report: Path | None
    results_json: Path
    results_csv: Path
    results: dict
    ran: int  # runs trained in this call
    skipped: int  # runs found finished


def _log(msg: str, progress: bool) -> None:
    if progress:
        console.print(msg)


def _budget_id(budget: dict[str, Any], model: str) -> str:
    blob = json.dumps({"budget": budget, "model": model}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _check_out(out: Path, cfg: PilotConfig, resume: bool) -> None:
    meta = out / "pilot.json"
    if meta.is_file():
        if not resume:
            raise OutputExistsError(
                f"{out} already holds a pilot; rerun with --resume to continue it, or choose another --out"
            )
        old = json.loads(meta.read_text(encoding="utf-8")).get("fixed", {})
        new = json.loads(json.dumps(cfg.fixed(), default=str))
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise OutputExistsError(
                f"{out} holds a pilot with other settings ({', '.join(diff)} differ); the budget and data "
                "must stay fixed within one pilot: choose another --out"
            )
    elif out.exists() and any(out.iterdir()) and not resume:
        raise OutputExistsError(f"{out} exists and is not empty; choose another --out")


def _train_module():
    from synth2real.segment import train as train_mod

    return train_mod


def _evaluate_module():
    from synth2real.segment import evaluate as eval_mod

    return eval_mod


def make_train_config(cfg: PilotConfig, seed: int, real_fraction: float | None):
    """The TrainConfig of one run: the pilot's budget plus model, seed, device, mix."""
    tm = _train_module()
    names = {f.name for f in dataclasses.fields(tm.TrainConfig)}
    unknown = sorted(set(cfg.budget) - names)
    if unknown:
        raise ConfigError(
            f"--budget: unknown key(s) {unknown}; budget keys: "
            f"{sorted(names - NOT_BUDGET)} (aliases: {BUDGET_ALIASES})"
        )
    kw: dict[str, Any] = dict(cfg.budget)
    kw.update(model=cfg.model, seed=seed, device=cfg.device, real_fraction=real_fraction)
    for k in ("crop", "scale_range"):  # YAML/JSON give lists
        if isinstance(kw.get(k), list):
            kw[k] = tuple(kw[k])
    try:
        return tm.TrainConfig(**{k: v for k, v in kw.items() if k in names})
    except TypeError as e:
        raise ConfigError(f"--budget: {e}") from None


def effective_budget(cfg: PilotConfig) -> dict[str, Any]:
    """Every TrainConfig field that is the same for all runs (the budget as trained)."""
    tc = make_train_config(cfg, seed=0, real_fraction=None)
    d = json.loads(json.dumps(dataclasses.asdict(tc), default=str))
    return {k: v for k, v in d.items() if k not in NOT_BUDGET}


def _open(
    path: Path, cfg: PilotConfig, names: list[str] | None, what: str, require_labels: bool = True
):
    from synth2real.data.readers import open_dataset

    ds = open_dataset(
        path,
        format=cfg.format,
        classes=cfg.classes,
        class_map=cfg.class_map,
        require_labels=require_labels,
    )
    if names is not None:
        try:
            ds = ds.select(names)
        except KeyError as e:
            raise ConfigError(f"{what} names: {e.args[0]}") from None
    if len(ds) == 0:
        raise ConfigError(f"{what}: no images in {path}")
    return ds


def cached_in_memory(ds):
    """A view of ``ds`` whose images and label maps are decoded once and kept in RAM.

    The pilot scores every run on the same test images; decoding them once saves a
    second or more per run (JPEG, Supervisely bitmaps). Meant for test sets (tens to a
    few hundred images), not for training sets. The cached arrays are read-only, so a
    consumer that would modify them in place fails loudly instead of corrupting the cache.
    """
    import copy

    view = copy.copy(ds)
    pairs: dict[str, Any] = {}

    def pair(item):
        s = ds.samples[item] if isinstance(item, int) else item
        if s.name not in pairs:
            image, label = ds.pair(s)
            for a in (image, label):
                if a is not None:
                    a.flags.writeable = False
            pairs[s.name] = (image, label)
        return pairs[s.name]

    view.pair = pair
    view._uncached = ds  # picklable original, for worker processes
    view.image = lambda item: pair(item)[0]
    view.label = lambda item: pair(item)[1]
    return view


def _check_classes(a, b, what: str) -> None:
    if tuple(a.classes.names) != tuple(b.classes.names):
        raise ConfigError(
            f"{what} has classes {list(b.classes.names)} but the source has {list(a.classes.names)}; "
            "give the same --classes / --class-map for all folders"
        )


def source_at_size(source, max_size: int | None, out: Path, progress: bool = True):
    """``source`` with every image shrunk so its shorter side is at most ``max_size``.

    Shrinks exactly as training does at decode time (``segment.sampling.downscale``: area
    filter for images, nearest neighbour for labels), once, into ``out/source_max<N>`` in
    the generic layout (PNG images, index PNG labels, ``classes.yaml``); files already
    there are kept (resume). Returns ``source`` itself when no image is larger.
    """
    from synth2real.data.classes import save_class_spec
    from synth2real.data.io import image_size, write_image_atomic
    from synth2real.data.readers import open_dataset
    from synth2real.progress import progress_bar

    if not max_size:
        return source
    if all(min(image_size(s.image_path)) <= max_size for s in source.samples):
        return source
    from synth2real.segment.sampling import downscale

    root = out / f"source_max{max_size}"
    todo = [
        s
        for s in source.samples
        if not (root / "labels" / f"{s.name}.png").is_file()
        or not (root / "images" / f"{s.name}.png").is_file()
    ]
    if todo:
        _log(
            f"shrinking {len(todo)} synthetic images to {max_size} px (shorter side) once", progress
        )
    with progress_bar(len(todo), f"source at {max_size} px", enabled=progress) as advance:
        for s in todo:
            img, lab = downscale(source.image(s), source.label(s), max_size)
            write_image_atomic(root / "images" / f"{s.name}.png", img)
            if lab is not None:
                write_image_atomic(root / "labels" / f"{s.name}.png", lab)
            advance()
    save_class_spec(source.classes, root / "classes.yaml")
    small = open_dataset(root, format="generic", require_labels=True)
    return small.select([s.name for s in source.samples])


def _translate(
    cfg: PilotConfig, method_name: str, source, refs, tdir: Path, progress: bool
) -> dict:
    """Translate ``source`` with one method into ``tdir`` (resumable); its timing info.

    ``tdir.with_suffix(".json")`` records the method's parameters, the inputs and the
    time per image; a translation made from other inputs or parameters is refused rather
    than silently reused.
    """
    from synth2real.methods import create_method
    from synth2real.translate import translate_dataset

    info_path = tdir.parent / f"{tdir.name}.json"
    method = create_method(method_name, **cfg.method_params.get(method_name, {}))
    params = json.loads(json.dumps(method.params(), default=str))
    inputs = {
        "source": str(Path(source.root).resolve()),
        "source_images": len(source),
        "source_names_sha1": hashlib.sha1("\n".join(s.name for s in source).encode()).hexdigest(),
        "references": list(refs.names),
        "seed": cfg.translate_seed,
    }
    old = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    if old is not None and (old.get("params") != params or old.get("inputs") != inputs):
        raise OutputExistsError(
            f"{tdir} holds a translation made with other parameters or inputs "
            f"({old.get('params')} vs {params}); delete it or use another cache/output folder"
        )
    n_total = len(source)
    if old is not None and old.get("complete"):
        return old
    summary = translate_dataset(
        source,
        refs,
        method,
        tdir,
        seed=cfg.translate_seed,
        workers=cfg.workers,
        resume=True,
        progress=progress,
    )
    done_before = old.get("timed_images", 0) if old else 0
    seconds_before = old.get("seconds", 0.0) if old else 0.0
    spi = float(summary.seconds_per_image or 0.0)
    timed = done_before + int(summary.written)
    seconds = seconds_before + spi * int(summary.written)
    info = {
        "method": method_name,
        "params": params,
        "inputs": inputs,
        "needs_gpu": bool(getattr(method, "needs_gpu", False)),
        "images": n_total,
        "complete": int(summary.written) + int(summary.skipped) >= n_total,
        "timed_images": timed,
        "seconds": seconds,
        "seconds_per_image": seconds / timed if timed else None,
        "dir": str(tdir),
    }
    atomic_write_text(info_path, json.dumps(info, indent=2))
    return info


@dataclass
class _Runs:
    """What every training run of one pilot shares. Worker processes get it with every
    task without ``data`` (the datasets travel once, to the worker's initializer, and are
    put back from :data:`_WORKER`)."""

    cfg: PilotConfig
    out: Path
    budget_id: str
    budget: dict
    translations: dict
    data: dict | None = None


def _run_one(spec: RunSpec, runs: _Runs, progress: bool) -> dict:
    cfg, out, data = runs.cfg, runs.out, runs.data
    budget_id, budget, translations = runs.budget_id, runs.budget, runs.translations
    assert data is not None
    train_mod, eval_mod = _train_module(), _evaluate_module()
    source, refs, test = data["source"], data["references"], data["test"]
    # mixes put the references last: train() draws them with probability real_fraction
    real_fraction = None
    if spec.setting == "source-only":
        datasets = [source]
    elif spec.setting == "real-only":
        datasets = [refs]
    elif spec.setting == "source+real":
        datasets, real_fraction = [source, refs], cfg.real_ratio
    elif spec.setting == "translated":
        datasets = [data["translated"][spec.method]]
    elif spec.setting == "translated+real":
        datasets, real_fraction = [data["translated"][spec.method], refs], cfg.real_ratio
    else:  # pragma: no cover - plan_runs only makes the five settings
        raise ValueError(spec.setting)
    run_dir = out / spec.relpath
    tcfg = make_train_config(cfg, spec.seed, real_fraction)
    t0 = time.perf_counter()
    try:  # continue a run stopped mid-training
        tres = train_mod.train(datasets, tcfg, run_dir / "train", resume=True, progress=progress)
    except OutputExistsError as e:
        # the pilot owns this folder and pilot.json pins budget and data, so a mismatch
        # means stale files (a moved pilot folder, a rebuilt cache): train afresh
        _log(f"[yellow]{escape(spec.label)}: {escape(str(e))}; training afresh[/]", progress)
        tres = train_mod.train(datasets, tcfg, run_dir / "train", resume=False, progress=progress)
    wall = time.perf_counter() - t0
    ev = eval_mod.evaluate(tres.checkpoint, test, device=cfg.device, progress=progress)
    names = list(ev.class_names)
    iou = {n: _num(v) for n, v in zip(names, list(ev.iou), strict=True)}
    losses = list(getattr(tres, "losses", []) or [])
    tinfo = translations.get(spec.method) if spec.method else None
    record = {
        "setting": spec.setting,
        "method": spec.method,
        "seed": spec.seed,
        "miou": _num(ev.miou),
        "pixel_accuracy": _num(ev.pixel_accuracy),
        "iou": iou,
        "train_seconds": _num(getattr(tres, "seconds", None)) or round(wall, 3),
        "eval_seconds": _num(getattr(ev, "seconds", None)),
        "iterations": getattr(tres, "iterations", None),
        "final_loss": _num(losses[-1]) if losses else None,
        "translate_seconds_per_image": tinfo.get("seconds_per_image") if tinfo else None,
        "real_fraction": real_fraction,
        "train_images": sum(len(d) for d in datasets),
        "test_images": len(test),
        "checkpoint": _rel(tres.checkpoint, out),
        "budget_id": budget_id,
        "budget": budget,
        "model": cfg.model,
        "device": cfg.device,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(record, indent=2))
    return record


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(f, 6)


def _rel(p, out: Path) -> str | None:
    if p is None:
        return None
    p = Path(p)
    try:
        return str(p.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(p)


def load_finished(spec: RunSpec, out: Path, budget_id: str) -> dict | None:
    """The result of a finished run with this budget, or ``None``."""
    path = out / spec.relpath / "result.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # half-written by hand or corrupt: redo the run
    return rec if rec.get("budget_id") == budget_id else None


# -- parallel runs: one process per job ------------------------------------------------------
def auto_jobs(device: str = "auto") -> int:
    """Training runs at once: 1 on a GPU; on a CPU one per core, at most 4.

    Measured on 2 cores (docs/PILOT.md): two single-threaded runs trained ~1.6-2x faster in
    total than one run using both cores.
    """
    from synth2real.segment.device import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def parse_jobs(spec: int | str, device: str = "auto") -> int:
    """``"auto"`` -> :func:`auto_jobs`; else a positive int."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return auto_jobs(device)
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ConfigError(f"--jobs must be a positive integer or auto, got {spec!r}") from None
    if n < 1:
        raise ConfigError(f"--jobs must be >= 1, got {n}")
    return n


_WORKER: dict[str, Any] = {}


def _worker_init(threads: int, data: dict) -> None:
    import torch

    torch.set_num_threads(threads)
    data = dict(data)
    data["test"] = cached_in_memory(data["test"])  # decoded once per worker
    _WORKER["data"] = data


def _worker_run(k: int, spec: RunSpec, runs: _Runs) -> tuple[int, dict]:
    return k, _run_one(spec, dataclasses.replace(runs, data=_WORKER["data"]), False)


def _run_parallel(
    todo: list[tuple[int, RunSpec]],
    jobs: int,
    runs: _Runs,
    progress: bool,
    finished: Callable[[int, RunSpec, dict, bool], None],
    total: int,
) -> int:
    """Train ``todo`` in ``jobs`` spawned processes; ``finished`` is called in the parent as
    each run ends. Every run writes its own ``result.json`` (atomically), so a stopped
    pilot resumes exactly as a sequential one does."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from synth2real.progress import progress_bar

    threads = max(1, (os.cpu_count() or 1) // jobs)
    assert runs.data is not None
    plain = dict(runs.data)
    plain["test"] = getattr(plain["test"], "_uncached", plain["test"])
    _log(f"training {len(todo)} runs, {jobs} at a time ({threads} torch thread(s) each)", progress)
    specs = dict(todo)
    ran = 0
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads, plain),
    ) as pool:
        pending = {
            pool.submit(_worker_run, k, spec, dataclasses.replace(runs, data=None))
            for k, spec in todo
        }
        bar = progress_bar(len(todo), "training runs", enabled=progress)
        try:
            with bar as advance:
                while pending:
                    complete, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in complete:
                        k, rec = f.result()  # a failed run raises here
                        ran += 1
                        finished(k, specs[k], rec, False)
                        advance()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    _log(f"{ran} of {total} runs trained in this call", progress)
    return ran


def run_pilot(
    cfg: PilotConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    report: bool = True,
    on_run: Callable[[RunSpec, dict, bool], None] | None = None,
) -> PilotResult:
    """Run (or resume) a pilot into ``out``; returns where everything was written.

    Args:
        cfg: the pilot's settings.
        out: output folder (created). Holding another pilot is an error unless
            ``resume`` is set and the budget and data are the same.
        resume: continue a pilot in ``out``: finished runs and translated images are
            kept; methods and seeds may be added.
        progress: print a line per run and show the inner progress bars.
        report: write ``report.html`` at the end.
        on_run: called after each run with ``(spec, record, skipped)``.

    Raises:
        OutputExistsError: ``out`` holds another pilot, or one and ``resume`` is not set.
        ConfigError: bad settings (unknown method, budget key, class mismatch ...).
        DataError: unreadable input files.
    """
    from synth2real.methods.registry import get_entry

    out = Path(out)
    _check_out(out, cfg, resume)
    for m in cfg.methods:
        get_entry(m)  # unknown names fail before any work
    if "none" in cfg.methods:
        _log(
            "[dim]method 'none' is the source-only / source+real baseline: not run twice[/]",
            progress,
        )
    budget = effective_budget(cfg)
    budget_id = _budget_id(budget, cfg.model)

    # -- data (checked before anything is written) ----------------------------------------
    source = _open(cfg.source, cfg, cfg.source_names, "source")
    if cfg.source_limit is not None and cfg.source_limit < len(source):
        rng = random.Random(0)
        picked = sorted(rng.sample(range(len(source)), cfg.source_limit))
        source = source.subset([source.samples[i] for i in picked])
    refs_ds = _open(cfg.references, cfg, cfg.reference_names, "references")
    test = cached_in_memory(_open(cfg.test, cfg, cfg.test_names, "test"))
    _check_classes(source, refs_ds, "references")
    _check_classes(source, test, "test")
    overlap = {s.image_path.resolve() for s in refs_ds} & {s.image_path.resolve() for s in test}
    if overlap:
        raise ConfigError(
            f"{len(overlap)} image(s) are both references and test images (e.g. {sorted(overlap)[0]}); "
            "give disjoint --reference-names and --test-names"
        )
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "fixed": json.loads(json.dumps(cfg.fixed(), default=str)),
        "config": cfg.to_dict(),
        "budget": budget,
        "budget_id": budget_id,
    }
    atomic_write_text(out / "pilot.json", json.dumps(meta, indent=2, default=str))
    cache = cfg.cache_dir if cfg.cache_dir is not None else out
    shrink = budget.get("max_size") if cfg.translate_at_train_size else None
    small = source_at_size(source, shrink, cache, progress)
    tbase = cache / ("translated" if small is source else f"translated-max{shrink}")
    source = small
    data: dict[str, Any] = {"source": source, "references": refs_ds, "test": test, "translated": {}}
    _log(
        f"[bold]pilot[/]: {len(source)} synthetic, {len(refs_ds)} references, {len(test)} test images; "
        + escape(
            f"classes {list(source.classes.names)}; methods {cfg.translation_methods or '-'}; "
            f"seeds {cfg.seeds}"
        ),
        progress,
    )
    shown = {k: budget[k] for k in (*cfg.budget, "max_size") if k in budget}
    _log(
        escape(
            f"budget (same for every run): model {cfg.model}, "
            + ", ".join(f"{k}={v}" for k, v in shown.items())
            + f" (all fields: {out / 'pilot.json'})"
        ),
        progress,
    )

    # -- translation, once per method ----------------------------------------------------
    from synth2real.data.readers import open_dataset

    translations: dict[str, dict] = {}
    if cfg.translation_methods:
        from synth2real.translate import load_references

        refs = load_references(
            cfg.references,
            names=[s.name for s in refs_ds],
            classes=refs_ds.classes,
            format=cfg.format,
            class_map=cfg.class_map,
        )
    for i, m in enumerate(cfg.translation_methods, 1):
        _log(f"[bold cyan]translate {i}/{len(cfg.translation_methods)}[/]: {escape(m)}", progress)
        translations[m] = _translate(cfg, m, source, refs, tbase / m, progress)
        tds = open_dataset(tbase / m, require_labels=True)
        _check_classes(source, tds, f"translation {m}")
        if len(tds) != len(source):
            raise RuntimeError(
                f"translation {m}: {len(tds)} images written for {len(source)} synthetic ones"
            )
        data["translated"][m] = tds

    # -- training runs -------------------------------------------------------------------
    plan = plan_runs(cfg.methods, cfg.seeds)
    done: dict[int, dict] = {}
    ran = skipped = 0

    def finished(k: int, spec: RunSpec, rec: dict, was_skipped: bool) -> None:
        done[k] = rec
        if not was_skipped:
            _log(
                f"  -> {escape(spec.label)}: mIoU {rec['miou']:.3f}, "
                + escape(", ".join(f"{n} {v:.3f}" for n, v in rec["iou"].items() if v is not None))
                + f" ({rec['train_seconds']:.1f} s training, {rec['eval_seconds'] or 0:.1f} s scoring)",
                progress,
            )
        if on_run is not None:
            on_run(spec, rec, was_skipped)
        if not was_skipped:  # skipped runs are written once, below
            write_partial()

    def write_partial() -> None:
        records = [done[i] for i in sorted(done)]
        _write_results(out, cfg, budget, records, translations, data, partial=len(done) < len(plan))

    todo: list[tuple[int, RunSpec]] = []
    for k, spec in enumerate(plan):
        rec = load_finished(spec, out, budget_id) if resume else None
        if rec is not None:
            skipped += 1
            _log(
                f"[dim]run {k + 1} of {len(plan)}: {escape(spec.label)}: finished earlier, skipped[/]",
                progress,
            )
            finished(k, spec, rec, True)
        else:
            todo.append((k, spec))
    if skipped:
        write_partial()
    runs = _Runs(cfg, out, budget_id, budget, translations, data)
    jobs = min(cfg.jobs, len(todo))
    if jobs <= 1:
        for k, spec in todo:
            _log(f"[bold green]run {k + 1} of {len(plan)}[/]: {escape(spec.label)}", progress)
            rec = _run_one(spec, runs, progress)
            ran += 1
            finished(k, spec, rec, False)
    else:
        ran = _run_parallel(todo, jobs, runs, progress, finished, len(plan))

    records = [done[i] for i in sorted(done)]
    results = _write_results(out, cfg, budget, records, translations, data, partial=False)
    report_path = None
    if report:
        from synth2real.pilot.report import write_report

        report_path = write_report(results, out, data=data)
        _log(f"[bold]report[/]: {escape(str(report_path))}", progress)
    _log(f"[bold]verdict[/]: {escape(results['verdict']['headline'])}", progress)
    return PilotResult(
        out, report_path, out / "results.json", out / "results.csv", results, ran, skipped
    )


def build_results(
    cfg: PilotConfig,
    budget: dict,
    records: list[dict],
    translations: dict,
    classes: list[str],
    counts: dict,
    machine: dict,
    partial: bool = False,
) -> dict:
    """The content of ``results.json``: settings, machine, every run, summary, verdict.

    Pure: no files are read (``counts``: ``{"source": n, "references": n, "test": n,
    "reference_names": [...]}``).
    """
    from synth2real.pilot.verdict import aggregate, stat

    verdict = decide(records, cfg.translation_methods, cfg.metric)
    metrics = ["miou", "pixel_accuracy"] + [f"iou:{c}" for c in classes]
    keys: list[tuple[str, str | None]] = []
    for r in records:
        k = (r["setting"], r["method"])
        if k not in keys:
            keys.append(k)
    aggs = {m: aggregate(records, m) for m in metrics}
    summary = []
    for k in keys:
        rows = [r for r in records if (r["setting"], r["method"]) == k]
        entry: dict[str, Any] = {
            "setting": k[0],
            "method": k[1],
            "seeds": [r["seed"] for r in rows],
        }
        for m in metrics:
            entry[m] = aggs[m][k].to_dict()
        entry["train_seconds"] = stat(r.get("train_seconds") for r in rows).to_dict()
        entry["eval_seconds"] = stat(r.get("eval_seconds") for r in rows).to_dict()
        summary.append(entry)
    return {
        "version": 1,
        "partial": partial,
        "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
        "budget": budget,
        "machine": machine,
        "classes": list(classes),
        "metric": cfg.metric,
        "metric_label": metric_label(cfg.metric),
        "data": counts,
        "translations": translations,
        "runs": records,
        "summary": summary,
        "verdict": verdict.to_dict(),
    }


def _write_results(
    out: Path,
    cfg: PilotConfig,
    budget: dict,
    records: list[dict],
    translations: dict,
    data: dict,
    partial: bool,
) -> dict:
    from synth2real.pilot.machine import machine_info

    classes = list(data["source"].classes.names)
    counts = {
        "source": len(data["source"]),
        "references": len(data["references"]),
        "test": len(data["test"]),
        "reference_names": [s.name for s in data["references"]],
    }
    results = build_results(
        cfg, budget, records, translations, classes, counts, machine_info(cfg.device), partial
    )
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    atomic_write_text(out / "results.csv", results_csv(records, classes, results["machine"]))
    return results


CSV_FIELDS = [
    "setting",
    "method",
    "seed",
    "miou",
    "pixel_accuracy",
    "train_seconds",
    "eval_seconds",
    "iterations",
    "translate_seconds_per_image",
    "train_images",
    "test_images",
    "model",
    "device",
]


def results_csv(records: Sequence[dict], classes: Sequence[str], machine: dict) -> str:
    """One row per run: metrics, per-class IoU (``iou_<class>``), timings, budget, machine."""
    buf = io.StringIO()
    fields = (
        CSV_FIELDS[:5]
        + [f"iou_{c}" for c in classes]
        + CSV_FIELDS[5:]
        + ["budget", "cpu", "cores", "gpu"]
    )
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {k: r.get(k) for k in CSV_FIELDS}
        row["method"] = r.get("method") or ""
        for c in classes:
            row[f"iou_{c}"] = (r.get("iou") or {}).get(c)
        row["budget"] = json.dumps(r.get("budget"), sort_keys=True)
        row.update(cpu=machine.get("cpu"), cores=machine.get("cores"), gpu=machine.get("gpu") or "")
        w.writerow(row)
    return buf.getvalue()
