"""The pilot's data: the three datasets, the source at the training size, translations.

:func:`open_inputs` opens and checks the source, the references and the test images
(before anything is written); :func:`source_at_size` shrinks the source once to the
training resolution; :func:`translate_method` translates it with one method, resumably,
into a folder that may be shared by several pilots (a cache).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rich.markup import escape

from synth2real.data.dataset import CachedDataset, Dataset
from synth2real.data.io import atomic_write_text
from synth2real.data.select import random_subset
from synth2real.errors import ConfigError, OutputExistsError
from synth2real.pilot.config import PilotConfig
from synth2real.pilot.console import say


def open_inputs(cfg: PilotConfig) -> dict[str, Any]:
    """``{"source", "references", "test", "unlabeled", "translated": {}}``: the pilot's
    datasets (``unlabeled`` is ``None`` without ``cfg.unlabeled``).

    The source is cut to ``cfg.source_limit`` images (a fixed subset, seed 0); the test
    set is a :class:`~synth2real.data.dataset.CachedDataset` (decoded once, scored by
    every run).

    Raises:
        ConfigError: names not found, an empty selection, classes that differ between
            the folders, images that are both references and test images, unlabelled
            images that are test images (:func:`check_unlabeled`).
        DataError: unreadable folders or files (every unlabelled image is decoded).
    """
    source = _open(cfg.source, cfg, cfg.source_names, "source")
    source = random_subset(source, cfg.source_limit)
    refs = _open(cfg.references, cfg, cfg.reference_names, "references")
    test = CachedDataset(_open(cfg.test, cfg, cfg.test_names, "test"))
    check_classes(source, refs, "references")
    check_classes(source, test, "test")
    overlap = {s.image_path.resolve() for s in refs} & {s.image_path.resolve() for s in test}
    if overlap:
        raise ConfigError(
            f"{len(overlap)} image(s) are both references and test images (e.g. {sorted(overlap)[0]}); "
            "give disjoint --reference-names and --test-names"
        )
    unlabeled = None
    if cfg.unlabeled is not None:
        from synth2real.data.unlabeled import open_unlabeled

        # its format is detected: --format describes the labelled folders, and an
        # image folder is a common choice here whatever they are
        unlabeled = open_unlabeled(cfg.unlabeled, cfg.unlabeled_names)
        check_unlabeled(unlabeled, test)
    return {
        "source": source,
        "references": refs,
        "test": test,
        "unlabeled": unlabeled,
        "translated": {},
    }


def file_sha1(path: Path) -> str:
    """SHA-1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_unlabeled(unlabeled: Dataset, test: Dataset) -> None:
    """Every unlabelled image decodes, and none is a test image: the same file content
    (SHA-1 of the bytes, whatever its name or folder) would let self-training see the
    test images.

    Raises:
        DataError: naming an unreadable or truncated image.
        ConfigError: naming the unlabelled files that are test images, and which.
    """
    from synth2real.data.io import verify_image
    from synth2real.data.readers import parallel_map

    paths = [s.image_path for s in unlabeled.samples]
    parallel_map(verify_image, paths)  # a DataError names the file
    test_paths = [s.image_path for s in test.samples]
    test_hash = dict(zip(parallel_map(file_sha1, test_paths), test_paths, strict=True))
    clash = [
        (p, test_hash[h])
        for p, h in zip(paths, parallel_map(file_sha1, paths), strict=True)
        if h in test_hash
    ]
    if clash:
        shown = ", ".join(f"{a} = {b}" for a, b in clash[:3]) + (" ..." if len(clash) > 3 else "")
        raise ConfigError(
            f"--unlabeled: {len(clash)} unlabelled image(s) are test images (same file "
            f"content): {shown}; the test images must stay unseen: remove them from the "
            "unlabelled folder or pick others with --unlabeled-names"
        )


