"""Parity harness: the official reference code (CACTIF, StyleID's diffusers port) run side
by side with synth2real on tiny random models, on the CPU. Test support only, never
shipped, and the reference code is never copied here: it is imported from
``../shared/reference`` (or ``$S2R_REFERENCE``) and the tests skip without it.

- :mod:`.locate`: where the reference code is; skip reasons.
- :mod:`.loader`: importing it unchanged, and the few patches it needs on a CPU with
  current diffusers (each listed there).
- :mod:`.models`: tiny models in SD 1.5's block layout (and SD 1.5's widths for FreeU).
- :mod:`.cactif`: the official inversion + walk + AdaIN callback, recorded per step.
- :mod:`.styleid`: the StyleID port's inversion and sampling, recorded per step.
- :mod:`.ours`: synth2real's side, fed the official noise (the only module that touches
  synth2real's pipeline internals).
"""
