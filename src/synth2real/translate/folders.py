"""From the commands' options to a run: the method's parameters with the commands'
weights and device (:func:`method_overrides`, for ``translate`` and ``pilot``), a GPU
method's weights and device checked before any work (:func:`check_method_ready`), and
:func:`translate_folder`: folders in, a translated dataset out (``synth2real
translate``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synth2real.errors import ConfigError
from synth2real.guard import check_output as check_output_folder
from synth2real.guard import names_file
from synth2real.methods.base import Method
from synth2real.references import load_references, reference_predictor
from synth2real.translate.runner import TranslateSummary, translate_dataset

log = logging.getLogger("synth2real.translate")


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
    source_names: Sequence[str] | str | None = None,
    source_limit: int | None = None,
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

    ``format`` / ``classes`` / ``class_map`` open the source, ``source_names`` and
    ``source_limit`` cut it (:func:`select_names`, then :func:`random_subset`, seed 0: try a
    method on a few images first); ``reference_names`` and the
    ``reference_*`` options the references (:func:`load_references`). ``params`` are the
    method's (typed, as ``parse_method_params`` gives them); ``model`` (diffusion weights)
    and ``device`` fill the parameters of those names where ``params`` does not
    (:func:`method_overrides`; ``device`` also runs ``reference_labels_from``, a
    checkpoint that predicts the label maps of unlabelled references); ``run`` holds
    :func:`translate_dataset`'s keywords (``seed``, ``workers``, ``resume``, ``shard`` ...).
    """
    from synth2real.data.readers import open_dataset
    from synth2real.data.select import random_subset, select_names
    from synth2real.methods import create_method
    from synth2real.segment.checkpoint import resolve_checkpoint

    check_output_folder(
        out,
        {
            "--source": source,
            "--references": references,
            # the file, not train's folder: an --out beside it is fine
            "--reference-labels-from": resolve_checkpoint(reference_labels_from)
            if reference_labels_from is not None
            else None,
            "--classes": classes,
            "--class-map": class_map,
            "--reference-classes": reference_classes,
            "--reference-class-map": reference_class_map,
            "--reference-names": names_file(reference_names),
            "--source-names": names_file(source_names),
            # a local weights folder is an input too (a hub id is not a path)
            "--diffusion-model": model if model and Path(model).is_dir() else None,
        },
    )
    overrides = method_overrides(method, params, model=model, device=device)
    m = create_method(method, **overrides)
    check_method_ready(m, model_given="model" in overrides)
    ds = open_dataset(source, format=format, classes=classes, class_map=class_map)
    ds = random_subset(select_names(ds, source_names, "source", source), source_limit)
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
