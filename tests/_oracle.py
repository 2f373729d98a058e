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
