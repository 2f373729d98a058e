"""Per-channel latent statistics of a VAE over a dataset: what ``normalize_latents`` divides by."""

from __future__ import annotations

import torch


@torch.no_grad()
def latent_statistics(vae, dataset, limit: int = 256, batch_size: int = 4) -> tuple[list[float], list[float]]:
    """Mean and standard deviation per latent channel of ``vae.encode(video).latent_dist.mode()`` over the first
    ``limit`` samples of ``dataset`` (dicts with ``video`` ``[3, F, H, W]`` in [-1, 1]), accumulated in float64."""
    device = next(vae.parameters()).device
    total = sq = None
    count = 0
    n = min(limit, len(dataset))
    if n == 0:
        raise ValueError("cannot compute latent statistics of an empty dataset")
    for start in range(0, n, batch_size):
        video = torch.stack([dataset[i]["video"] for i in range(start, min(start + batch_size, n))]).to(device)
        z = vae.encode(video, streaming=False).latent_dist.mode().double().transpose(0, 1).flatten(1)  # [C, N]
        total = z.sum(1) if total is None else total + z.sum(1)
        sq = z.square().sum(1) if sq is None else sq + z.square().sum(1)
        count += z.shape[1]
    mean = total / count
    std = (sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def store_latent_statistics(vae, mean: list[float], std: list[float]) -> None:
    """Write the statistics into the VAE's config, so ``save_pretrained`` keeps them and pipelines use them."""
    vae.register_to_config(latents_mean=list(mean), latents_std=list(std))
