"""Translate a whole dataset: references in, a translated dataset (+ manifest) out.

::

    refs = load_references("real/", names=["a", "b"])
    method = create_method("reinhard-cw")
    summary = translate_dataset(open_dataset("synthetic/"), refs, method, "out/")
    # or, from folders (what ``synth2real translate`` calls):
    summary = translate_folder("synthetic/", "real/", "reinhard-cw", "out/")

References are loaded and chosen in :mod:`synth2real.references` (``load_references``,
``choose_references``; importable from here too). The package's modules:

- :mod:`.runner`: :func:`translate_dataset`, one run (arguments, references chosen,
  the output lock, start or resume, shards, the merged manifest);
- :mod:`.batches`: batches of images, what a worker does with one, the worker pool;
- :mod:`.folders`: :func:`translate_folder` (folders and options in), the method's
  weights and device from the commands (:func:`method_overrides`) and checked before
  any work (:func:`check_method_ready`).

What this package guarantees, whatever the method:

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

from synth2real.references import choose_references, load_references
from synth2real.translate.batches import plan_batches
from synth2real.translate.folders import check_method_ready, method_overrides, translate_folder
from synth2real.translate.runner import TranslateSummary, translate_dataset

__all__ = [
    "TranslateSummary",
    "check_method_ready",
    "choose_references",
    "load_references",
    "method_overrides",
    "plan_batches",
    "translate_dataset",
    "translate_folder",
]
