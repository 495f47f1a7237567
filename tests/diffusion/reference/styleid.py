"""Run the authors' StyleID diffusers port (``run_styleid_diffusers.py``) on tiny models.

The port's own ``style_transfer_module`` (hooks on ``attn1`` of the injection layers,
``invert_process``, ``reverse_process``) runs unchanged on a copy of ``tiny``'s UNet (its
hooks stay on that copy). What its ``__main__`` block does around them is re-typed in
:meth:`OfficialStyleID.invert` and :meth:`OfficialStyleID.sample`, line for line: encode,
invert the style then the content (keeping a deep copy of the recorded queries, keys and
values after each), pair the content's queries with the style's keys/values per
timestep, the initial AdaIN ``(c - mean_c) / (std_c + 1e-4) * std_s + mean_s``
(``torch.std``: unbiased), sample.
The script's globals (``tokenizer``, ``text_encoder``, ``device``, ``vae``,
``unet_wrapper``, ``scheduler``, ``guidance_scale``) are set on the module while it runs.
"""

from __future__ import annotations

import contextlib
import copy
import types
from dataclasses import dataclass

import torch
from torch import Tensor

from . import loader
from .models import TinySD, ddim_scheduler

#: the port's default injection layers: its numbering of the decoder's 12 (resnet,
#: attention) pairs, 3 per up-block; 7..11 = up_blocks.2.attentions[1, 2] and
#: up_blocks.3.attentions[0, 1, 2]
PORT_LAYERS = (7, 8, 9, 10, 11)


def port_layer_keys(layers=PORT_LAYERS) -> list[str]:
    """Processor keys (synth2real's naming) of the port's injection layers."""
    return [
        f"up_blocks.{i // 3}.attentions.{i % 3}.transformer_blocks.0.attn1.processor"
        for i in layers
    ]


@dataclass
class PortInversion:
    """Both inversions of one (content, style) pair, as the port's ``__main__`` keeps them.

    Attributes:
        content_latent, style_latent: the encoded clean latents ``(1, C, h, w)``.
        content, style: ``(T, C, h, w)`` the latent after every inversion step
            (``[-1]`` = ``z_T``).
        features: ``{layer: {t: (q_content, k_style, v_style)}}`` for the injection.
    """

    content_latent: Tensor
    style_latent: Tensor
    content: Tensor
    style: Tensor
    features: dict


@dataclass
class PortRun:
    """One sampling run of the port.

    Attributes:
        initial: the latent sampling starts from.
        inputs: ``(T, C, h, w)`` the latent the UNet is given at every sampling step
            (``inputs[0] = initial``, ``inputs[i + 1]`` = the result of DDIM step ``i``).
        x0_predictions: ``(T, C, h, w)`` what ``reverse_process`` returns: the predicted
            clean latent of every step. The port decodes its result from the last one,
            not from the last DDIM step's ``prev_sample``.
    """

    initial: Tensor
    inputs: Tensor
    x0_predictions: Tensor

    @property
    def output(self) -> Tensor:
        """The port's result (the last step's predicted clean latent)."""
        return self.x0_predictions[-1:]


class OfficialStyleID:
    """The port's ``style_transfer_module`` on a copy of ``tiny.unet``.

    Args:
        tiny: the models (``layers_per_block=2``: the port indexes 3 layers per up-block).
        ddim_steps: DDIM steps (the port's default is 20).
        gamma, tau, layers: the port's ``style_transfer_params``.
    """

    def __init__(
        self,
        tiny: TinySD,
        ddim_steps: int = 20,
        gamma: float = 0.75,
        tau: float = 1.5,
        layers=PORT_LAYERS,
    ):
        port = loader.styleid().run_styleid_diffusers
        self.tiny = tiny
        self.unet = copy.deepcopy(tiny.unet)
        self.scheduler = ddim_scheduler()
        self.scheduler.set_timesteps(ddim_steps)
        self.cfg = types.SimpleNamespace(sd_version="1.5")
        params = {"gamma": gamma, "tau": tau, "injection_layers": list(layers)}
        self.wrapper = port.style_transfer_module(
            self.unet,
            tiny.vae,
            tiny.text_encoder,
            tiny.tokenizer,
            self.scheduler,
            self.cfg,
            style_transfer_params=params,
        )

    def _running(self):
        ns = loader.styleid()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(loader.quiet_progress(ns))
        stack.enter_context(
            loader.styleid_globals(
                tokenizer=self.tiny.tokenizer,
                text_encoder=self.tiny.text_encoder,
                device="cpu",
                vae=self.tiny.vae,
                unet_wrapper=self.wrapper,
                scheduler=self.scheduler,
                guidance_scale=0.0,
            )
        )
        return stack

    def invert(self, content: Tensor, style: Tensor) -> PortInversion:
        """The port's ``__main__`` up to the feature pairing, on ``content``/``style``
        images ``(1, 3, H, W)`` in [-1, 1] (its ``normalize`` of a uint8 image)."""
        sd = loader.styleid().stable_diffusion
        w = self.wrapper
        with self._running():
            denoise_kwargs = w.get_text_condition(None)
            w.trigger_get_qkv, w.trigger_modify_qkv = True, False
            style_latent = sd.encode_latent(style, self.tiny.vae)
            _, style_latents = w.invert_process(style_latent, denoise_kwargs=denoise_kwargs)
            style_features = copy.deepcopy(w.attn_features)

            w.trigger_get_qkv, w.trigger_modify_qkv = True, False
            content_latent = sd.encode_latent(content, self.tiny.vae)
            _, content_latents = w.invert_process(content_latent, denoise_kwargs=denoise_kwargs)
            content_features = copy.deepcopy(w.attn_features)

        features: dict = {}
        for layer_name in style_features:
            features[layer_name] = {}
            for t in self.scheduler.timesteps:
                t = t.item()
                features[layer_name][t] = (
                    content_features[layer_name][t][0],
                    style_features[layer_name][t][1],
                    style_features[layer_name][t][2],
                )
        return PortInversion(
            content_latent=content_latent,
            style_latent=style_latent,
            content=torch.cat(content_latents),
            style=torch.cat(style_latents),
            features=features,
        )

    def sample(
        self, inv: PortInversion, *, init_adain: bool = True, inject: bool = True
    ) -> PortRun:
        """The rest of the port's ``__main__``: initial AdaIN (unless ``init_adain`` is
        False, its ``--without_init_adain``) and ``reverse_process`` with the injection
        (unless ``inject`` is False, its ``--without_attn_injection``)."""
        w = self.wrapper
        with self._running():
            w.attn_features_modify = {k: dict(v) for k, v in inv.features.items()}
            w.trigger_get_qkv, w.trigger_modify_qkv = False, inject
            denoise_kwargs = w.get_text_condition(None)
            content_latent, style_latent = inv.content[-1:], inv.style[-1:]
            if init_adain:
                latent_cs = (content_latent - content_latent.mean(dim=(2, 3), keepdim=True)) / (
                    content_latent.std(dim=(2, 3), keepdim=True) + 1e-4
                ) * style_latent.std(dim=(2, 3), keepdim=True) + style_latent.mean(
                    dim=(2, 3), keepdim=True
                )
            else:
                latent_cs = content_latent
            inputs: list[Tensor] = []
            hook = self.unet.register_forward_pre_hook(
                lambda module, args: inputs.append(args[0].detach().clone())
            )
            try:
                _, latents = w.reverse_process(latent_cs, denoise_kwargs=denoise_kwargs)
            finally:
                hook.remove()
        return PortRun(
            initial=latent_cs, inputs=torch.cat(inputs), x0_predictions=torch.cat(latents)
        )
