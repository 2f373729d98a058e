"""Guidance math against diffusers' guiders and the published formulas; windows and pass bookkeeping."""

import logging

import pytest
import torch
from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

from _oracle import max_abs_diff, randn
from videogen.guidance import (
    APG, CFG, COND, NULL, STG, TEXT_ONLY, UNCOND, CFGZeroStar, Guidance, MultiCondition, Pass,
)

logging.getLogger("diffusers").setLevel(logging.ERROR)  # the guiders warn that they are experimental

C, U = randn(2, 4, 3, 4, 6, seed=1), randn(2, 4, 3, 4, 6, seed=2)


def reference(guider, step=0, steps=10, cond=C, uncond=U):
    guider.set_state(step, steps, torch.tensor(500.0))
    return guider.forward(cond, uncond).pred


@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_cfg_matches_diffusers(rescale):
    ours = Guidance(CFG(4.5, rescale=rescale)).combine({COND: C, UNCOND: U}, 0, 10)
    ref = reference(ClassifierFreeGuidance(guidance_scale=4.5, guidance_rescale=rescale))
    assert max_abs_diff(ours, ref) < 1e-6


def test_cfg_zero_star_matches_diffusers():
    g = Guidance(CFGZeroStar(4.0, zero_init_steps=1))
    ref = ClassifierFreeZeroStarGuidance(guidance_scale=4.0, zero_init_steps=1)
    for step in (0, 3):
        assert max_abs_diff(g.combine({COND: C, UNCOND: U}, step, 10), reference(ref, step)) < 1e-6
    assert torch.equal(g.combine({COND: C, UNCOND: U}, 0, 10), torch.zeros_like(C))


def test_apg_matches_original_formulation_with_momentum():
    """APG (Sadat et al.): c + (w-1) * update; diffusers' original formulation is c + g * update, so g = w - 1."""
    ours = Guidance(APG(5.0, eta=0.5, norm_threshold=3.0, momentum=-0.5))
    ref = AdaptiveProjectedGuidance(guidance_scale=4.0, adaptive_projected_guidance_momentum=-0.5,
                                    adaptive_projected_guidance_rescale=3.0, eta=0.5, use_original_formulation=True)
    ours.reset()
    ref.momentum_buffer = MomentumBuffer(-0.5)  # diffusers creates it in prepare_inputs, which we bypass
    for step in range(3):  # momentum accumulates across steps
        c, u = C + 0.1 * step, U - 0.2 * step
        got = ours.combine({COND: c, UNCOND: u}, step, 10)
        assert max_abs_diff(got, reference(ref, step, cond=c, uncond=u)) < 1e-5, step


def test_stg_formula_and_rescale():
    perturbed = randn(2, 4, 3, 4, 6, seed=3)
    stg = STG(1.5, blocks=[2], mode="attention", rescale=0.7)
    preds = {COND: C, UNCOND: U, stg.perturbed: perturbed}
    eps = U + 5.0 * (C - U) + 1.5 * (C - perturbed)
    k = C.flatten(1).std(1) / eps.flatten(1).std(1)
    k = 0.7 * k + 0.3
    expected = eps * k.view(2, 1, 1, 1, 1)
    assert max_abs_diff(Guidance(CFG(5.0), stg).combine(preds, 0, 10), expected) < 1e-5
    no_rescale = Guidance(CFG(5.0), STG(1.5, blocks=[2], mode="attention", rescale=1.0)).combine(preds, 0, 10)
    assert max_abs_diff(no_rescale, eps) < 1e-5
    assert stg.perturbed == Pass(skip_attention=(2,)) and STG(1, [1, 3]).perturbed == Pass(skip_blocks=(1, 3))


def test_multi_condition_nested_formula():
    a, b = randn(2, 4, 3, 4, 6, seed=4), randn(2, 4, 3, 4, 6, seed=5)
    preds = {COND: C, TEXT_ONLY: b, NULL: a}
    got = Guidance(MultiCondition(6.0, extra_scale=4.0)).combine(preds, 0, 10)
    assert max_abs_diff(got, a + 6.0 * (b - a) + 4.0 * (C - b)) < 1e-5
    # Equal scales collapse to plain CFG between the fully conditioned and the null prediction.
    same = Guidance(MultiCondition(3.0, extra_scale=3.0)).combine(preds, 0, 10)
    assert max_abs_diff(same, a + 3.0 * (C - a)) < 1e-5


def test_passes_windows_and_noop_scales():
    g = Guidance(CFG(5.0, stop=0.5), STG(1.0, blocks=[1], start=0.2), STG(0.0, blocks=[3]))
    assert g.passes(0, 10) == [COND, UNCOND]
    assert g.passes(3, 10) == [COND, UNCOND, Pass(skip_blocks=(1,))]
    assert g.passes(7, 10) == [COND, Pass(skip_blocks=(1,))]
    assert Guidance(CFG(1.0)).passes(0, 10) == [COND]  # CFG at scale <= 1 is off, as in diffusers
    # Outside its window a guider leaves the prediction untouched.
    assert torch.equal(Guidance(CFG(5.0, start=0.5)).combine({COND: C, UNCOND: U}, 1, 10), C)
