"""Translate a whole dataset: references in, a translated dataset (+ manifest) out.

::

    refs = load_references("real/", names=["a", "b"])
    method = create_method("reinhard-cw")
    summary = translate_dataset(open_dataset("synthetic/"), refs, method, "out/")
    # or, from folders (what ``synth2real translate`` calls):
    summary = translate_folder("synthetic/", "real/", "reinhard-cw", "out/")

References are loaded and chosen in :mod:`synth2real.references` (``load_references``,
``choose_references``; importable from here too).

What this module guarantees, whatever the method:

- every output image has exactly its input's size; labels are copied unchanged (or, for
  formats that cannot be copied, written decoded), so ``open_dataset(out)`` yields the
  source's classes and label maps;
- the reference used for each image is chosen up front, deterministically
  (``round-robin``, seeded ``random``, or ``matched`` class frequencies), and recorded;
- the same seed gives the same bytes whatever the number of workers or shards: each
  image's random numbers come from ``image_seed(seed, sample name)`` (batched methods,
  whose batches the runner groups by reference, up to the float rounding of batched
  kernels: a rare pixel may move by one grey level);
- a killed run resumes where it stopped (``resume=True``): finished images are skipped,
  partial files never exist (atomic writes), a torn manifest line is repaired;
- an output folder holding a different run is refused unless ``overwrite=True``;
- under ``accelerate launch`` (``WORLD_SIZE > 1``) each process translates its shard and
  the main process merges the manifests after everyone finished; without accelerate,
  ``shard=(i, n)`` does the same by hand and the last shard to finish merges.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synth2real import __version__
from synth2real.data.dataset import Dataset
from synth2real.data.writer import DatasetWriter
from synth2real.errors import ConfigError, DataError
from synth2real.guard import OutputLock, names_file, output_lock
from synth2real.guard import check_output as check_output_folder
from synth2real.methods.base import Method, References, check_output, image_seed
from synth2real.progress import progress_bar
from synth2real.references import (
    REFERENCE_CHOICES,
    check_classwise,
    choose_references,
    class_shares,
    describe_references,
    load_references,
    reference_predictor,
)

log = logging.getLogger("synth2real.translate")

#: test hook: seconds to sleep after each written image (lets tests kill a run mid-way)
_SLEEP_ENV = "S2R_DEBUG_SLEEP_PER_IMAGE"


@dataclass
class TranslateSummary:
    """What :func:`translate_dataset` did.

    Attributes:
        out: the output folder.
        written: images translated by this call (this shard).
        skipped: images of this shard already finished by an earlier call (resume).
        seconds_per_image: wall-clock seconds of this call per written image (reading,
            translating and writing; 0 when nothing was written).
        manifest: the merged ``manifest.jsonl``, or ``None`` while other shards are
            unfinished.
        shard: ``(index, count)`` this call translated.
        method: the method's registry name.
    """

    out: Path
    written: int
    skipped: int
    seconds_per_image: float
    manifest: Path | None
    shard: tuple[int, int] = (0, 1)
    method: str = ""
    total: int = field(default=0)


def plan_batches(
    todo: Sequence[int], assignment: Sequence[int], batch_size: int
) -> list[list[tuple[int, int]]]:
    """Split the work into batches of ``(sample index, reference index)``.

    With ``batch_size > 1`` the samples are grouped by their reference (groups in order of
    first appearance, dataset order inside each group) before being cut into batches, so
    a batch holds one reference (two where groups meet): a diffusion method then runs one
    style branch per batch instead of one per image. Nothing else changes: each image's
    result depends only on its own seed (``image_seed(seed, name)``), not on its batch,
    and the manifest is merged in dataset order.
    """
    order = list(todo)
    if batch_size > 1:
        rank: dict[int, int] = {}
        for i in order:
            rank.setdefault(assignment[i], len(rank))
        order.sort(key=lambda i: rank[assignment[i]])  # stable: dataset order inside
    return [
        [(i, assignment[i]) for i in order[k : k + batch_size]]
        for k in range(0, len(order), batch_size)
    ]


# -- workers -------------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def _worker_init(
    method: Method,
    references: References,
    source: Dataset,
    writer: DatasetWriter,
    info: dict,
    threads: int | None,
) -> None:
    if threads is not None:
        import cv2

        cv2.setNumThreads(threads)
    method.prepare(references)
    _STATE.update(method=method, references=references, source=source, writer=writer, info=info)


def _process(batch: list[tuple[int, int]]) -> list[dict]:
    """Translate and write a batch of ``(sample index, reference index)``; manifest entries."""
    method: Method = _STATE["method"]
    refs: References = _STATE["references"]
    source: Dataset = _STATE["source"]
    writer: DatasetWriter = _STATE["writer"]
    info: dict = _STATE["info"]
    t0 = time.perf_counter()
    samples = [source.samples[i] for i, _ in batch]
    pairs = [source.pair(s) for s in samples]
    images = [p[0] for p in pairs]
    labels = [p[1] for p in pairs]
    if method.needs_reference_labels:
        for s, lab in zip(samples, labels, strict=True):
            if lab is None:
                raise DataError(
                    s.image_path,
                    f"method {method.name!r} is class-wise and this image has no label map",
                )
    seeds = [image_seed(info["seed"], s.name) for s in samples]
    t1 = time.perf_counter()
    outs = method.apply_batch(images, labels, [r for _, r in batch], seeds)
    t_apply = (time.perf_counter() - t1) / max(1, len(batch))
    if len(outs) != len(images):
        raise RuntimeError(f"method {method.name!r} returned {len(outs)} images for {len(images)}")
    entries = []
    sleep = float(os.environ.get(_SLEEP_ENV, "0") or 0)
    for s, img, lab, out, (_, r), sd in zip(
        samples, images, labels, outs, batch, seeds, strict=True
    ):
        check_output(img, out, method.name)
        files = writer.write(s, out, lab)
        used = method.reference_indices(r)
        entries.append(
            {
                "name": s.name,
                "source_image": str(s.image_path),
                "source_label": None if s.label_path is None else str(s.label_path),
                **files,
                "height": int(img.shape[0]),
                "width": int(img.shape[1]),
                "method": method.name,
                "params": info["params"],
                "reference": refs.names[r],
                "references_used": [refs.names[j] for j in used],
                "reference_labels_predicted": any(refs.predicted[j] for j in used),
                "reference_choice": info["reference_choice"],
                "seed": info["seed"],
                "image_seed": sd,
                "apply_seconds": round(t_apply, 4),
            }
        )
        if sleep:
            time.sleep(sleep)
    per = (time.perf_counter() - t0) / max(1, len(batch))
    for e in entries:
        e["seconds"] = round(per, 4)
    return entries


# -- the runner ----------------------------------------------------------------------------
def _run_info(
    source: Dataset, references: References, method: Method, seed: int, choice: str, layout: str
) -> dict:
    names_hash = hashlib.sha256("\n".join(s.name for s in source.samples).encode()).hexdigest()[:16]
    return {
        "synth2real": __version__,
        "method": method.name,
        "params": method.params(),
        "source": {
            "root": str(Path(source.root).resolve()),
            "format": getattr(source, "format", "base"),
            "samples": len(source),
            "names_sha256": names_hash,
            "classes": list(source.classes.names),
        },
        "references": describe_references(references),
        "seed": int(seed),
        "reference_choice": choice,
        "layout": layout,
    }


def _distributed():
    """``accelerate.PartialState`` when launched with several processes, else ``None``.

    Without a GPU, accelerate needs ``cpu=True`` to join the processes (gloo backend);
    otherwise every process would believe it is alone and translate everything.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes != world:
        raise ConfigError(
            f"WORLD_SIZE={world} but accelerate sees {state.num_processes} process(es); "
            "launch with `accelerate launch --num_processes N -m synth2real translate ...`"
        )
    return state


