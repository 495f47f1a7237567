"""Segmentation: models (registry), training, evaluation, prediction.

Submodules are imported on use (torch is heavy)::

    from synth2real.segment.train import TrainConfig, train
    from synth2real.segment.evaluate import evaluate
    from synth2real.segment.models import create_model, list_models
"""
