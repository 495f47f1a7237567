"""Where the official reference code is: ``$S2R_REFERENCE`` or ``shared/reference`` beside
the checkout (``../shared/reference`` from a worktree or from the main checkout).

The reference code is never copied into the project: tests import it from there and skip,
saying where they looked, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
#: environment variable naming the folder that holds ``CACTIF/`` and ``StyleID/``
ENV = "S2R_REFERENCE"
CACTIF = "CACTIF"
STYLEID = "StyleID/diffusers_implementation"
#: a file each copy must have (a folder that lacks it is not the reference)
_MARKERS = {CACTIF: "cactif_model.py", STYLEID: "run_styleid_diffusers.py"}


def reference_root() -> Path:
    """``$S2R_REFERENCE`` when set, else the first ``shared/reference`` above the repository
    (``../shared/reference`` from ``/work/wt/NAME`` and from ``/work/main``), else the place
    it would be (``<repo>/../shared/reference``, which may not exist)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    for up in REPO.parents:
        cand = up / "shared" / "reference"
        if (cand / CACTIF / _MARKERS[CACTIF]).is_file():
            return cand
    return REPO.parent / "shared" / "reference"


def reference_folder(which: str) -> Path | None:
    """The folder of ``which`` (:data:`CACTIF` or :data:`STYLEID`), or None when absent."""
    folder = reference_root() / which
    return folder if (folder / _MARKERS[which]).is_file() else None


def missing_reason(which: str) -> str:
    """Why a parity test against ``which`` cannot run (for ``pytest.skip``)."""
    return (
        f"reference code {which!r} not found under {reference_root()} (set {ENV} to the folder "
        "that holds CACTIF/ and StyleID/, or put it at ../shared/reference beside the checkout); "
        "parity tests against the official code need it"
    )


def require(which: str) -> Path:
    """The folder of ``which``; skips the calling test with a clear reason when absent."""
    folder = reference_folder(which)
    if folder is None:
        import pytest

        pytest.skip(missing_reason(which))
    return folder