def translate_dataset(
    source: Dataset,
    references: References,
    method: Method,
    out: str | Path,
    *,
    seed: int = 0,
    reference_choice: str = "round-robin",
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    layout: str = "auto",
) -> TranslateSummary:
    """Translate every image of ``source`` towards ``references`` with ``method`` into ``out``.

    Args:
        source: the (synthetic) dataset; labelled for class-wise methods.
        references: from :func:`load_references`.
        method: an unprepared method from :func:`~synth2real.methods.create_method`; it
            is prepared here (once per worker process).
        out: output folder (created; must not overlap the source).
        seed: run seed; every image's seed is ``image_seed(seed, name)``.
        reference_choice: ``round-robin``, ``random`` or ``matched`` (see
            :func:`choose_references`).
        workers: processes for CPU methods (each prepares the method once); GPU methods
            always run in this process (a larger value is ignored with a warning: one
            process per GPU is ``accelerate launch``'s job).
        resume: continue a stopped run of the same configuration in ``out``.
        overwrite: replace a different run in ``out`` (only files a run writes are removed).
        progress: show a progress bar with ETA.
        shard: ``(index, count)``: translate samples ``index, index + count, ...`` only.
            Under ``accelerate launch`` the process index and count are used.
        layout: ``auto``, ``generic`` or ``supervisely`` (see :mod:`synth2real.data.writer`).

    Returns:
        :class:`TranslateSummary`.

    Raises:
        ConfigError: bad arguments, class specs that differ between source and references
            for a class-wise method, unlabelled references for a class-wise method.
        OutputExistsError: ``out`` holds another run (see ``resume``/``overwrite``).
        DataError: an unreadable input, naming the file.
    """
    if reference_choice not in REFERENCE_CHOICES:
        raise ConfigError(
            f"unknown reference choice {reference_choice!r}; choose one of {REFERENCE_CHOICES}"
        )
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if not isinstance(method, Method):
        raise ConfigError(
            f"method must be a Method (create_method(name)), got {type(method).__name__}"
        )
    if len(source) == 0:
        raise DataError(source.root, "the source dataset holds no images")
    state = _distributed() if shard is None else None
    if state is not None:
        shard = (state.process_index, state.num_processes)
    shard = shard or (0, 1)
    if not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ConfigError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    shard = (int(shard[0]), int(shard[1]))
    if method.needs_gpu and workers > 1:
        log.warning(
            "%s: workers=%d ignored: a GPU method runs in this one process (its batches "
            "already fill the device); for several GPUs run one process per GPU with "
            "`accelerate launch --num_processes N -m synth2real translate ...`",
            method.name,
            workers,
        )
        workers = 1
    check_classwise(method, references, source)

    names = [s.name for s in source.samples]
    shares = None
    if reference_choice == "matched":
        shares = np.zeros((len(source), source.classes.num_classes))
        with progress_bar(len(source), "class shares", progress, unit="img") as advance:
            for i, s in enumerate(source.samples):
                shares[i] = class_shares(source.label(s), source.classes.num_classes)
                advance()
    assignment = choose_references(names, references, reference_choice, seed, shares)

    protect = [("the references", references.root)] if references.root else []
    writer = DatasetWriter(out, source, layout, protect=protect)
    check_output_folder(out, {"the source dataset": source.root, **dict(protect)})
    with output_lock(out, shard=shard) as lock:  # for the whole run: one run per folder
        return _translate_locked(
            source, references, method, writer, lock, state, shard, assignment,
            seed=seed, reference_choice=reference_choice, workers=workers, resume=resume,
            overwrite=overwrite, progress=progress,
        )  # fmt: skip


