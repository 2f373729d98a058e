"""Step-cache decisions (videogen/caching.py): TeaCache's polynomial and accumulation, MagCache's error
accumulation, the target-speed-up threshold search, the first-block test; worked examples by hand."""

import pytest
import torch

from videogen.caching import (
    TEACACHE_COEFFICIENTS,
    first_block_unchanged,
    magcache_schedule,
    relative_l1,
    rescale,
    teacache_schedule,
    threshold_for_speedup,
)


def test_teacache_polynomial_is_the_published_one():
    c = TEACACHE_COEFFICIENTS[("t2v-1.3b", "e")]
    assert c == [2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00, 1.37887774e-01]
    x = 0.05
    by_hand = c[0] * x**4 + c[1] * x**3 + c[2] * x**2 + c[3] * x + c[4]
    assert rescale(c, x) == pytest.approx(by_hand, rel=1e-12)
    assert len(TEACACHE_COEFFICIENTS) == 8 and all(len(v) == 5 for v in TEACACHE_COEFFICIENTS.values())


def test_teacache_accumulates_and_resets():
    # threshold 0.55, identity rescaling: step 0 computed; 1: sum .3 skip; 2: .6 compute (reset); 3: .5 skip;
    # 4: .6 compute; 5: .5 skip; 6: .7 compute; 7: the last, always computed
    changes = [0.0, 0.3, 0.3, 0.5, 0.1, 0.5, 0.2, 0.9]
    assert teacache_schedule(changes, 0.55) == [True, False, True, False, True, False, True, True]
    assert all(teacache_schedule(changes, 0.0))  # a threshold that skips nothing
    assert teacache_schedule(changes, 100.0) == [True] + [False] * 6 + [True]
    assert teacache_schedule(changes, 100.0, first=3, last=2) == [True] * 3 + [False] * 3 + [True] * 2


def test_magcache_error_accumulation_and_limits():
    # ratios 1, 0.99, 0.98, 0.9, 1.0 ... threshold 0.05, retention 0.2 of 10 -> steps 0, 1 always computed
    ratios = [1.0, 1.0, 0.99, 0.98, 0.9, 1.0, 0.99, 0.99, 0.99, 0.99]
    # 2: ratio .99 err .01 skip; 3: ratio .9702 err .0398 skip; 4: ratio .8732 err .1666 -> compute, reset;
    # 5: 1.0 err 0 skip; 6: .99 err .01 skip; 7: .9801 err .0299 skip (3 in a row) ; 8: max_skip 3 -> compute;
    # 9: .99 err .01 skip
    assert magcache_schedule(ratios, 0.05, max_skip=3, retention_ratio=0.2) == [
        True, True, False, False, True, False, False, False, True, False]
    assert all(magcache_schedule(ratios, 0.0))


def test_threshold_for_speedup_reaches_the_target_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    changes = [0.0] + (torch.rand(49, generator=g) * 0.2).tolist()
    schedule = lambda thr: teacache_schedule(changes, thr)  # noqa: E731
    for speedup in (1.5, 2.0, 2.5):
        thr, steps = threshold_for_speedup(schedule, speedup)
        assert sum(steps) <= 50 / speedup and steps == schedule(thr)
        assert sum(schedule(thr * 0.9)) > sum(steps) or thr == 0.0  # (almost) the smallest such threshold
        assert threshold_for_speedup(schedule, speedup) == (thr, steps)
    assert threshold_for_speedup(schedule, 1.0)[1] == [True] * 50
    with pytest.raises(ValueError, match="speedup"):
        threshold_for_speedup(schedule, 0.5)


def test_relative_l1_and_first_block():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([1.5, -2.5])
    assert relative_l1(a, b) == pytest.approx(0.5 / 2.0)
    assert first_block_unchanged(a, b, 0.3) and not first_block_unchanged(a, b, 0.2)
    assert not first_block_unchanged(a, None, 1.0)
