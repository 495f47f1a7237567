"""Whole-image inference at any size: pad to the model stride, optional tiling, crop back.

``predict_probs(model, image)`` returns class probabilities ``KxHxW`` for an image of any
size; ``predict_mask`` their argmax. Images larger than ``tile`` pixels on a side are
processed in overlapping tiles whose probabilities are averaged, so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from synth2real.errors import ConfigError
from synth2real.segment.device import resolve_device
from synth2real.segment.models import SegmentationModel


def as_model(
    checkpoint_or_model: str | Path | SegmentationModel, device: str | torch.device = "auto"
) -> tuple[SegmentationModel, dict[str, Any] | None, torch.device]:
    """Load a checkpoint (or take a model) and put it on ``device`` in eval mode.

    Returns ``(model, meta or None, device)``.
    """
    dev = resolve_device(device)
    if isinstance(checkpoint_or_model, SegmentationModel):
        return checkpoint_or_model.to(dev).eval(), None, dev
    if isinstance(checkpoint_or_model, torch.nn.Module):
        raise ConfigError(
            "evaluate/predict need a synth2real SegmentationModel or a checkpoint path"
        )
    from synth2real.segment.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint_or_model, dev)
    return model, meta, dev


def _pad_to(x: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


@torch.inference_mode()
def _forward(model: SegmentationModel, x: torch.Tensor, amp: bool) -> torch.Tensor:
    h, w = x.shape[-2:]
    use_amp = amp and x.device.type == "cuda"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(_pad_to(x, model.stride))
    return logits[..., :h, :w].float().softmax(dim=1)


@torch.inference_mode()
def predict_probs(
    model: SegmentationModel,
    image: np.ndarray,
    *,
    tile: int | None = 1024,
    overlap: float = 0.25,
    max_size: int | None = None,
    amp: bool = True,
) -> torch.Tensor:
    """Class probabilities of one image.

    Args:
        model: a segmentation model in eval mode (its device is used).
        image: ``HxWx3 uint8`` RGB, any size.
        tile: largest side processed at once (rounded up to the model stride); larger
            images go through overlapping tiles (default 1024; ``None``: never tile).
        overlap: tile overlap as a fraction of the tile (default 0.25).
        max_size: when the image's shorter side exceeds it, infer on a copy downscaled to
            that size (the scale the model was trained at) and upsample the probabilities.
        amp: bf16 autocast on CUDA (default True).

    Returns:
        ``KxHxW float32`` tensor (on the model's device), probabilities summing to 1.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    device = next(model.parameters()).device
    h0, w0 = image.shape[:2]
    if max_size and min(h0, w0) > max_size:
        s = max_size / min(h0, w0)
        image = cv2.resize(
            image, (max(1, round(w0 * s)), max(1, round(h0 * s))), interpolation=cv2.INTER_AREA
        )
    x = torch.tensor(image, device=device).permute(2, 0, 1)[None].float().div_(255)
    h, w = x.shape[-2:]
    if tile is None or max(h, w) <= tile:
        probs = _forward(model, x, amp)[0]
    else:
        t = int(np.ceil(tile / model.stride) * model.stride)
        th, tw = min(t, h), min(t, w)
        step_h = max(1, int(th * (1 - overlap)))
        step_w = max(1, int(tw * (1 - overlap)))
        ys = list(range(0, max(h - th, 0) + 1, step_h))
        xs = list(range(0, max(w - tw, 0) + 1, step_w))
        if ys[-1] + th < h:
            ys.append(h - th)
        if xs[-1] + tw < w:
            xs.append(w - tw)
        probs = torch.zeros((model.num_classes, h, w), device=device)
        count = torch.zeros((1, h, w), device=device)
        for y0 in ys:
            for x0 in xs:
                probs[:, y0 : y0 + th, x0 : x0 + tw] += _forward(
                    model, x[..., y0 : y0 + th, x0 : x0 + tw], amp
                )[0]
                count[:, y0 : y0 + th, x0 : x0 + tw] += 1
        probs /= count
    if (h, w) != (h0, w0):
        probs = F.interpolate(probs[None], size=(h0, w0), mode="bilinear", align_corners=False)[0]
    return probs


def predict_mask(model: SegmentationModel, image: np.ndarray, **kw: Any) -> np.ndarray:
    """``HxW uint8`` predicted class indices of ``image`` (see :func:`predict_probs`)."""
    return predict_probs(model, image, **kw).argmax(0).to(torch.uint8).cpu().numpy()
