"""The references a translation adapts towards: loading them and choosing one per image.

:func:`load_references` reads reference photos (labelled or not, any format; label maps
of unlabelled ones may be predicted by a model, :func:`reference_predictor`);
:func:`choose_references` decides up front which reference each content image gets;
:func:`describe_references` is what a translation records about them (``run.json``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.data.dataset import Dataset
from synth2real.errors import ConfigError, DataError
from synth2real.methods.base import Method, References, image_seed

REFERENCE_CHOICES = ("round-robin", "random", "matched")

Predictor = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


def load_references(
    path: str | Path | Dataset,
    names: Sequence[str] | str | None = None,
    classes: ClassSpec | str | Path | None = None,
    format: str | None = None,
    class_map: Any = None,
    predictor: Predictor | None = None,
) -> References:
    """Read reference images (and their label maps where they have them).

    Args:
        path: a dataset folder in any format :func:`~synth2real.data.readers.open_dataset`
            reads, labelled or not (a plain folder of photos works), or a dataset already
            open (then ``classes``, ``format`` and ``class_map`` must be ``None``: the
            dataset's own are used).
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
    from synth2real.data.select import select_names

    if isinstance(path, Dataset):
        if classes is not None or format is not None or class_map is not None:
            raise ConfigError("load_references: an open dataset is read with its own classes")
        ds, path = path, path.root
    else:
        ds = open_dataset(path, format=format, classes=classes, class_map=class_map)
    ds = select_names(ds, names, "references", path)
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


def class_shares(label: np.ndarray | None, k: int) -> np.ndarray:
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


def reference_predictor(checkpoint: str | Path, classes: ClassSpec, device: str = "auto"):
    """``images -> label maps`` predicted by a trained checkpoint (``synth2real train``),
    for :func:`load_references`' ``predictor``.

    Raises:
        ConfigError: the checkpoint predicts other classes than ``classes``.
        DataError / ModelNotFoundError: an unreadable checkpoint (checked here, at once).
    """
    from synth2real.segment.checkpoint import checkpoint_classes, load_checkpoint
    from synth2real.segment.predict import predict_labels

    _, meta = load_checkpoint(checkpoint, "cpu")  # fails early with a clear message
    names = checkpoint_classes(meta).names
    if list(names) != list(classes.names):
        raise ConfigError(
            f"{checkpoint}: the model predicts classes {list(names)}, the source has "
            f"{list(classes.names)}; train it on data with the source's classes"
        )

    def predictor(images):
        return predict_labels(checkpoint, images, device=device, progress=True)

    return predictor


def describe_references(references: References) -> dict:
    """What identifies ``references`` in a translation's ``run.json``: folder, names,
    which label maps were predicted, and hashes of the pixels and label maps."""
    return {
        "root": references.root,
        "names": list(references.names),
        "predicted": list(references.predicted),
        "images_sha256": _fingerprint_arrays(references.images),
        "labels_sha256": _fingerprint_arrays(references.labels),
    }


def _fingerprint_arrays(arrays: Sequence[np.ndarray | None]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
        else:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def check_classwise(method: Method, references: References, source: Dataset) -> None:
    """A class-wise method needs labelled references in the source's classes and a
    labelled source (a no-op for other methods).

    Raises:
        ConfigError: unlabelled references (the method's own message) or other classes.
        DataError: source images without label maps (naming the source folder).
    """
    if not method.needs_reference_labels:
        return
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
