"""Fixtures of the diffusion tests: tiny random models built in code, never downloaded."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models gain nothing from threads, and on a loaded machine two threads
    # spin-wait for each other: one thread is ~20x faster there
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny():
    """Tiny float32 :class:`DiffusionModels` on the CPU (random prompt embeddings)."""
    from tests.diffusion.tiny import tiny_models

    return tiny_models(seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random model saved with ``save_pretrained`` in diffusers layout."""
    from tests.diffusion.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")
