"""StyleID: the authors' diffusers port (``run_styleid_diffusers.py``) against synth2real
on a tiny random UNet in SD 1.5's block layout (CPU, 20 DDIM steps as the port).

Compared: the DDIM inversion end point; plain DDIM sampling (the UNet's input at every
step and the result); injected sampling with the initial AdaIN, where StyleID's
``reference_quirks`` reproduce the port: its initial AdaIN (unbiased std + 1e-4), its
five injection layers (``up_blocks.2.attentions.1/2``, ``up_blocks.3.attentions.0/1/2``;
synth2real's default also edits ``up_blocks.2.attentions.0``) and its result, the last
step's predicted clean latent (synth2real's default takes the last DDIM step on, to
``final_alpha_cumprod``). What each of these is worth is measured by
``benchmarks/parity_probe.py``.
"""

from __future__ import annotations

import pytest
import torch

from tests.diffusion.reference import loader, models, ours
from tests.diffusion.reference.styleid import OfficialStyleID, port_layer_keys

STEPS = 20
TOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    loader.styleid()  # skips the module's tests without the reference code
    tiny = models.tiny_sd()  # layers_per_block=2: the port numbers 3 layers per up-block
    port = OfficialStyleID(tiny, ddim_steps=STEPS)
    content = models.random_image(tiny.image_hw, seed=2)
    style = models.random_image(tiny.image_hw, seed=1)
    return tiny, port, port.invert(content, style)


@pytest.mark.slow
def test_ddim_inversion_end_points_agree(setup):
    tiny, _, inv = setup
    for latent, trajectory in ((inv.content_latent, inv.content), (inv.style_latent, inv.style)):
        z = ours.ddim_invert(tiny, latent, STEPS)
        diff = ours.max_abs(z, trajectory[-1:])
        print(f"inversion end point: {diff:.1e}")
        assert diff <= TOL


@pytest.mark.slow
def test_plain_ddim_sampling_agrees_at_every_step_and_in_the_result(setup):
    tiny, port, inv = setup
    run = port.sample(inv, init_adain=False, inject=False)
    steps = ours.ddim_trajectory(tiny, inv.content[-1:], STEPS, x0_last=True)[:, 0]
    inputs = torch.cat([inv.content[-1:], steps[:-1]])
    assert max(ours.per_step(run.inputs, inputs)) <= TOL
    assert ours.max_abs(steps[-1:], run.output) <= TOL  # the last x0 prediction
    # synth2real's default takes the last DDIM step on: a documented difference
    default = ours.ddim_trajectory(tiny, inv.content[-1:], STEPS)[-1]
    assert ours.max_abs(default, run.output) > 10 * TOL


@pytest.mark.slow
def test_injected_sampling_with_the_ports_quirks_agrees_at_every_step(setup):
    tiny, port, inv = setup
    run = port.sample(inv)  # initial AdaIN and injection, as the port's defaults
    mine = ours.styleid(tiny, inv.content_latent, inv.style_latent, steps=STEPS, quirks=True)
    initial = ours.max_abs(mine.initial, run.initial)
    inputs = max(ours.per_step(run.inputs, mine.inputs))
    result = ours.max_abs(mine.steps[-1:], run.output)
    print(f"initial {initial:.1e}, UNet inputs {inputs:.1e}, result {result:.1e}")
    assert initial <= TOL and inputs <= TOL and result <= TOL
    plain = port.sample(inv, init_adain=True, inject=False)
    assert ours.max_abs(run.inputs, plain.inputs) > 1e-2  # the injection does act


def test_the_ports_layers_are_the_last_five_synth2real_edits():
    from synth2real.diffusion.layers import select_layers
    from synth2real.diffusion.quirks import PORT_LAYER_COUNT

    unet = models.sd_layout_unet()
    keys = [layer.key for layer in select_layers(unet)]
    assert keys[-PORT_LAYER_COUNT:] == port_layer_keys()
    assert keys[:-PORT_LAYER_COUNT] == [
        "up_blocks.2.attentions.0.transformer_blocks.0.attn1.processor"
    ]
