"""StyleID: the authors' diffusers port (``run_styleid_diffusers.py``) against synth2real
on a tiny random UNet in SD 1.5's block layout (CPU, 20 DDIM steps as the port).

Asserted: the DDIM inversion end point, plain DDIM sampling (UNet inputs at every step,
and the port's result = the last step's predicted clean latent), and injected sampling
in the port's five layers without the initial AdaIN. Documented and measured by
``benchmarks/parity_probe.py`` instead of asserted:

- the port injects in layers 7..11 of its numbering, i.e. ``up_blocks.2.attentions.1/2``
  and ``up_blocks.3.attentions.0/1/2``; synth2real in all six decoder self-attention
  layers of the two finest resolutions (also ``up_blocks.2.attentions.0``);
- the port's initial AdaIN divides by ``std + 1e-4`` (``torch.std``, unbiased),
  synth2real by the population std;
- the port returns the last step's predicted clean latent, synth2real the last DDIM step
  (to ``final_alpha_cumprod``: ``sqrt(a) x0 + sqrt(1 - a) eps`` with ``a = 0.99915``).
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
        assert ours.max_abs(z, trajectory[-1:]) <= TOL


@pytest.mark.slow
def test_plain_ddim_sampling_agrees_and_the_port_returns_the_last_x0_prediction(setup):
    tiny, port, inv = setup
    run = port.sample(inv, init_adain=False, inject=False)
    steps = ours.ddim_trajectory(tiny, inv.content[-1:], STEPS)  # (T, 1, C, h, w)
    inputs = torch.cat([inv.content[-1:], steps[:-1, 0]])
    assert max(ours.per_step(run.inputs, inputs)) <= TOL
    # the port decodes the last step's x0 prediction; synth2real takes the DDIM step on
    models_, sch = ours.diffusion_models(tiny), ours.schedule(STEPS)
    i = STEPS - 1
    with torch.no_grad():
        eps = models_.predict(inputs[-1:], sch.timesteps[i])
    a = sch.abar(i)
    x0 = (inputs[-1:] - (1 - a) ** 0.5 * eps) / a**0.5
    assert ours.max_abs(x0, run.output) <= TOL
    a_final = sch.abar(STEPS)
    torch.testing.assert_close(
        steps[-1], a_final**0.5 * x0 + (1 - a_final) ** 0.5 * eps, rtol=0, atol=TOL
    )


@pytest.mark.slow
def test_injected_sampling_agrees_in_the_ports_layers(setup):
    tiny, port, inv = setup
    run = port.sample(inv, init_adain=False, inject=True)
    plain = port.sample(inv, init_adain=False, inject=False)
    mine = ours.styleid(
        tiny, inv.content_latent, inv.style_latent, steps=STEPS, adain="none",
        layer_keys=port_layer_keys(),
    )  # fmt: skip
    inputs = torch.cat([mine.initial, mine.steps[:-1, 0]])
    assert max(ours.per_step(run.inputs, inputs)) <= TOL
    assert ours.max_abs(run.inputs, plain.inputs) > 1e-2  # the injection does act


def test_synth2reals_layers_are_the_ports_plus_one():
    from synth2real.diffusion.layers import select_layers

    unet = models.sd_layout_unet()
    keys = {layer.key for layer in select_layers(unet)}
    assert set(port_layer_keys()) < keys
    assert keys - set(port_layer_keys()) == {
        "up_blocks.2.attentions.0.transformer_blocks.0.attn1.processor"
    }