def _translate_locked(
    source: Dataset,
    references: References,
    method: Method,
    writer: DatasetWriter,
    lock: OutputLock,
    state: Any,
    shard: tuple[int, int],
    assignment: list[int],
    *,
    seed: int,
    reference_choice: str,
    workers: int,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> TranslateSummary:
    """The part of :func:`translate_dataset` that writes, under the folder's lock."""
    out = writer.out
    names = [s.name for s in source.samples]
    run = _run_info(source, references, method, seed, reference_choice, writer.plan.layout)
    run["labels"] = writer.plan.reason
    is_main = state is None or state.is_main_process
    mine = list(range(shard[0], len(source), shard[1]))
    info = {"seed": int(seed), "params": method.params(), "reference_choice": reference_choice}

    def unfinished() -> list[int]:
        done = writer.finished()
        return [i for i in mine if not (names[i] in done and writer.is_written(source.samples[i]))]

    if is_main:
        writer.check_folder(run, resume=resume, overwrite=overwrite, shard=shard)
    prepared = state is None and method.needs_gpu and bool(unfinished())
    if prepared:  # load the model before anything is written: bad weights change nothing
        _worker_init(method, references, source, writer, info, None)
    if is_main:  # another shard's temporary files are its images in flight: left alone
        writer.start(run, remove_temp=lock.alone())
    if state is not None:
        state.wait_for_everyone()
        if not is_main:
            writer.check_folder(run, resume=resume, overwrite=False, shard=shard)
    writer.repair_part(shard)

    todo = unfinished()
    skipped = len(mine) - len(todo)
    bs = max(1, int(getattr(method, "batch_size", 1) or 1))
    batches = plan_batches(todo, assignment, bs)

    t0 = time.perf_counter()
    written = 0
    desc = f"{method.name}" + (f" [shard {shard[0] + 1}/{shard[1]}]" if shard[1] > 1 else "")
    with progress_bar(len(mine), desc, progress, completed=skipped, unit="img") as advance:

        def record(entries: list[dict]) -> None:
            nonlocal written
            for e in entries:
                writer.append(shard, e)
                written += 1
            advance(len(entries))

        if not batches:
            pass
        elif workers == 1 or len(batches) == 1:
            if not prepared:
                _worker_init(method, references, source, writer, info, None)
            try:
                for b in batches:
                    record(_process(b))
            finally:
                _STATE.clear()
        else:
            _run_pool(batches, workers, method, references, source, writer, info, record)
    elapsed = time.perf_counter() - t0

    if state is not None:
        state.wait_for_everyone()
        manifest = writer.merge(names) if is_main else None
        state.wait_for_everyone()
        if not is_main:
            manifest = writer.out / "manifest.jsonl"
    else:
        manifest = writer.merge(names)
    return TranslateSummary(
        out=Path(out),
        written=written,
        skipped=skipped,
        seconds_per_image=elapsed / written if written else 0.0,
        manifest=manifest,
        shard=shard,
        method=method.name,
        total=len(mine),
    )


def _run_pool(batches, workers, method, references, source, writer, info, record) -> None:
    """Run ``batches`` on ``workers`` spawned processes, recording results as they come.

    The workers ignore Ctrl-C and exit when this process dies (:mod:`synth2real.workers`):
    an interrupt is this process's to handle, and a killed run leaves no orphans.
    """
    from synth2real.workers import process_pool, stop

    pool = process_pool(
        min(workers, len(batches)),
        initializer=_worker_init,
        initargs=(method, references, source, writer, info, 1),
    )
    try:
        pending = set()
        it = iter(batches)
        # keep a bounded number of batches in flight so an interruption loses little
        for b in it:
            pending.add(pool.submit(_process, b))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                record(f.result())
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(_process, nxt))
    except BrokenProcessPool:
        stop(pool)
        # a worker died while preparing or translating: reproduce the preparation here so
        # the user sees the real error, not "a process terminated abruptly"
        method.prepare(references)
        raise
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)


