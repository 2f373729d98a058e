"""Step caching in the shared denoising loop: the ``StepCache`` setting, its skip plan, and the per-run state.

At a skipped step the DiT runs only its embeddings and head; the block stack's output is its input plus the residual
``x_out - x_in`` the stack added at the last computed step, kept per guidance pass (cond, uncond, perturbed). The
passes of one step are computed or skipped together, so they stay one batched forward. Policies:

    teacache     the schedule from the time embeddings' relative L1 changes, rescaled by a polynomial (the model's
                 calibrated one, else Wan's published one for a Wan-shaped DiT, else none) -- known before sampling
    magcache     the schedule from calibrated residual-magnitude ratios -- known before sampling
    first-block  block 0 runs every step; the rest is skipped while block 0's residual changed by less than the
                 threshold since the last computed step (decided while sampling; the tail residual is reused)

``speedup`` turns into the threshold whose schedule computes ``steps / speedup`` steps (``caching.threshold_for
_speedup``); for first-block that search runs on the calibrated first-block changes, so the steps it computes are
close to, not exactly, the target. Calibrations come from ``videogen cache-calibrate``
(``videogen.cache_calibration``), stored under ``step_cache_calibration`` in the model's generation_config.json.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from videogen.caching import (
    TEACACHE_COEFFICIENTS,
    first_block_unchanged,
    magcache_schedule,
    relative_l1,
    teacache_schedule,
    threshold_for_speedup,
)

POLICIES = ("teacache", "magcache", "first-block")
DEFAULT_POLICY = "teacache"  # chosen from docs/benchmarks.md
DEFAULT_SPEEDUP = 2.0
CALIBRATION_KEY = "step_cache_calibration"  # in a model's generation_config.json


@dataclass
class StepCache:
    """How to cache steps: a ``policy`` (``teacache``, ``magcache``, ``first-block``) and either a target ``speedup``
    (default 2) or a ``threshold``. ``coefficients``: TeaCache's polynomial (a ``caching.TEACACHE_COEFFICIENTS``
    model name such as ``t2v-1.3b``, or the numbers, highest degree first); ``modulated_input``: ``e`` (the time
    embedding) or ``e0`` (its projection); ``first`` / ``last``: TeaCache's always-computed steps. ``mag_ratios``,
    ``max_skip``, ``retention_ratio``: MagCache's. ``calibration``: a ``cache-calibrate`` result (default: read from
    the pipeline's generation_config.json)."""

    policy: str = DEFAULT_POLICY
    speedup: Optional[float] = None
    threshold: Optional[float] = None
    coefficients: Optional[Union[str, Sequence[float]]] = None
    modulated_input: str = "e"
    first: int = 1
    last: int = 1
    mag_ratios: Optional[Sequence[float]] = None
    max_skip: int = 3
    retention_ratio: float = 0.2
    calibration: Optional[dict] = None

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"step cache policy must be one of {POLICIES}; got {self.policy!r}")
        if self.speedup is not None and self.threshold is not None:
            raise ValueError("give a step cache either a speedup or a threshold, not both")
        if self.speedup is not None and not self.speedup >= 1:
            raise ValueError(f"speedup must be >= 1; got {self.speedup}")
        if self.threshold is not None and not self.threshold >= 0:
            raise ValueError(f"step cache threshold must be >= 0; got {self.threshold}")
        if self.speedup is None and self.threshold is None:
            self.speedup = DEFAULT_SPEEDUP
        if self.modulated_input not in ("e", "e0"):
            raise ValueError(f"modulated_input must be 'e' or 'e0'; got {self.modulated_input!r}")
        if isinstance(self.coefficients, str) and (self.coefficients, self.modulated_input) not in TEACACHE_COEFFICIENTS:
            names = sorted({m for m, _ in TEACACHE_COEFFICIENTS})
            raise ValueError(f"unknown TeaCache coefficients {self.coefficients!r}; published: {', '.join(names)}")

    def start(self, transformer, timesteps: torch.Tensor, calibration: Optional[dict] = None) -> "StepCacheRun":
        """The state of one sampling run over ``timesteps`` (the plan made now, for the scheduled policies)."""
        calibration = self.calibration if self.calibration is not None else calibration
        if self.policy == "first-block":
            threshold = self.threshold
            if threshold is None:
                threshold = first_block_threshold(calibration, len(timesteps), self.speedup)
            return StepCacheRun(self, None, threshold, len(timesteps))
        threshold, compute = plan_schedule(self, transformer, timesteps, calibration)
        return StepCacheRun(self, compute, threshold, len(timesteps))


