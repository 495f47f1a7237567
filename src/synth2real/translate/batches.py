"""The work of a translation run: batches of images (:func:`plan_batches`), what a worker
does with one (:func:`translate_batch`: read, translate, check, write, describe), and who
runs them (:func:`run_batches`: this process, or a pool of worker processes).

Each worker prepares the method once (:func:`prepare_worker`) and keeps it, the
references, the source and the writer in this module's state for its batches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from synth2real.data.dataset import Dataset
from synth2real.data.writer import DatasetWriter
from synth2real.errors import DataError
from synth2real.methods.base import Method, References, check_output, image_seed

#: test hook: seconds to sleep after each written image (lets tests kill a run mid-way)
_SLEEP_ENV = "S2R_DEBUG_SLEEP_PER_IMAGE"

#: what :func:`prepare_worker` keeps for :func:`translate_batch`, in each process
_STATE: dict[str, Any] = {}

#: a batch: ``(sample index, reference index)`` pairs
Batch = list[tuple[int, int]]


def plan_batches(todo: Sequence[int], assignment: Sequence[int], batch_size: int) -> list[Batch]:
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


def prepare_worker(
    method: Method,
    references: References,
    source: Dataset,
    writer: DatasetWriter,
    info: dict,
    threads: int | None,
) -> None:
    """Prepare ``method`` in this process (a pool worker, or the runner itself) and keep
    what :func:`translate_batch` needs; ``threads`` caps OpenCV's threads."""
    if threads is not None:
        import cv2

        cv2.setNumThreads(threads)
    method.prepare(references)
    _STATE.update(method=method, references=references, source=source, writer=writer, info=info)


def translate_batch(batch: Batch) -> list[dict]:
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


def run_batches(
    batches: Sequence[Batch],
    workers: int,
    method: Method,
    references: References,
    source: Dataset,
    writer: DatasetWriter,
    info: dict,
    record: Callable[[list[dict]], None],
    *,
    prepared: bool = False,
) -> None:
    """Translate ``batches``, handing each batch's manifest entries to ``record`` as they
    come: in this process when ``workers == 1`` or there is one batch (the method is
    prepared here unless ``prepared`` says :func:`prepare_worker` already ran), else on
    ``workers`` worker processes."""
    if not batches:
        return
    if workers > 1 and len(batches) > 1:
        _run_pool(batches, workers, method, references, source, writer, info, record)
        return
    if not prepared:
        prepare_worker(method, references, source, writer, info, None)
    try:
        for b in batches:
            record(translate_batch(b))
    finally:
        _STATE.clear()


def _run_pool(batches, workers, method, references, source, writer, info, record) -> None:
    """Run ``batches`` on ``workers`` spawned processes, recording results as they come.

    The workers ignore Ctrl-C and exit when this process dies (:mod:`synth2real.workers`):
    an interrupt is this process's to handle, and a killed run leaves no orphans.
    """
    from synth2real.workers import process_pool, stop

    pool = process_pool(
        min(workers, len(batches)),
        initializer=prepare_worker,
        initargs=(method, references, source, writer, info, 1),
    )
    try:
        pending = set()
        it = iter(batches)
        # keep a bounded number of batches in flight so an interruption loses little
        for b in it:
            pending.add(pool.submit(translate_batch, b))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                record(f.result())
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(translate_batch, nxt))
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
