"""One translation run: :func:`translate_dataset` checks its arguments, chooses every
image's reference, takes the output folder's lock, and under it starts or resumes the
run's folder (:class:`~synth2real.data.writer.DatasetWriter`), has the unfinished
images translated (:mod:`.batches`) and merges the manifest; under ``accelerate launch``
the processes share the work by shards and wait for each other here."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synth2real import __version__
from synth2real.data.dataset import Dataset
from synth2real.data.writer import DatasetWriter
from synth2real.errors import ConfigError, DataError
from synth2real.guard import OutputLock, output_lock
from synth2real.guard import check_output as check_output_folder
from synth2real.methods.base import Method, References
from synth2real.progress import progress_bar
from synth2real.references import (
    REFERENCE_CHOICES,
    check_classwise,
    choose_references,
    class_shares,
    describe_references,
)
from synth2real.translate.batches import plan_batches, prepare_worker, run_batches

log = logging.getLogger("synth2real.translate")


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
        raise ConfigError(f"--workers must be >= 1, got {workers}")
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
        prepare_worker(method, references, source, writer, info, None)
    if is_main:  # another shard's temporary files are its images in flight: left alone
        # with other shards, one starting after the check keeps its newer files (file
        # times come from the kernel's coarse clock and may lag time.time(): 2 s of
        # margin); a lone run (the lock refuses any other) removes every temp file
        started = time.time() - 2.0 if shard[1] > 1 else None
        writer.start(run, remove_temp=lock.alone(), temp_before=started)
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

        run_batches(
            batches, workers, method, references, source, writer, info, record,
            prepared=prepared,
        )  # fmt: skip
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
