"""Translate a whole dataset: references in, a translated dataset (+ manifest) out.

::

    refs = load_references("real/", names=["a", "b"])
    method = create_method("reinhard-cw")
    summary = translate_dataset(open_dataset("synthetic/"), refs, method, "out/")

What this module guarantees, whatever the method:

- every output image has exactly its input's size; labels are copied unchanged (or, for
  formats that cannot be copied, written decoded), so ``open_dataset(out)`` yields the
  source's classes and label maps;
- the reference used for each image is chosen up front, deterministically
  (``round-robin``, seeded ``random``, or ``matched`` class frequencies), and recorded;
- the same seed gives the same bytes whatever the number of workers or shards: each
  image's random numbers come from ``image_seed(seed, sample name)``;
- a killed run resumes where it stopped (``resume=True``): finished images are skipped,
  partial files never exist (atomic writes), a torn manifest line is repaired;
- an output folder holding a different run is refused unless ``overwrite=True``;
- under ``accelerate launch`` (``WORLD_SIZE > 1``) each process translates its shard and
  the main process merges the manifests after everyone finished; without accelerate,
  ``shard=(i, n)`` does the same by hand and the last shard to finish merges.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synth2real import __version__
from synth2real.data.classes import ClassSpec
from synth2real.data.dataset import Dataset
from synth2real.data.writer import DatasetWriter
from synth2real.errors import ConfigError, DataError
from synth2real.methods.base import Method, References, check_output, image_seed
from synth2real.progress import progress_bar

REFERENCE_CHOICES = ("round-robin", "random", "matched")

#: test hook: seconds to sleep after each written image (lets tests kill a run mid-way)
_SLEEP_ENV = "S2R_DEBUG_SLEEP_PER_IMAGE"

Predictor = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


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


# -- references ----------------------------------------------------------------------------
def load_references(
    path: str | Path,
    names: Sequence[str] | str | None = None,
    classes: ClassSpec | str | Path | None = None,
    format: str | None = None,
    class_map: Any = None,
    predictor: Predictor | None = None,
) -> References:
    """Read reference images (and their label maps where they have them).

    Args:
        path: a dataset folder in any format :func:`~synth2real.data.readers.open_dataset`
            reads, labelled or not (a plain folder of photos works).
        names: the references to use, in this order: a list of sample names / file names,
            or a selection string (``a,b,c``, a text file, ``splits.json:references``).
            ``None`` takes every image.
        classes: class spec of the label maps (ClassSpec or YAML path); default: the
            dataset's own. For unlabelled folders, pass the content's class spec so
            predicted label maps are read in the right classes.
        format: dataset format; detected when ``None``.
        class_map: class map (path or ClassMap) onto the content's classes.
        predictor: ``images -> label maps`` for references without labels (``HxW`` class
            indices of each image's size); those label maps are marked ``predicted``.

    Returns:
        :class:`References`; ``labels[i]`` is ``None`` for unlabelled images when no
        predictor is given (class-wise methods then refuse them with a clear message).

    Raises:
        DataError: unreadable files, names not found, bad predicted label maps.
    """
    from synth2real.data.readers import open_dataset
    from synth2real.data.select import parse_names

    ds = open_dataset(path, format=format, classes=classes, class_map=class_map)
    if names is not None:
        if isinstance(names, str):
            names = parse_names(names)
        try:
            ds = ds.select(list(names))
        except KeyError as e:
            raise DataError(path, f"references: {e.args[0]}") from None
    if len(ds) == 0:
        raise DataError(path, "no reference images")
    images: list[np.ndarray] = []
    labels: list[np.ndarray | None] = []
    for s in ds.samples:
        img, lab = ds.pair(s)
        images.append(img)
        labels.append(lab)
    predicted = [False] * len(images)
    missing = [i for i, lab in enumerate(labels) if lab is None]
    if missing and predictor is not None:
        preds = list(predictor([images[i] for i in missing]))
        if len(preds) != len(missing):
            raise DataError(
                path, f"the predictor returned {len(preds)} label maps for {len(missing)} images"
            )
        k, ignore = ds.classes.num_classes, ds.classes.ignore_index
        for i, pred in zip(missing, preds, strict=True):
            pred = np.asarray(pred)
            name = ds.samples[i].image_path
            if pred.shape != images[i].shape[:2]:
                raise DataError(
                    name,
                    f"predicted label map {pred.shape} differs from the image {images[i].shape[:2]}",
                )
            if (
                pred.dtype.kind not in "ui"
                or ((pred >= k) & (pred != ignore)).any()
                or (pred < 0).any()
            ):
                raise DataError(
                    name, f"predicted label map must hold class indices 0..{k - 1} (or {ignore})"
                )
            labels[i] = pred.astype(np.uint8)
            predicted[i] = True
    return References(
        images, labels, [s.name for s in ds.samples], ds.classes, predicted, root=str(Path(path))
    )


def _class_shares(label: np.ndarray | None, k: int) -> np.ndarray:
    out = np.zeros(k)
    if label is None:
        return out
    counts = np.bincount(label.reshape(-1), minlength=256)[:k].astype(np.float64)
    total = counts.sum()
    return counts / total if total else out


def choose_references(
    names: Sequence[str],
    references: References,
    strategy: str = "round-robin",
    seed: int = 0,
    content_shares: np.ndarray | None = None,
) -> list[int]:
    """The reference index for every content image, computed up front.

    Args:
        names: the content samples' names, in dataset order.
        references: the prepared references.
        strategy: ``round-robin`` (image ``i`` gets reference ``i mod R``), ``random``
            (uniform, from ``image_seed(seed, "reference:" + name)``: independent of
            order, workers and shards), or ``matched`` (the reference whose class-share
            vector is closest in L1 distance to the image's; ties go round-robin among
            the tied references).
        seed: the run's seed (``random``).
        content_shares: ``len(names) x K`` pixel shares per class (``matched`` only).

    L1 distance between share vectors is twice the share of pixels that would have to
    change class; unlike cosine similarity it is not dominated by the direction of the
    largest class, so a reference with cracks wins over one without for an image with
    cracks even when both are 95% background.
    """
    r = len(references)
    if strategy == "round-robin":
        return [i % r for i in range(len(names))]
    if strategy == "random":
        return [
            int(np.random.default_rng(image_seed(seed, f"reference:{n}")).integers(r))
            for n in names
        ]
    if strategy == "matched":
        if not references.labelled:
            raise ConfigError(
                "--reference-choice matched needs label maps for every reference (given or predicted)"
            )
        if content_shares is None:
            raise ConfigError("matched reference choice needs the content images' class shares")
        ref_shares = references.class_frequencies()
        out = []
        for i, shares in enumerate(content_shares):
            d = np.abs(ref_shares - shares[None]).sum(1)
            tied = np.flatnonzero(d <= d.min() + 1e-12)
            out.append(int(tied[i % len(tied)]))
        return out
    raise ConfigError(f"unknown reference choice {strategy!r}; choose one of {REFERENCE_CHOICES}")


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
def _fingerprint_arrays(arrays: Sequence[np.ndarray | None]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
        else:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


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
        "references": {
            "root": references.root,
            "names": list(references.names),
            "predicted": list(references.predicted),
            "images_sha256": _fingerprint_arrays(references.images),
            "labels_sha256": _fingerprint_arrays(references.labels),
        },
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
            always run in this process.
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
    if method.needs_gpu:
        workers = 1
    if method.needs_reference_labels:
        if not references.labelled:
            method.prepare(references)  # raises the method's clear message
        if references.classes.names != source.classes.names:
            raise ConfigError(
                f"method {method.name!r} is class-wise, but the references' classes "
                f"{list(references.classes.names)} differ from the source's "
                f"{list(source.classes.names)}: give the references a class spec or class "
                "map onto the source's classes"
            )
        unlabelled = [s.image_path.name for s in source.samples if s.label_path is None]
        if unlabelled:
            raise DataError(
                source.root,
                f"method {method.name!r} is class-wise but {len(unlabelled)} source images "
                f"have no label map ({', '.join(unlabelled[:3])} ...)",
            )

    names = [s.name for s in source.samples]
    shares = None
    if reference_choice == "matched":
        shares = np.zeros((len(source), source.classes.num_classes))
        with progress_bar(len(source), "class shares", progress, unit="img") as advance:
            for i, s in enumerate(source.samples):
                shares[i] = _class_shares(source.label(s), source.classes.num_classes)
                advance()
    assignment = choose_references(names, references, reference_choice, seed, shares)

    protect = [("the references", references.root)] if references.root else []
    writer = DatasetWriter(out, source, layout, protect=protect)
    run = _run_info(source, references, method, seed, reference_choice, writer.plan.layout)
    run["labels"] = writer.plan.reason
    is_main = state is None or state.is_main_process
    if is_main:
        writer.check_folder(run, resume=resume, overwrite=overwrite, shard=shard)
        writer.start(run)
    if state is not None:
        state.wait_for_everyone()
        if not is_main:
            writer.check_folder(run, resume=resume, overwrite=False, shard=shard)
    writer.repair_part(shard)

    mine = list(range(shard[0], len(source), shard[1]))
    done = writer.finished()
    todo = [i for i in mine if not (names[i] in done and writer.is_written(source.samples[i]))]
    skipped = len(mine) - len(todo)
    info = {"seed": int(seed), "params": method.params(), "reference_choice": reference_choice}
    bs = max(1, int(getattr(method, "batch_size", 1) or 1))
    batches = [[(i, assignment[i]) for i in todo[k : k + bs]] for k in range(0, len(todo), bs)]

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
    """Run ``batches`` on ``workers`` spawned processes, recording results as they come."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no fork: safe with threads (OpenCV, torch) in the parent
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(batches)),
        mp_context=ctx,
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
        pool.shutdown(wait=False, cancel_futures=True)
        # a worker died while preparing or translating: reproduce the preparation here so
        # the user sees the real error, not "a process terminated abruptly"
        method.prepare(references)
        raise
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
