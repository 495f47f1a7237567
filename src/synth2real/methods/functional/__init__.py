"""Pure array maths of the classical methods (no files, no classes, no state).

Conventions used by every function here:

- ``image``: ``HxWx3 uint8`` RGB.
- ``label``: ``HxW uint8`` class indices ``0..K-1``; any other value (the ignore index,
  stray ids) belongs to no class and is treated as "other".
- ``lab``: ``HxWx3 float32`` CIELAB as OpenCV computes it from float RGB in ``[0, 1]``
  (D65 white; ``L`` in ``[0, 100]``, ``a`` and ``b`` roughly in ``[-127, 127]``). We never
  use OpenCV's 8-bit LAB, whose quantisation (``L*255/100``, ``a+128``) costs up to half a
  level per channel and clips saturated colours.
- Per-class tables have 256 rows, one per possible label value, so that a label map can
  index them directly (no remapping pass). Rows of values that are not a class are filled
  by the caller with the global (whole-image) entry.
- Reference statistics are *pooled as if every reference had the same area*: a pixel of a
  reference with ``N`` pixels weighs ``1/N``. A 12-megapixel photo thus counts as much as
  a 0.3-megapixel one, and a class contributes in proportion to its share of each image.

The method classes (``reinhard.py``, ``histmatch.py``, ``fda.py``) hold parameters,
validate them and prepare reference statistics; the maths lives in this package, one
module per job, so it can be tested on arrays alone:

- :mod:`.colour`: the checks above, CIELAB conversions, rounding to ``uint8``, blending.
- :mod:`.moments`: per-class moments and the Reinhard transfer.
- :mod:`.histograms`: per-class histograms, CDF matching, rank mapping.
- :mod:`.contrast`: a class's local contrast against its surroundings (``-cwc``).
- :mod:`.fourier`: Fourier domain adaptation.

Every public name is importable from here (``from synth2real.methods import functional
as F``).
"""

from synth2real.methods.functional.colour import (
    NUM_SLOTS,
    blend,
    check_image,
    check_label,
    lab_to_rgb,
    rgb_to_lab,
    rgb_to_lab_where,
    to_colorspace,
    to_uint8,
    unit_to_uint8,
)
from synth2real.methods.functional.contrast import (
    class_contrast,
    context_at,
    context_mean,
    context_sums,
    thin_fraction,
)
from synth2real.methods.functional.fourier import (
    fda_half_width,
    fourier_domain_adaptation,
    low_frequency_amplitude,
)
from synth2real.methods.functional.histograms import (
    apply_luts,
    class_histograms,
    histogram_match,
    histogram_match_classwise,
    match_lut,
    quantile_map,
    weighted_distribution,
)
from synth2real.methods.functional.moments import (
    Moments,
    apply_affine,
    class_moments,
    reinhard,
    reinhard_classwise,
    reinhard_tables,
)

__all__ = [
    "NUM_SLOTS",
    "Moments",
    "apply_affine",
    "apply_luts",
    "blend",
    "check_image",
    "check_label",
    "class_contrast",
    "class_histograms",
    "class_moments",
    "context_at",
    "context_mean",
    "context_sums",
    "fda_half_width",
    "fourier_domain_adaptation",
    "histogram_match",
    "histogram_match_classwise",
    "lab_to_rgb",
    "low_frequency_amplitude",
    "match_lut",
    "quantile_map",
    "reinhard",
    "reinhard_classwise",
    "reinhard_tables",
    "rgb_to_lab",
    "rgb_to_lab_where",
    "thin_fraction",
    "to_colorspace",
    "to_uint8",
    "unit_to_uint8",
    "weighted_distribution",
]
