"""Cityscapes: ``leftImg8bit/`` + ``gtFine/`` (label ids or train ids); 19 train classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synth2real.data.classes import CITYSCAPES, CITYSCAPES_LABELS, ClassSpec
from synth2real.data.classmap import MAX_RAW_ID, ClassMap, LabelDecoder, Vocabulary
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import IMAGE_EXTENSIONS
from synth2real.data.readers.base import (
    Reader,
    check_fixed_classes,
    index_files,
    map_decoder,
    no_images_error,
    pair_samples,
)
from synth2real.errors import DataError


def cityscapes_decoder(
    kind: str, class_map: ClassMap | None
) -> tuple[ClassSpec, LabelDecoder, list[Problem]]:
    """Decoder for Cityscapes ``labelIds`` (-> train ids) or ``labelTrainIds`` files."""
    if kind == "labelIds":
        vocab = Vocabulary(names={lid: n for lid, n, _, _ in CITYSCAPES_LABELS})
        lut = np.full(MAX_RAW_ID + 1, 255, np.int16)  # everything else: ignore
        for lid, _, tid, _ in CITYSCAPES_LABELS:
            lut[lid] = tid
        default = LabelDecoder(lut, describe="Cityscapes label ids")
    else:
        vocab = Vocabulary.from_spec(CITYSCAPES)
        vocab = Vocabulary(names=vocab.names)
        lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
        lut[:19] = np.arange(19)
        lut[255] = 255
        default = LabelDecoder(lut, describe="Cityscapes train ids (0..18, 255)")
    if class_map is None:
        return CITYSCAPES, default, []
    return map_decoder(class_map, vocab)


class CityscapesDataset(Reader):
    """Cityscapes: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/<id>_gtFine_labelIds.png`` (preferred, mapped to train ids) or
    ``<id>_gtFine_labelTrainIds.png`` (used as they are).

    Open the root (every split; names ``<split>/<city>/<id>``) or one split,
    ``ROOT/leftImg8bit/<split>`` (names ``<city>/<id>``).
    """

    format = "cityscapes"
    decoders: dict[str, LabelDecoder]

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path / "leftImg8bit").is_dir() or (
            path.parent.name == "leftImg8bit" and path.is_dir()
        )

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        check_fixed_classes("cityscapes", classes, CITYSCAPES)
        if (path / "leftImg8bit").is_dir():
            root, image_dir, gt_dir = path, path / "leftImg8bit", path / "gtFine"
        elif path.parent.name == "leftImg8bit":
            root, image_dir = path.parent.parent, path
            gt_dir = root / "gtFine" / path.name
        else:
            raise DataError(path, "not a Cityscapes folder: no leftImg8bit/")
        problems: list[Problem] = []
        images = index_files(
            image_dir, IMAGE_EXTENSIONS, "image", strip="_leftImg8bit", problems=problems
        )
        if not images:
            raise no_images_error(path, image_dir)
        labels: dict[str, Path] = {}
        if gt_dir.is_dir():
            ids = index_files(gt_dir, (".png",), "label", strip="_gtFine_labelIds")
            ids = {n: p for n, p in ids.items() if p.name.endswith("_gtFine_labelIds.png")}
            train = index_files(gt_dir, (".png",), "label", strip="_gtFine_labelTrainIds")
            train = {n: p for n, p in train.items() if p.name.endswith("_gtFine_labelTrainIds.png")}
            labels = {**train, **ids}  # labelIds win where both exist
        else:
            problems.append(
                Problem("no-labels", root, "no gtFine/ folder: every image is unlabelled")
            )
        samples = pair_samples(images, labels, problems, gt_dir)
        ds = cls(path, samples, CITYSCAPES, problems)
        ds.decoders = {}
        for kind in ("labelIds", "labelTrainIds"):
            ds.classes, ds.decoders[kind], notes = cityscapes_decoder(kind, class_map)
        ds.problems += notes
        return ds

    def decoder_for(self, sample: Sample) -> LabelDecoder:
        assert sample.label_path is not None
        kind = "labelIds" if sample.label_path.name.endswith("_labelIds.png") else "labelTrainIds"
        return self.decoders[kind]
