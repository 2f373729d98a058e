"""Helpers for the oracle tests: perturbed reference weights and error measures."""

from __future__ import annotations

import torch


@torch.no_grad()
def perturb_parameters(model: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> torch.nn.Module:
    """Add ``scale * N(0, 1)`` to every parameter (fixed generator), so zero-initialised layers and unit
    norm gains cannot hide a wrong key map."""
    gen = torch.Generator().manual_seed(seed)
    for _, param in sorted(model.named_parameters()):
        param.add_(scale * torch.randn(param.shape, generator=gen, dtype=torch.float32).to(param.dtype))
    return model


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute elementwise difference, in float64."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def randn(*shape: int, seed: int) -> torch.Tensor:
    """A standard normal tensor from its own generator."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def camera_guided_loop(e, x, pos, neg, camera, null_camera, steps: int, guidance_scale: float, camera_scale: float,
                       strength: float, window) -> torch.Tensor:
    """A camera pipeline's sampling loop written out, for the oracle tests: UniPC over ``steps``; inside the camera
    window (fractions of the steps; never at strength 0) the camera is on, else ``None``; with CMG
    (``camera_scale > 0``, camera on) ``n + g (text - n) + s (full - text)`` against ``null_camera``, else CFG with
    the camera in both passes. ``e(x, t, text, camera)`` is one DiT evaluation."""
    from pipelines import make_scheduler

    scheduler = make_scheduler("unipc")
    scheduler.set_timesteps(steps)
    for i, t in enumerate(scheduler.timesteps):
        on = window[0] <= i / steps < window[1] and strength != 0
        cam = camera if on else None
        if camera_scale > 0 and on:
            n, text_only, full = e(x, t, neg, null_camera), e(x, t, pos, null_camera), e(x, t, pos, cam)
            pred = n + guidance_scale * (text_only - n) + camera_scale * (full - text_only)
        else:
            u, c = e(x, t, neg, cam), e(x, t, pos, cam)
            pred = u + guidance_scale * (c - u)
        x = scheduler.step(pred, t, x).prev_sample
    return x
