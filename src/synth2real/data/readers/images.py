"""Plain image folders without labels: unlabelled real references."""

from __future__ import annotations

from pathlib import Path

from synth2real.data.classes import ClassSpec, load_class_spec
from synth2real.data.classmap import ClassMap
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import IMAGE_EXTENSIONS
from synth2real.data.readers.base import (
    UNKNOWN_CLASSES,
    Reader,
    find_spec_file,
    index_files,
    no_images_error,
    walk_files,
)


class ImageFolderDataset(Reader):
    """Any folder of images (nested folders fine), without labels: unlabelled references.

    When the folder holds ``images/``, only that subfolder is read. Classes are those
    given, or ``classes.yaml`` of the folder, or a one-class stand-in (``unknown``).
    """

    format = "images"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in walk_files(path))

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        base = path / "images" if (path / "images").is_dir() else path
        problems: list[Problem] = []
        images = index_files(base, IMAGE_EXTENSIONS, "image", problems=problems)
        if not images:
            raise no_images_error(path, base)
        if class_map is not None:
            spec = class_map.classes
        else:
            spec_file = None if classes is not None else find_spec_file(path)
            spec = classes or (load_class_spec(spec_file) if spec_file else UNKNOWN_CLASSES)
        return cls(path, [Sample(n, p, None) for n, p in sorted(images.items())], spec, problems)