def check_method_ready(method: Method, *, model_given: bool = False, device_hint: str = "") -> None:
    """Before any work: a GPU method has its weights and a device, or a one-line error.

    Weights: a local folder must have the diffusers layout; a hub id is used when it is
    in the local Hugging Face cache, or downloaded only when the user named it
    (``model_given``); nothing here touches the network. Device: ``auto`` on a machine
    without a GPU is refused (``device_hint`` says how to ask for the CPU explicitly).
    """
    if not method.needs_gpu:
        return
    params = method.params()
    from synth2real.diffusion.loading import allow_download, check_device, check_weights

    if "model" in params:
        if model_given:
            allow_download(str(params["model"]))
        check_weights(str(params["model"]), method.name)
    if "device" in params:
        check_device(str(params["device"]), method.name, device_hint or "--device cpu")


# -- folders in, a translated dataset out (``synth2real translate``) -----------------------
def method_overrides(
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
    device: str | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """``params`` of registry method ``method``, with the diffusion weights ``model``
    (``--diffusion-model``) and ``device`` (``--device``) filled in where the method has
    such a parameter and ``params`` does not set it: the one place where the commands'
    weights and device options reach the methods (``translate`` and ``pilot``).

    Raises:
        ConfigError: with ``strict``, ``model`` given for a method that takes no weights.
    """
    from synth2real.methods.registry import describe

    overrides = dict(params or {})
    known = {p.name for p in describe(method)[1]}
    for key, value in (("model", model), ("device", device)):
        if value is None or key in overrides:
            continue
        if key in known:
            overrides[key] = value
        elif key == "model" and strict:
            raise ConfigError(
                f"--diffusion-model applies to diffusion methods; {method!r} takes no weights"
            )
    return overrides


def translate_folder(
    source: str | Path,
    references: str | Path,
    method: str,
    out: str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    model: str | None = None,
    device: str | None = None,
    reference_names: Sequence[str] | str | None = None,
    reference_labels_from: str | Path | None = None,
    format: str | None = None,
    classes: str | Path | None = None,
    class_map: str | Path | None = None,
    reference_format: str | None = None,
    reference_classes: str | Path | None = None,
    reference_class_map: str | Path | None = None,
    **run: Any,
) -> TranslateSummary:
    """Translate the dataset folder ``source`` towards the photos in ``references`` with
    the registry's ``method`` into ``out``: what ``synth2real translate`` does.

    ``format`` / ``classes`` / ``class_map`` open the source; ``reference_names`` and the
    ``reference_*`` options the references (:func:`load_references`). ``params`` are the
    method's (typed, as ``parse_method_params`` gives them); ``model`` (diffusion weights)
    and ``device`` fill the parameters of those names where ``params`` does not
    (:func:`method_overrides`; ``device`` also runs ``reference_labels_from``, a
    checkpoint that predicts the label maps of unlabelled references); ``run`` holds
    :func:`translate_dataset`'s keywords (``seed``, ``workers``, ``resume``, ``shard`` ...).
    """
    from synth2real.data.readers import open_dataset
    from synth2real.methods import create_method

    check_output_folder(
        out,
        {
            "--source": source,
            "--references": references,
            "--reference-labels-from": reference_labels_from,
            "--classes": classes,
            "--class-map": class_map,
            "--reference-classes": reference_classes,
            "--reference-class-map": reference_class_map,
            "--reference-names": names_file(reference_names),
            # a local weights folder is an input too (a hub id is not a path)
            "--diffusion-model": model if model and Path(model).is_dir() else None,
        },
    )
    overrides = method_overrides(method, params, model=model, device=device)
    m = create_method(method, **overrides)
    check_method_ready(m, model_given="model" in overrides)
    ds = open_dataset(source, format=format, classes=classes, class_map=class_map)
    predictor = None
    if reference_labels_from is not None:
        predictor = reference_predictor(reference_labels_from, ds.classes, device or "auto")
    refs = load_references(
        references,
        names=reference_names,
        classes=reference_classes
        if reference_classes is not None
        else (ds.classes if predictor is not None else None),
        format=reference_format,
        class_map=reference_class_map,
        predictor=predictor,
    )
    if any(refs.predicted):
        log.info(
            "predicted label maps for %d unlabelled reference(s) with %s",
            sum(refs.predicted),
            reference_labels_from,
        )
    if not any(lab is not None for lab in refs.labels):
        refs.classes = ds.classes  # unlabelled photos: nothing to disagree with
    return translate_dataset(ds, refs, m, out, **run)
