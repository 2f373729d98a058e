"""Camera motion guidance as the camera pipeline and the command line build it: the nested CMG formula inside the
camera window, plain CFG outside, STG composed after it, and the passes each step asks for."""

import pytest

from _oracle import max_abs_diff, randn
from videogen.guidance import COND, NULL, TEXT_ONLY, UNCOND, Pass, camera_guidance

FULL, TEXT, NONE, UNC, PERT = (randn(2, 4, 3, 4, 6, seed=s) for s in range(40, 45))
PREDS = {COND: FULL, TEXT_ONLY: TEXT, NULL: NONE, UNCOND: UNC, Pass(skip_attention=(1,)): PERT}


def test_without_a_camera_scale_it_is_cfg_with_the_camera_in_both_passes():
    g = camera_guidance(6.0)
    assert g.passes(0, 4) == [COND, UNCOND]  # UNCOND keeps extra=True: the camera goes into both halves
    assert UNCOND.extra and max_abs_diff(g.combine(PREDS, 0, 4), UNC + 6.0 * (FULL - UNC)) < 1e-6


def test_cmg_inside_the_window_and_cfg_outside():
    g = camera_guidance(6.0, camera_scale=4.0, camera_window=(0.25, 0.75))
    cmg = NONE + 6.0 * (TEXT - NONE) + 4.0 * (FULL - TEXT)
    cfg = UNC + 6.0 * (FULL - UNC)
    for step, passes, expected in [(0, [COND, UNCOND], cfg), (1, [COND, TEXT_ONLY, NULL], cmg),
                                   (2, [COND, TEXT_ONLY, NULL], cmg), (3, [COND, UNCOND], cfg)]:
        assert g.passes(step, 4) == passes, step
        assert max_abs_diff(g.combine(PREDS, step, 4), expected) < 1e-5, step
    # The whole schedule: one guider, the formula every step.
    whole = camera_guidance(6.0, camera_scale=4.0)
    assert len(whole.guiders) == 1 and max_abs_diff(whole.combine(PREDS, 3, 4), cmg) < 1e-5


def test_stg_composes_after_cmg_in_the_same_step():
    g = camera_guidance(6.0, camera_scale=4.0, stg_scale=1.5, stg_blocks=[1], stg_mode="attention")
    assert g.passes(0, 4) == [COND, TEXT_ONLY, NULL, Pass(skip_attention=(1,))]
    eps = NONE + 6.0 * (TEXT - NONE) + 4.0 * (FULL - TEXT) + 1.5 * (FULL - PERT)
    k = FULL.flatten(1).std(1) / eps.flatten(1).std(1)
    expected = eps * (0.7 * k + 0.3).view(2, 1, 1, 1, 1)
    assert max_abs_diff(g.combine(PREDS, 0, 4), expected) < 1e-5


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="camera_scale must be >= 0"):
        camera_guidance(5.0, camera_scale=-1.0)
    with pytest.raises(ValueError, match="0 <= start <= stop <= 1"):
        camera_guidance(5.0, camera_scale=2.0, camera_window=(0.5, 0.1))