def _open(path: Path, cfg: PilotConfig, names: list[str] | None, what: str) -> Dataset:
    from synth2real.data.readers import open_dataset

    ds = open_dataset(
        path, format=cfg.format, classes=cfg.classes, class_map=cfg.class_map, require_labels=True
    )
    if names is not None:
        try:
            ds = ds.select(names)
        except KeyError as e:
            raise ConfigError(f"{what} names: {e.args[0]}") from None
    if len(ds) == 0:
        raise ConfigError(f"{what}: no images in {path}")
    return ds


def check_classes(a: Dataset, b: Dataset, what: str) -> None:
    """``b`` (named ``what``) has the source ``a``'s classes."""
    if tuple(a.classes.names) != tuple(b.classes.names):
        raise ConfigError(
            f"{what} has classes {list(b.classes.names)} but the source has {list(a.classes.names)}; "
            "give the same --classes / --class-map for all folders"
        )


def source_at_size(
    source: Dataset, max_size: int | None, out: Path, progress: bool = True
) -> Dataset:
    """``source`` with every image shrunk so its shorter side is at most ``max_size``.

    Shrinks exactly as training does at decode time (``segment.sampling.downscale``: area
    filter for images, nearest neighbour for labels), once, into ``out/source_max<N>``
    through the dataset writer (generic layout: PNG images, index PNG labels,
    ``classes.yaml``, and ``run.json`` naming the source, so a folder shrunk from another
    source is refused rather than mixed in). Images already there are kept (resume).
    Returns ``source`` itself when no image is larger.
    """
    from synth2real.data.io import image_size
    from synth2real.data.readers import open_dataset
    from synth2real.data.writer import RUN_FILE, DatasetWriter
    from synth2real.progress import progress_bar

    if not max_size:
        return source
    if all(min(image_size(s.image_path)) <= max_size for s in source.samples):
        return source
    from synth2real.segment.sampling import downscale

    root = out / f"source_max{max_size}"
    writer = DatasetWriter(root, source, layout="generic", copy_labels=False)
    run = {
        "method": "downscale",
        "params": {"max_size": int(max_size)},
        "source": {
            "root": str(Path(source.root).resolve()),
            "format": source.format,
            "classes": source.classes.to_dict(),
        },
        "layout": writer.plan.layout,
    }
    legacy = (root / "images").is_dir() and not (root / RUN_FILE).is_file()
    if not legacy:  # (an earlier version wrote no run.json: its images are kept)
        writer.check_folder(run, resume=True, overwrite=False, shard=(0, 1))
    writer.start(run)
    todo = [s for s in source.samples if not writer.is_written(s)]
    if todo:
        say(
            f"shrinking {len(todo)} synthetic images to {max_size} px (shorter side) once", progress
        )
    with progress_bar(len(todo), f"source at {max_size} px", enabled=progress) as advance:
        for s in todo:
            writer.write(s, *downscale(source.image(s), source.label(s), max_size))
            advance()
    small = open_dataset(root, format="generic", require_labels=True)
    return small.select([s.name for s in source.samples])


def translate_all(cfg: PilotConfig, data: dict[str, Any], tbase: Path, progress: bool) -> dict:
    """Translate ``data["source"]`` once with every method into ``tbase/<method>``.

    Adds each translated dataset to ``data["translated"]``; returns ``{method: timing
    info}`` (see :func:`translate_method`).
    """
    from synth2real.data.readers import open_dataset
    from synth2real.translate import load_references

    methods = cfg.translation_methods
    if not methods:
        return {}
    source = data["source"]
    refs = load_references(data["references"])
    translations: dict[str, dict] = {}
    for i, m in enumerate(methods, 1):
        say(f"[bold cyan]translate {i}/{len(methods)}[/]: {escape(m)}", progress)
        translations[m] = translate_method(cfg, m, source, refs, tbase / m, progress)
        tds = open_dataset(tbase / m, require_labels=True)
        check_classes(source, tds, f"translation {m}")
        if len(tds) != len(source):
            raise RuntimeError(
                f"translation {m}: {len(tds)} images written for {len(source)} synthetic ones"
            )
        data["translated"][m] = tds
    return translations