def as_step_cache(value) -> Optional["StepCache"]:
    """The pipeline's ``step_cache`` argument as a ``StepCache`` (a policy name: at the default speed-up) or None;
    any object with a ``start`` method (a calibration recorder) is passed through."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return StepCache(value)
    if hasattr(value, "start"):
        return value
    raise ValueError(f"step_cache must be a policy name {POLICIES} or a videogen.step_cache.StepCache; got "
                     f"{type(value).__name__}")


def step_cache_from_settings(policy: Optional[str], speedup: Optional[float], threshold: Optional[float]):
    """The ``StepCache`` the command line / UI settings name (``--step-cache``, ``--speedup``,
    ``--step-cache-threshold``); a speed-up or threshold alone uses the default policy; none of them, or the
    policy ``none``: None."""
    if policy == "none" or (policy in (None, "") and speedup is None and threshold is None):
        return None
    if policy in (None, ""):
        policy = DEFAULT_POLICY
    if speedup == 1 and threshold is None:
        return None  # x1: nothing to skip
    return StepCache(policy, speedup=speedup, threshold=threshold)


# ----------------------------------------------------------------------------------------------
# Plans
# ----------------------------------------------------------------------------------------------


def nearest_interp(values: Sequence[float], n: int) -> list[float]:
    """``values`` resampled to ``n`` entries by the nearest index (MagCache's ``nearest_interp``)."""
    src = np.asarray(values, dtype=np.float64)
    if len(src) == n:
        return src.tolist()
    if n == 1:
        return [float(src[0])]
    idx = np.round(np.arange(n) * (len(src) - 1) / (n - 1)).astype(int)
    return src[idx].tolist()


@torch.no_grad()
def modulated_inputs(transformer, timesteps: torch.Tensor, kind: str = "e") -> torch.Tensor:
    """TeaCache's modulated input at each timestep, ``[T, ...]``: the time embedding (``e``) or its projection
    (``e0``), computed by the DiT's own time layers."""
    t = torch.as_tensor(timesteps).to(transformer.patch_embedding.weight.device).flatten()
    temb, e = transformer.time_embeddings(t)
    return (temb if kind == "e" else e).float()


def input_changes(transformer, timesteps: torch.Tensor, kind: str = "e") -> list[float]:
    """``relative_l1`` of the modulated input from each step to the next (entry 0 is 0, unused)."""
    m = modulated_inputs(transformer, timesteps, kind)
    return [0.0] + [relative_l1(m[i], m[i - 1]) for i in range(1, len(m))]


def published_coefficients(config, kind: str = "e") -> Optional[list[float]]:
    """TeaCache's published Wan polynomial for a DiT of a public Wan2.1 shape (1.3B T2V; 14B T2V; 14B I2V at 480p),
    else None."""
    name = None
    if config.dim == 1536 and config.num_layers == 30 and config.in_channels == 16:
        name = "t2v-1.3b"
    elif config.dim == 5120 and config.num_layers == 40:
        name = "i2v-14b-480p" if config.in_channels == 36 else "t2v-14b"
    return None if name is None else list(TEACACHE_COEFFICIENTS[(name, kind)])


def teacache_coefficients(cache: StepCache, config, calibration: Optional[dict]) -> Optional[list[float]]:
    """The polynomial TeaCache rescales with: the one asked for, else the model's calibrated one, else the
    published one for its shape, else None (the raw changes, with a warning to calibrate)."""
    if isinstance(cache.coefficients, str):
        return list(TEACACHE_COEFFICIENTS[(cache.coefficients, cache.modulated_input)])
    if cache.coefficients is not None:
        return [float(c) for c in cache.coefficients]
    fitted = (calibration or {}).get("teacache")
    if fitted and fitted.get("input", "e") == cache.modulated_input:
        return [float(c) for c in fitted["coefficients"]]
    published = published_coefficients(config, cache.modulated_input)
    if published is None:
        warnings.warn("TeaCache: this model has no calibrated or published polynomial, so the raw changes of the "
                      "time embedding are accumulated; run `videogen cache-calibrate --model DIR` for a fitted one",
                      stacklevel=3)
    return published


def mag_ratios_for(cache: StepCache, calibration: Optional[dict], n: int) -> list[float]:
    """MagCache's per-step ratios for ``n`` steps: the ones given, else the calibrated ones (resampled)."""
    ratios = cache.mag_ratios
    if ratios is None:
        ratios = ((calibration or {}).get("magcache") or {}).get("mag_ratios")
    if ratios is None:
        raise ValueError("MagCache needs magnitude ratios calibrated for this model: run `videogen cache-calibrate "
                         "--model DIR` (or pass StepCache('magcache', mag_ratios=[...]))")
    return nearest_interp(ratios, n)


def plan_schedule(cache: StepCache, transformer, timesteps, calibration: Optional[dict]) -> tuple[float, list[bool]]:
    """``(threshold, compute)`` for TeaCache or MagCache over ``timesteps``: the given threshold's schedule, or the
    smallest threshold that reaches the speed-up."""
    n = len(timesteps)
    if cache.policy == "teacache":
        changes = input_changes(transformer, timesteps, cache.modulated_input)
        coefficients = teacache_coefficients(cache, transformer.config, calibration)

        def schedule(threshold):
            if threshold <= 0:
                return [True] * n  # a zero threshold skips nothing, whatever the polynomial's sign
            return teacache_schedule(changes, threshold, coefficients, cache.first, cache.last)
    else:
        ratios = mag_ratios_for(cache, calibration, n)

        def schedule(threshold):
            return magcache_schedule(ratios, threshold, cache.max_skip, cache.retention_ratio)

    if cache.threshold is not None:
        return cache.threshold, schedule(cache.threshold)
    return threshold_for_speedup(schedule, cache.speedup, high=search_bound(schedule, n / cache.speedup))


def search_bound(schedule, target: float, start: float = 1.0, limit: float = 1e9) -> float:
    """A threshold whose schedule computes at most ``target`` steps (doubling from ``start``), the upper end of
    the bisection; ``limit`` if none does (the forced steps alone exceed the target)."""
    high = start
    while high < limit and sum(schedule(high)) > target:
        high *= 2
    return min(high, limit)


def first_block_threshold(calibration: Optional[dict], n: int, speedup: float) -> float:
    """A first-block threshold for a speed-up, from the calibrated first-block changes: the accumulated change
    since the last computed step stands in for the change the loop measures then."""
    changes = ((calibration or {}).get("first_block") or {}).get("changes")
    if changes is None:
        raise ValueError("first-block cache decides while sampling: give it a threshold (step_cache_threshold / "
                         "--step-cache-threshold), or calibrate the model (`videogen cache-calibrate --model DIR`) "
                         "so a speed-up can be turned into one")
    changes = nearest_interp(changes, n)
    def schedule(thr):
        return [True] * n if thr <= 0 else teacache_schedule(changes, thr, None, first=1, last=0)

    threshold, _ = threshold_for_speedup(schedule, speedup, high=search_bound(schedule, n / speedup))
    return threshold


# ----------------------------------------------------------------------------------------------
# One sampling run
# ----------------------------------------------------------------------------------------------


@dataclass
class StepCacheRun:
    """The cache's state while sampling: the plan (``compute`` per step; None for first-block), the per-pass
    residuals of the last computed step, and the steps actually computed."""

    cache: StepCache
    compute: Optional[list[bool]]
    threshold: float
    num_steps: int = 0
    residuals: dict = field(default_factory=dict)
    first_residual: Optional[tuple] = None  # (passes, block 0's residual) at the last computed step
    computed: list = field(default_factory=list)
    step: int = 0

    @property
    def split_first_block(self) -> bool:
        """Whether the loop runs block 0 on its own before deciding (first-block cache)."""
        return self.cache.policy == "first-block"

    def begin(self, step: int) -> None:
        """Start step ``step``."""
        self.step = step

    def planned(self, passes: Sequence) -> bool:
        """Whether the plan computes this step (True for first-block, decided later); a pass with no residual
        yet (the first step, a pass new at this step) forces it."""
        if any(p not in self.residuals for p in passes):
            return True
        return True if self.compute is None else self.compute[self.step]

    def decide(self, passes: Sequence, first_residual: Optional[torch.Tensor]) -> bool:
        """The step's decision: the plan's, and for first-block whether block 0's residual changed enough."""
        if not self.planned(passes):
            return False
        if first_residual is None or self.compute is not None:
            return True
        previous = self.first_residual
        same_passes = previous is not None and previous[0] == tuple(passes) and previous[1].shape == first_residual.shape
        return not (same_passes and first_block_unchanged(first_residual, previous[1], self.threshold))

    def store(self, passes: Sequence, residual: torch.Tensor, first_residual: Optional[torch.Tensor]) -> None:
        """Keep the residual of each pass (``residual`` holds the passes' chunks in order) and block 0's one."""
        for p, chunk in zip(passes, residual.chunk(len(passes))):
            self.residuals[p] = chunk
        if first_residual is not None:
            self.first_residual = (tuple(passes), first_residual)

    def cached(self, passes: Sequence) -> torch.Tensor:
        """The kept residuals of these passes, stacked in order."""
        return torch.cat([self.residuals[p] for p in passes])

    def observe(self, step, passes, x_in, x_first, x_out) -> None:
        """A computed step's tensors (calibration recorders use them; the cache does not)."""

    def report(self) -> dict:
        """The run's report: policy, threshold, the steps computed (indices), their number and the steps'."""
        return dict(policy=self.cache.policy, threshold=float(self.threshold), computed_steps=list(self.computed),
                    num_computed=len(self.computed), num_steps=self.num_steps)


def read_calibration(model_dir) -> Optional[dict]:
    """The ``step_cache_calibration`` stored in a model directory's generation_config.json, or None."""
    if not model_dir:
        return None
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(CALIBRATION_KEY)


def add_speed_arguments(parser) -> None:
    """``--step-cache``, ``--speedup``, ``--step-cache-threshold`` and ``--attention`` on a subcommand (generate,
    eval): the defaults are the model's generation_config.json, else no cache and PyTorch's SDPA."""
    parser.add_argument("--step-cache", dest="step_cache", choices=list(POLICIES) + ["none"], default=None,
                        help="skip the DiT's block stack at some steps, reusing its residual per guidance pass: "
                             "teacache, magcache (calibrated: videogen cache-calibrate) or first-block")
    parser.add_argument("--speedup", type=float, default=None,
                        help="target speed-up of the step cache, e.g. 2 (computes about steps / 2 steps; default "
                             "2 with --step-cache; alone: the default policy)")
    parser.add_argument("--step-cache-threshold", dest="step_cache_threshold", type=float, default=None,
                        help="the policy's threshold instead of a speed-up (0: skip nothing)")
    parser.add_argument("--attention", default=None,
                        help="attention backend of diffusers' dispatcher: native, flash, sage, xformers, flex, ... "
                             "(default: PyTorch's SDPA); it must be installed")
