"""Shared test fixtures. Tests never touch the network: the hub is forced offline here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# idle OpenMP threads must sleep, not spin: spinning made training 10-50x slower on busy cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]


def _find_cracks() -> Path:
    """S2R_CRACKS, else ../shared/datasets/cracks beside the checkout, else /work/shared."""
    if os.environ.get("S2R_CRACKS"):
        return Path(os.environ["S2R_CRACKS"])
    for base in (REPO.parent, Path("/work")):
        cand = base / "shared" / "datasets" / "cracks"
        if (cand / "meta.json").is_file():
            return cand
    return REPO.parent / "shared" / "datasets" / "cracks"


CRACKS = _find_cracks()


@pytest.fixture(scope="session")
def cracks_root() -> Path:
    """../shared/datasets/cracks; tests using it are skipped where it is absent."""
    if not (CRACKS / "meta.json").is_file():
        pytest.skip(f"cracks dataset not found at {CRACKS}")
    return CRACKS
