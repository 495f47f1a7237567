"""The parameters of the diffusion methods: one dataclass per pipeline.

Each dataclass is the single source of its parameters' defaults, types and documentation
(the ``Args:`` sections below): the methods are built from them, the registry lists them
(``synth2real methods NAME``), the CLI parses ``--param KEY=VALUE`` by their types, and
the attention and walk functions take their defaults from them. Values are checked and
normalised (tuples, ints, floats) when a config is made.

- :class:`DiffusionConfig`: what every diffusion method shares (model, device, sizes,
  batching, FreeU, attention chunks).
- :class:`CrossImageConfig`: the three-branch walk (``adain-diffusion``, ``cross-image``,
  ``cacti``, ``cactif``).
- :class:`StyleIDConfig`: StyleID.

Imports neither torch nor diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from synth2real.diffusion.quirks import ReferenceQuirks
from synth2real.errors import ConfigError

#: Stable Diffusion 1.5 on the Hugging Face hub.
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

#: the forms of FreeU (diffusion/freeu.py): the CACTIF reference code's, diffusers'
#: built-in ``enable_freeu``, none
FreeUMode = Literal["reference", "diffusers", "off"]
FREEU_MODES: tuple[str, ...] = ("reference", "diffusers", "off")
#: FreeU's factors ``(s1, s2, b1, b2)``, the CACTIF reference code's for Stable Diffusion 1.x:
#: the default of ``freeu_params`` and of :class:`~synth2real.diffusion.freeu.FreeUOptions`
FREEU_FACTORS: tuple[float, float, float, float] = (0.9, 0.2, 1.2, 1.4)


def parse_freeu(value: object) -> str:
    """The ``freeu`` parameter as a mode name: ``reference``, ``diffusers`` or ``off``.

    A bool keeps its earlier meaning: ``True`` = diffusers' built-in FreeU (what
    ``freeu=True`` ran before the reference's form existed), ``False`` = ``off``.
    """
    if isinstance(value, bool):
        return "diffusers" if value else "off"
    if isinstance(value, str) and value.strip().lower() in FREEU_MODES:
        return value.strip().lower()
    raise ConfigError(
        f"freeu must be one of {', '.join(FREEU_MODES)} (or true/false), got {value!r}"
    )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_range(name: str, rng: tuple[int, int] | None) -> None:
    _check(
        rng is None or (len(rng) == 2 and 0 <= rng[0] <= rng[1]),
        f"{name} must be [start, end) with 0 <= start <= end, got {rng}",
    )


def _pair(value) -> tuple[int, int] | None:
    return None if value is None else tuple(int(v) for v in value)  # type: ignore[return-value]


@dataclass
class DiffusionConfig:
    """Parameters every Stable-Diffusion method shares.

    Args:
        model: Stable Diffusion weights: a hub id (from the local Hugging Face cache or the
            hub) or a local folder in diffusers layout. Default: SD 1.5,
            ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
        device: ``auto`` (the process's GPU under accelerate, else cuda, mps, cpu), or
            ``cuda``, ``cuda:N``, ``mps``, ``cpu``. Default ``auto``.
        dtype: UNet precision: ``auto`` (float16 on GPUs, float32 on CPU), ``float32``,
            ``float16`` or ``bfloat16``. Latent maths stays float32; a half-precision VAE
            that gives NaNs is moved to float32, and a batch whose UNet output is not
            finite is redone in float32 (with a warning). Default ``auto``.
        working_size: the size images are translated at: an int sets the shorter side
            (the other keeps the aspect ratio; both rounded to the model's multiple, 64
            for SD 1.5), a pair ``[height, width]`` sets both. The output is resized back
            to the label map's exact size. Default 512.
        reference_fit: how a reference is brought to a content's working size: ``crop``
            (cover, keep aspect, centre crop) or ``stretch``. Default ``crop``.
        num_inference_steps: scheduler steps ``T``. Default 50.
        swap_resolutions: how many of the finest decoder resolutions hold edited
            self-attention layers (2 = SD 1.5's up_blocks.2 and .3). Default 2.
        freeu: FreeU on the UNet, in every UNet call (inversion included):
            ``reference`` (the CACTIF code's form: before each up-block whose input has
            the deepest width, SD 1.5's 1280 channels, or the next one, 640, the first
            half of the incoming hidden state's channels scaled by ``b1`` or ``b2`` and
            the state Fourier-filtered with ``s1`` or ``s2``), ``diffusers`` (diffusers' ``enable_freeu``: the FreeU
            paper's form, in ``up_blocks.0`` and ``.1``, filtering the skip features)
            or ``off``; ``true``/``false`` mean ``diffusers``/``off`` as before.
            Default ``reference``.
        freeu_params: FreeU factors ``[s1, s2, b1, b2]`` (both forms). Default
            [0.9, 0.2, 1.2, 1.4].
        batch_size: content images translated together (they share the style rows).
            On out-of-memory a batch is retried in halves, and later batches stay at
            the size that fitted. Default 4.
        attention_chunk: queries per attention chunk in the edited layers; None = chunks
            of at most 256 MiB of probabilities on a CPU, 1 GiB on a GPU (a call holds at
            most 4 GiB, or half the free GPU memory). Default None.
        compile: ``torch.compile`` the UNet (experimental; pays off on long GPU runs).
            Default False.
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    working_size: int | tuple[int, int] = 512
    reference_fit: Literal["crop", "stretch"] = "crop"
    num_inference_steps: int = 50
    swap_resolutions: int = 2
    freeu: FreeUMode | bool = "reference"
    freeu_params: tuple[float, float, float, float] = FREEU_FACTORS
    batch_size: int = 4
    attention_chunk: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        self.model, self.device, self.dtype = str(self.model), str(self.device), str(self.dtype)
        ws = self.working_size
        self.working_size = tuple(ws) if isinstance(ws, (list, tuple)) else int(ws)  # type: ignore[assignment]
        self.num_inference_steps = int(self.num_inference_steps)
        self.swap_resolutions = int(self.swap_resolutions)
        self.freeu = parse_freeu(self.freeu)  # type: ignore[assignment]
        self.freeu_params = tuple(float(v) for v in self.freeu_params)  # type: ignore[assignment]
        self.batch_size = int(self.batch_size)
        if self.attention_chunk is not None:
            self.attention_chunk = int(self.attention_chunk)
        self.compile = bool(self.compile)
        _check(
            self.reference_fit in ("crop", "stretch"),
            f"reference_fit must be crop or stretch, got {self.reference_fit!r}",
        )
        _check(
            self.num_inference_steps >= 1,
            f"num_inference_steps must be >= 1, got {self.num_inference_steps}",
        )
        _check(
            not isinstance(self.working_size, tuple) or len(self.working_size) == 2,
            f"working_size must be an int or [height, width], got {self.working_size}",
        )
        _check(
            self.swap_resolutions >= 1,
            f"swap_resolutions must be >= 1, got {self.swap_resolutions}",
        )
        _check(
            len(self.freeu_params) == 4,
            f"freeu_params must be [s1, s2, b1, b2], got {self.freeu_params}",
        )
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(
            self.attention_chunk is None or self.attention_chunk >= 1,
            f"attention_chunk must be >= 1 or None, got {self.attention_chunk}",
        )

    def _check_skip(self, skip: int) -> None:
        _check(
            0 <= skip < self.num_inference_steps,
            f"skip must be in [0, num_inference_steps - 1], got {skip}",
        )


@dataclass
class CrossImageConfig(DiffusionConfig):
    """Parameters of the three-branch walk: cross-image attention, CACTI, CACTIF and
    AdaIN-only diffusion (docs/METHOD.md).

    Args:
        skip: steps ``S`` skipped before denoising starts (30 of 50: 20 steps from
            t=381 with SD 1.5). Default 30.
        swap: replace the out element's keys/values by its style's in the edited layers
            (cross-image attention). Default True; ``adain-diffusion`` sets False.
        sharpen: attention sharpening ``s`` of the swapped attention,
            ``clamp(s*A + (1-s)/N, 0, 1)``; 1 = none. Default 1.67.
        swap_steps: ``[start, end)`` denoising steps (0-based among the ``T - S`` run)
            with the swap; None = every step. Default None.
        adain: latent AdaIN of out towards its style after every step: ``none``,
            ``global``, or ``classwise`` (class-wise on ``classwise_steps``, global on the
            others; needs label maps). Default ``global``; ``cacti`` and ``cactif`` set
            ``classwise``.
        classwise_steps: ``[start, end)`` denoising steps with class-wise AdaIN. Default
            [5, 15].
        erosion: erosion iterations (3x3 cross) of the class masks at latent size before
            their statistics are computed; classes that vanish use their whole mask.
            0 = none. Default 1.
        thin_share: how label maps reach latent size (one label per 8x8 block): a block
            goes to the rarest class (in the image) covering at least this share of it,
            else to its majority class; the same rule for contents and references, so
            thin classes (cracks, poles) keep latent pixels and their own class-wise
            statistics. 0 = plain majority (thin classes vanish into their
            surroundings; the behaviour before 0.25 became the default). Default 0.25.
        filtering: CACTIF's selective attention filtering (needs swap). Default False;
            ``cactif`` sets True.
        filter_p: the filter's quantile ``p`` (useful range 0.1 to 0.3). Default 0.25.
        adain_sigma_offset: added to both standard deviations of class-wise AdaIN (the
            reference code uses 1.0); None = 0.0, or 1.0 with ``reference_quirks``.
            Default None.
        reference_quirks: reproduce the official CACTIF code (``ReferenceQuirks`` in
            diffusion/quirks.py): class-wise AdaIN leaves pixels removed by erosion, of
            classes missing from the reference, of no class and of class index >= 19
            untouched, with sigma offset 1; masks eroded at the image border too;
            statistics ``sqrt(var + 1e-5)``; the last noise map zeroed (and the last
            AdaIN aimed at the style's posterior mean); no swap on step 1; label maps
            brought to latent size as the reference does (bicubic for references).
            Default False.
        shared_noise: a reference quirk of its own: every image draws its noise as the
            reference's inversion does after ``torch.manual_seed(42)``, so contents and
            references share their noise draws, as in the official CACTI/CACTIF runs
            (their class-wise AdaIN reseeds torch). Off: each image its own noise
            (``seed`` and the image). Default False.
        seed: seed of the inversion noise (combined with each image's pixels, so results
            do not depend on batching, order or sharding). Default 0.
    """

    skip: int = 30
    swap: bool = True
    sharpen: float = 1.67
    swap_steps: tuple[int, int] | None = None
    adain: Literal["none", "global", "classwise"] = "global"
    classwise_steps: tuple[int, int] = (5, 15)
    erosion: int = 1
    thin_share: float = 0.25
    filtering: bool = False
    filter_p: float = 0.25
    adain_sigma_offset: float | None = None
    reference_quirks: bool = False
    shared_noise: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.skip, self.swap, self.sharpen = int(self.skip), bool(self.swap), float(self.sharpen)
        self.swap_steps, self.classwise_steps = _pair(self.swap_steps), _pair(self.classwise_steps)  # type: ignore[assignment]
        self.erosion, self.thin_share = int(self.erosion), float(self.thin_share)
        self.filtering, self.filter_p = bool(self.filtering), float(self.filter_p)
        if self.adain_sigma_offset is not None:
            self.adain_sigma_offset = float(self.adain_sigma_offset)
        self.reference_quirks, self.shared_noise = (
            bool(self.reference_quirks),
            bool(self.shared_noise),
        )
        self.seed = int(self.seed)
        _check(
            self.adain in ("none", "global", "classwise"),
            f"adain must be none, global or classwise, got {self.adain!r}",
        )
        self._check_skip(self.skip)
        _check(self.sharpen > 0, f"sharpen must be positive, got {self.sharpen}")
        _check_range("swap_steps", self.swap_steps)
        _check_range("classwise_steps", self.classwise_steps)
        _check(self.erosion >= 0, f"erosion must be >= 0, got {self.erosion}")
        _check(
            0.0 <= self.thin_share <= 1.0, f"thin_share must be in [0, 1], got {self.thin_share}"
        )
        _check(
            not self.filtering or self.swap,
            "filtering acts on the swapped attention: it needs swap=True",
        )
        _check(0.0 <= self.filter_p <= 1.0, f"filter_p must be in [0, 1], got {self.filter_p}")

    @property
    def quirks(self) -> ReferenceQuirks:
        """The reference code's behaviours these parameters ask for."""
        return ReferenceQuirks.for_walk(
            self.reference_quirks, self.adain_sigma_offset, self.shared_noise
        )

    def swap_at(self, step: int) -> bool:
        """Whether the key/value swap is on at denoising step ``step`` (0 = step ``S``):
        ``swap`` and ``swap_steps``, less the steps the reference never swaps with
        ``reference_quirks``."""
        if not self.swap:
            return False
        planned = self.swap_steps is None or self.swap_steps[0] <= step < self.swap_steps[1]
        return self.quirks.swaps(step, planned)

    def classwise_at(self, step: int) -> bool:
        """Whether AdaIN is class-wise (not global) after denoising step ``step``."""
        lo, hi = self.classwise_steps
        return self.adain == "classwise" and lo <= step < hi


@dataclass
class StyleIDConfig(DiffusionConfig):
    """Parameters of StyleID (Chung, Hyun, Heo, CVPR 2024; docs/METHOD.md).

    Args:
        skip: DDIM steps ``S`` not inverted: the inversion stops at level ``S`` and
            sampling starts there. Default 0 (StyleID: full inversion).
        adain: AdaIN of the initial latent towards the style's: ``none`` or ``global``.
            Default ``global``.
        gamma: query preservation: ``Q = gamma*Q_content + (1-gamma)*Q`` (0.3 gives
            stronger style). Default 0.75.
        tau: temperature on the attention logits. Default 1.5.
        style_cache_gb: GiB of device memory for the references' keys/values (per step
            and edited layer), computed once and reused by every batch; styles beyond it
            are recomputed from their cached inversion latents (one extra UNet row per
            step). None = a quarter of the GPU's memory (of the RAM on a CPU, 4 GiB on
            MPS); 0 = never cache keys/values. Default None.
        reference_quirks: reproduce the authors' diffusers port (``ReferenceQuirks`` in
            diffusion/quirks.py): its initial AdaIN (unbiased std + 1e-4), its five
            injection layers (the last five decoder self-attention layers; SD 1.5: not
            ``up_blocks.2.attentions.0``), and the last step's predicted clean latent as
            the result. Default False.
        freeu: as for every diffusion method (``reference``, ``diffusers``, ``off``).
            Default ``off`` (StyleID's code has no FreeU).
    """

    skip: int = 0
    adain: Literal["none", "global"] = "global"
    gamma: float = 0.75
    tau: float = 1.5
    style_cache_gb: float | None = None
    reference_quirks: bool = False
    freeu: FreeUMode | bool = "off"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.skip, self.gamma, self.tau = int(self.skip), float(self.gamma), float(self.tau)
        if self.style_cache_gb is not None:
            self.style_cache_gb = float(self.style_cache_gb)
        self.reference_quirks = bool(self.reference_quirks)
        _check(
            self.adain in ("none", "global"),
            "styleid normalises its initial latent only: adain must be none or global, "
            f"got {self.adain!r}",
        )
        self._check_skip(self.skip)
        _check(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1], got {self.gamma}")
        _check(self.tau > 0, f"tau must be positive, got {self.tau}")
        _check(
            self.style_cache_gb is None or self.style_cache_gb >= 0,
            f"style_cache_gb must be >= 0 or None, got {self.style_cache_gb}",
        )

    @property
    def quirks(self) -> ReferenceQuirks:
        """The StyleID port's behaviours these parameters ask for."""
        return ReferenceQuirks.for_styleid(self.reference_quirks)


#: ``pipeline`` name -> its config (what the ``pipeline`` parameter used to choose)
PIPELINES: dict[str, type[DiffusionConfig]] = {
    "three-branch": CrossImageConfig,
    "styleid": StyleIDConfig,
}
