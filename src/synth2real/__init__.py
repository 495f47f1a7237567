"""synth2real: make labelled synthetic images look like a few real photos, class by class."""

__version__ = "0.1.0"
