"""Fixtures for the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.data.helpers import tree_digest


@pytest.fixture
def unchanged() -> Callable[[Path], Callable[[], None]]:
    """``check = unchanged(folder)`` ... ``check()`` asserts the folder is byte-identical."""

    def snap(root: Path):
        before = tree_digest(root)

        def check() -> None:
            assert tree_digest(root) == before, f"input folder {root} was modified"

        return check

    return snap