def translate_method(
    cfg: PilotConfig, method_name: str, source: Dataset, refs, tdir: Path, progress: bool
) -> dict:
    """Translate ``source`` with one method into ``tdir`` (resumable); its timing info.

    ``tdir.with_suffix(".json")`` records the method's parameters, the inputs and the
    time per image; a translation made from other inputs or parameters is refused rather
    than silently reused.
    """
    from synth2real.methods import create_method
    from synth2real.translate import translate_dataset

    info_path = tdir.parent / f"{tdir.name}.json"
    method = create_method(method_name, **cfg.params_for(method_name))
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
        was = {**(old.get("params") or {}), **(old.get("inputs") or {})}
        now = {**params, **inputs}
        diff = "; ".join(
            f"{k}: {was.get(k)!r} now {now.get(k)!r}"
            for k in sorted(set(was) | set(now))
            if was.get(k) != now.get(k)
        )
        raise OutputExistsError(
            f"{tdir} holds a translation made with other parameters or inputs ({diff}); "
            "delete it or use another cache/output folder"
        )
    n_total = len(source)
    if old is not None and old.get("complete"):
        return old
    devices = translation_devices(cfg, method)
    if devices:
        summary = _translate_sharded(cfg, method_name, devices, source, refs, tdir, progress)
    else:
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


# -- one diffusion translation over several GPUs --------------------------------------------
def translation_devices(cfg: PilotConfig, method) -> list[str] | None:
    """The GPUs one translation is sharded over: a method that needs a GPU, ``--device``
    ``auto``/``cuda`` with several visible GPUs, and no device set for the method by
    ``--param``; else ``None`` (one process, as ``translate`` does)."""
    from synth2real.pilot.devices import job_devices, visible_devices

    if not getattr(method, "needs_gpu", False):
        return None
    if "device" in cfg.method_params.get(method.name, {}):
        return None
    gpus = visible_devices() if cfg.device.strip().lower() in ("auto", "cuda") else []
    return job_devices(cfg.device, len(gpus)) if len(gpus) > 1 else None


def _translate_shard(i: int, n: int, name: str, params: dict, source, refs, tdir, seed: int):
    from synth2real.methods import create_method
    from synth2real.translate import translate_dataset

    method = create_method(name, **params)
    return translate_dataset(
        source, refs, method, tdir, seed=seed, resume=True, progress=False, shard=(i, n)
    )


def _translate_sharded(
    cfg: PilotConfig, name: str, devices: list[str], source, refs, tdir, progress: bool
):
    """``translate --shard i/N`` in one process per device, at once; the last shard to
    finish merges the manifest (translate.py). The summary of all shards together."""
    import dataclasses

    from synth2real.workers import process_pool, stop

    say(f"{escape(name)}: {len(devices)} shards, one per GPU ({', '.join(devices)})", progress)
    from synth2real.translate import method_overrides

    n = len(devices)
    own = cfg.method_params.get(name, {})
    with process_pool(n) as pool:
        futures = [
            pool.submit(
                _translate_shard,
                i,
                n,
                name,
                method_overrides(name, own, model=cfg.diffusion_model, device=d, strict=False),
                source,
                refs,
                tdir,
                cfg.translate_seed,
            )
            for i, d in enumerate(devices)
        ]
        try:
            parts = [f.result() for f in futures]
        except BaseException:
            stop(pool, futures)
            raise
    written = sum(int(p.written) for p in parts)
    spi = sum(float(p.seconds_per_image or 0) * int(p.written) for p in parts)
    return dataclasses.replace(
        parts[-1],
        written=written,
        skipped=sum(int(p.skipped) for p in parts),
        seconds_per_image=spi / written if written else 0.0,  # per image on one GPU
        manifest=next((p.manifest for p in parts if p.manifest is not None), None),
    )
