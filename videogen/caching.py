"""Step caching for the shared denoising loop: TeaCache, MagCache and first-block-cache decisions as pure functions.

A skipped step reuses, per guidance pass, the residual the DiT's block stack added at the last computed step
(``x_out = x_in + residual``); only the embeddings and the head run. The decisions:

    TeaCache     accumulate poly(rel_L1(e_t, e_{t-1})) over steps (e: the timestep embedding, or e0 = its
                 projection with ``ret_steps``); compute when the sum reaches the threshold, then reset it.
                 Always computed: the first ``first`` steps and the last ``last``.
    MagCache     accumulated ratio *= mag_ratio[t], error += |1 - accumulated ratio|; skip while the error stays
                 below the threshold, at most ``max_skip`` steps in a row, never in the first retention_ratio x steps.
    first-block  run block 0; skip the rest when rel_L1(its residual, the last computed one) < threshold.

TeaCache's and MagCache's decisions depend only on the timesteps, so their schedules are known before sampling,
and a target speed-up becomes a threshold by bisection (as Wan2GP does).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

# TeaCache4Wan2.1's rescaling polynomials (highest degree first), by model and modulated input (e: the timestep
# embedding; e0: its 6 x dim projection, "use_ret_steps").
TEACACHE_COEFFICIENTS = {
    ("t2v-1.3b", "e"): [2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00, 1.37887774e-01],
    ("t2v-1.3b", "e0"): [-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02],
    ("t2v-14b", "e"): [-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404],
    ("t2v-14b", "e0"): [-3.03318725e05, 4.90537029e04, -2.65530556e03, 5.87365115e01, -3.15583525e-01],
    ("i2v-14b-480p", "e"): [-3.02331670e02, 2.23948934e02, -5.25463970e01, 5.87348440e00, -2.01973289e-01],
    ("i2v-14b-480p", "e0"): [2.57151496e05, -3.54229917e04, 1.40286849e03, -1.35890334e01, 1.32517977e-01],
    ("i2v-14b-720p", "e"): [-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683],
    ("i2v-14b-720p", "e0"): [8.10705460e03, 2.13393892e03, -3.72934672e02, 1.66203073e01, -4.17769401e-02],
}


def relative_l1(current: torch.Tensor, previous: torch.Tensor) -> float:
    """``mean |current - previous| / mean |previous|``, TeaCache's change indicator."""
    return float((current.float() - previous.float()).abs().mean() / previous.float().abs().mean().clamp_min(1e-12))


def rescale(coefficients: Sequence[float], value: float) -> float:
    """The polynomial (highest degree first, as ``np.poly1d``) at ``value``."""
    return float(np.polyval(np.asarray(coefficients, dtype=np.float64), value))


def teacache_schedule(changes: Sequence[float], threshold: float, coefficients: Sequence[float] | None = None,
                      first: int = 1, last: int = 1) -> list[bool]:
    """Which steps to compute (True) given each step's ``relative_l1`` change of the modulated input from the
    previous step (``changes[0]`` is unused). Rescaled by ``coefficients`` if given (else used as is), summed
    since the last computed step; a step is computed when the sum reaches ``threshold``, and then the sum resets.
    The first ``first`` and the last ``last`` steps are always computed."""
    n = len(changes)
    compute, accumulated = [], 0.0
    for i in range(n):
        if i < first or i >= n - last:
            compute.append(True)
            accumulated = 0.0
            continue
        accumulated += rescale(coefficients, changes[i]) if coefficients is not None else changes[i]
        if accumulated >= threshold:
            compute.append(True)
            accumulated = 0.0
        else:
            compute.append(False)
    return compute


def magcache_schedule(mag_ratios: Sequence[float], threshold: float, max_skip: int = 3,
                      retention_ratio: float = 0.2) -> list[bool]:
    """Which steps to compute (True) from the calibrated per-step magnitude ratios (the norm of the residual at a
    step over the one before): skip while the accumulated error stays under ``threshold`` and at most ``max_skip``
    steps in a row; the first ``retention_ratio`` of the steps are always computed."""
    n = len(mag_ratios)
    keep = int(round(retention_ratio * n))
    compute, ratio, error, skipped = [], 1.0, 0.0, 0
    for i, r in enumerate(mag_ratios):
        if i >= keep:
            ratio *= float(r)
            error += abs(1.0 - ratio)
            if error < threshold and skipped < max_skip:
                compute.append(False)
                skipped += 1
                continue
        compute.append(True)
        ratio, error, skipped = 1.0, 0.0, 0
    return compute


def threshold_for_speedup(schedule: Callable[[float], list[bool]], speedup: float, high: float = 10.0,
                          iterations: int = 40) -> tuple[float, list[bool]]:
    """The smallest threshold whose ``schedule(threshold)`` computes at most ``len / speedup`` steps (bisection;
    schedules compute fewer steps as the threshold grows), with that schedule. A ``speedup`` of 1 computes all."""
    if speedup < 1:
        raise ValueError(f"speedup must be >= 1; got {speedup}")
    full = schedule(0.0)
    target = len(full) / speedup
    if sum(full) <= target:
        return 0.0, full
    low, best = 0.0, None
    for _ in range(iterations):
        mid = (low + high) / 2
        candidate = schedule(mid)
        if sum(candidate) <= target:
            high, best = mid, candidate
        else:
            low = mid
    if best is None:
        best = schedule(high)
    return high, best


def first_block_unchanged(residual: torch.Tensor, previous: torch.Tensor | None, threshold: float) -> bool:
    """First-block cache: whether block 0's residual changed by less than ``threshold`` (relative L1) since the
    last computed step, so the rest of the stack may be reused."""
    return previous is not None and relative_l1(residual, previous) < threshold
