"""Datasets: readers, writers, class specs and checks."""

from synth2real.data.classes import ClassSpec
from synth2real.data.dataset import Dataset, Sample

__all__ = ["ClassSpec", "Dataset", "Sample"]
