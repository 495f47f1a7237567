"""CamVid: ``<split>/`` + ``<split>_labels/`` or ``<split>annot/`` (or ``images/`` +
``labels/``); the 11 SegNet classes, or the classes of ``class_dict.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synth2real.data.classes import CAMVID, ClassSpec
from synth2real.data.classmap import MAX_RAW_ID, ClassMap, LabelDecoder, Vocabulary, spec_decoder
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import IMAGE_EXTENSIONS
from synth2real.data.readers.base import (
    LABEL_EXTENSIONS,
    Reader,
    index_files,
    map_decoder,
    no_images_error,
    pair_samples,
)
from synth2real.errors import DataError

_CAMVID_LABEL_SUFFIXES = ("_labels", "annot")


class CamVidDataset(Reader):
    """CamVid-style split folders: ``<split>/`` images with ``<split>_labels/`` or
    ``<split>annot/`` labels (split = train, val, test, ...), or ``images/`` + ``labels/``.

    Labels are index PNGs of the 11 SegNet CamVid classes (id 11 = void -> ignored), or,
    when ``class_dict.csv`` (``name,r,g,b``) sits in the root, colour PNGs of its classes
    (a class named ``void`` is ignored). Label files may carry an ``_L`` suffix
    (``0001TP_006690_L.png``). Open the root (names ``<split>/<name>`` when there are
    several splits) or one split folder.
    """

    format = "camvid"

    @staticmethod
    def _split_pairs(path: Path) -> list[tuple[Path, Path]]:
        pairs = []
        for suffix in _CAMVID_LABEL_SUFFIXES:
            if path.name.endswith(suffix):
                continue
            cand = path.parent / (path.name + suffix)
            if cand.is_dir():
                return [(path, cand)]
        for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for suffix in _CAMVID_LABEL_SUFFIXES:
                if (path / (d.name + suffix)).is_dir() and not d.name.endswith(suffix):
                    pairs.append((d, path / (d.name + suffix)))
                    break
        if not pairs and (path / "images").is_dir():
            pairs = [(path / "images", path / "labels")]
        return pairs

    @classmethod
    def detect(cls, path: Path) -> bool:
        if (path / "images").is_dir():
            return (path / "class_dict.csv").is_file()
        return bool(cls._split_pairs(path))

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        pairs = cls._split_pairs(path)
        if not pairs:
            raise DataError(path, "not a CamVid folder: no <split>/ + <split>_labels/ folders")
        problems: list[Problem] = []
        samples: list[Sample] = []
        multi = len(pairs) > 1
        for img_dir, lab_dir in pairs:
            images = index_files(img_dir, IMAGE_EXTENSIONS, "image", problems=problems)
            labels = (
                index_files(lab_dir, LABEL_EXTENSIONS, "label", strip="_L", problems=problems,
                             lossy_labels=True)
                if lab_dir.is_dir() else {}
            )  # fmt: skip
            prefix = img_dir.name + "/" if multi else ""
            for s in pair_samples(images, labels, problems, lab_dir):
                samples.append(Sample(prefix + s.name, s.image_path, s.label_path))
        if not samples:
            raise no_images_error(path, pairs[0][0])
        root = pairs[0][0].parent
        class_dict = next(
            (f for f in (path / "class_dict.csv", root / "class_dict.csv") if f.is_file()), None
        )
        if classes is not None:
            spec, vocab_spec = classes, classes
            decoder = spec_decoder(classes)
        elif class_dict is not None:
            spec, decoder = cls._class_dict(class_dict)
            vocab_spec = spec
        else:
            spec, vocab_spec = CAMVID, CAMVID
            lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
            lut[:11] = np.arange(11)
            lut[11] = lut[255] = 255
            decoder = LabelDecoder(lut, describe="the 11 CamVid classes (0..10, 11 = void)")
        vocab = Vocabulary.from_spec(vocab_spec)
        if class_dict is not None and classes is None:
            vocab = cls._class_dict_vocab(class_dict)
        if class_map is not None:
            spec, decoder, notes = map_decoder(class_map, vocab)
            problems += notes
        ds = cls(path, samples, spec, problems)
        ds.decoder = decoder
        return ds

    @staticmethod
    def _class_dict_rows(f: Path) -> list[tuple[str, tuple[int, int, int]]]:
        import csv

        rows = []
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                for i, row in enumerate(csv.reader(fh)):
                    if not row or (i == 0 and not row[1].strip().isdigit()):
                        continue
                    name, r, g, b = row[0].strip(), *(int(v) for v in row[1:4])
                    rows.append((name, (r, g, b)))
        except (ValueError, IndexError, OSError) as e:
            raise DataError(
                f, f"cannot read class_dict.csv (expected name,r,g,b rows: {e})"
            ) from None
        if not rows:
            raise DataError(f, "class_dict.csv lists no classes")
        return rows

    @classmethod
    def _class_dict(cls, f: Path) -> tuple[ClassSpec, LabelDecoder]:
        rows = cls._class_dict_rows(f)
        keep = [(n, c) for n, c in rows if n.lower() not in ("void", "unlabelled", "unlabeled")]
        spec = ClassSpec(names=tuple(n for n, _ in keep), colors=tuple(c for _, c in keep))
        colors = {c: i for i, (_, c) in enumerate(keep)}
        for n, c in rows:
            if n.lower() in ("void", "unlabelled", "unlabeled"):
                colors[c] = spec.ignore_index
        return spec, LabelDecoder(None, colors, describe=f"the classes of {f.name}")

    @classmethod
    def _class_dict_vocab(cls, f: Path) -> Vocabulary:
        rows = cls._class_dict_rows(f)
        return Vocabulary(
            names={i: n for i, (n, _) in enumerate(rows)},
            colors={c: i for i, (_, c) in enumerate(rows)},
        )
