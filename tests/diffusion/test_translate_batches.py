"""The translate runner groups work by reference for batched (diffusion) methods."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from synth2real.data.readers import open_dataset
from synth2real.methods import create_method
from synth2real.translate import batches as translate_batches
from synth2real.translate import load_references, plan_batches, translate_dataset
from synth2real.translate import runner as translate_runner
from tests.gen_data import write_generic

FAST = dict(working_size=64, num_inference_steps=5, skip=2, classwise_steps=(1, 3), batch_size=2)


def test_plan_batches_groups_by_reference_in_order_of_first_use():
    assignment = [0, 1, 2, 0, 1, 2, 0, 1]  # round-robin over 3 references
    todo = [0, 1, 2, 3, 4, 5, 6, 7]
    got = plan_batches(todo, assignment, 3)
    assert got == [[(0, 0), (3, 0), (6, 0)], [(1, 1), (4, 1), (7, 1)], [(2, 2), (5, 2)]]
    # resumed run: only what is left, same grouping rule
    assert plan_batches([2, 4, 5, 7], assignment, 2) == [[(2, 2), (5, 2)], [(4, 1), (7, 1)]]
    # batch size 1 (classical methods): dataset order, untouched
    assert plan_batches(todo, assignment, 1) == [[(i, assignment[i])] for i in todo]


def _ungrouped(todo, assignment, batch_size):
    return [
        [(i, assignment[i]) for i in todo[k : k + batch_size]]
        for k in range(0, len(todo), batch_size)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("grouping")
    write_generic(root / "syn", [(64, 64)] * 4)
    write_generic(root / "real", [(64, 64), (64, 80)], seed=100, tint=(30, -20, 10))
    return root


def _run(data: Path, out: Path, method) -> list[int]:
    rows: list[int] = []
    hook = method.models.unet.register_forward_pre_hook(
        lambda mod, a, kw: rows.append(a[0].shape[0]), with_kwargs=True
    )
    try:
        translate_dataset(
            open_dataset(data / "syn"),
            load_references(data / "real"),
            method,
            out,
            reference_choice="round-robin",
            progress=False,
        )
    finally:
        hook.remove()
    return rows


@pytest.mark.parametrize("preset", ["cross-image", "styleid"])
def test_grouping_by_reference_changes_no_byte_and_saves_style_rows(
    data, tmp_path, tiny_model_dir, monkeypatch, preset
):
    params = dict(FAST, model=str(tiny_model_dir), **({"skip": 1} if preset == "styleid" else {}))
    method = create_method(preset, **params)
    grouped = _run(data, tmp_path / "grouped", method)
    monkeypatch.setattr(translate_runner, "plan_batches", _ungrouped)  # what the run calls
    method = create_method(preset, **params)
    ungrouped = _run(data, tmp_path / "ungrouped", method)

    a, b = open_dataset(tmp_path / "grouped"), open_dataset(tmp_path / "ungrouped")
    assert [s.name for s in a.samples] == [s.name for s in b.samples]
    # Per-image seeds make each result independent of its batch up to float rounding:
    # the UNet's CPU kernels are not bitwise batch-invariant (a row's output moves by
    # ~1e-7 with the batch size), which can flip a rare pixel by one grey level.
    for sa, sb in zip(a.samples, b.samples, strict=True):
        x, y = a.image(sa).astype(int), b.image(sb).astype(int)
        diff = np.abs(x - y)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, sa.name
    ma = [
        json.loads(x)
        for x in (tmp_path / "grouped" / "manifest.jsonl").read_text().split("\n")[:-1]
    ]
    mb = [
        json.loads(x)
        for x in (tmp_path / "ungrouped" / "manifest.jsonl").read_text().split("\n")[:-1]
    ]
    assert [e["name"] for e in ma] == [e["name"] for e in mb]  # dataset order
    assert [e["reference"] for e in ma] == [e["reference"] for e in mb]

    n = 4  # images
    if preset == "cross-image":
        steps = FAST["num_inference_steps"] - FAST["skip"]
        # per step: out + content rows for 2 images, + 1 style row (grouped) or 2
        assert grouped == [2 + 1 + 2] * steps * 2
        assert ungrouped == [2 + 2 + 2] * steps * 2
        assert sum(grouped) / n == 7.5 and sum(ungrouped) / n == 9.0
    else:
        steps = FAST["num_inference_steps"] - 1
        # every reference is inverted once either way (cached); grouped batches hold one
        # new style each, ungrouped the first batch holds both
        assert sum(grouped) == sum(ungrouped) == (4 + 4 + 2) * steps


def test_gpu_methods_ignore_workers_with_a_warning(data, tmp_path, tiny_model_dir, caplog):
    method = create_method("adain-diffusion", **FAST, model=str(tiny_model_dir))

    def no_pool(*a, **k):
        raise AssertionError("a GPU method must not start a process pool")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(translate_batches, "_run_pool", no_pool)
        with caplog.at_level(logging.WARNING, logger="synth2real"):
            summary = translate_dataset(
                open_dataset(data / "syn"),
                load_references(data / "real"),
                method,
                tmp_path / "out",
                workers=3,
                progress=False,
            )
    assert summary.written == 4
    assert "workers=3" in caplog.text and "accelerate launch" in caplog.text
