"""Training objectives as small pure functions: rectified-flow sampling and loss, VAE reconstruction + KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_sigmas(n: int, generator: torch.Generator, logit_mean: float = 0.0, logit_std: float = 1.0,
                  shift: float = 1.0) -> torch.Tensor:
    """Noise levels in (0, 1): logit-normal ``sigmoid(N(mean, std))``, then the flow shift
    ``s*sigma / (1 + (s-1)*sigma)`` (SD3 / Wan), which moves mass to high noise for ``s > 1``."""
    sigma = torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator))
    return shift * sigma / (1 + (shift - 1) * sigma)


def flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified-flow pair: ``x_sigma = (1 - sigma) x0 + sigma noise`` and its velocity target ``noise - x0``
    (the model output diffusers' flow-matching schedulers integrate)."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise, noise - x0


def flow_matching_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between predicted and target velocity, in fp32; with ``weights`` (broadcastable to the
    prediction, e.g. ``[B, 1, F, 1, 1]``) the weighted mean ``sum(w e^2) / sum(w)`` over the broadcast elements."""
    if weights is None:
        return F.mse_loss(prediction.float(), target.float())
    error = (prediction.float() - target.float()).pow(2)
    weights = weights.float().expand_as(error)
    return (weights * error).sum() / weights.sum().clamp_min(1e-12)


def clean_first_frame(x_t: torch.Tensor, latents: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the samples where ``keep`` (``[B]`` bool) is set, latent frame 0 of the noisy input ``x_t`` is replaced by
    the clean ``latents``' frame 0; returns (input, loss weights ``[B, 1, F, 1, 1]``, 0 on those replaced frames).

    Why: in plain text-to-video training the motion words are worth almost nothing to the loss (at high noise no
    frame shows where the object is, at low noise every frame does), so a small DiT never learns them. With a clean
    first frame the motion words fix where the object is in every later frame. (Measured: 720 such steps on the
    stage-3b default did not yet make it use them; checkpoints/README.md, "Stage 1d".)"""
    b, _, f = latents.shape[:3]
    keep = keep.to(x_t.device).view(b, 1, 1, 1, 1)
    first = torch.zeros(1, 1, f, 1, 1, dtype=torch.bool, device=x_t.device)
    first[:, :, 0] = True
    replaced = keep & first
    x_t = torch.where(replaced, latents.to(x_t.dtype), x_t)
    return x_t, (~replaced).to(torch.float32)


def foreground_weights(video: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights ``[B, 1, F, H, W]`` for ``video`` ``[B, C, F, H, W]`` in [-1, 1]: ``1 + weight`` where a
    pixel differs from its frame's per-channel median (the background, when objects are small) by more than
    ``threshold`` in any channel, else 1."""
    median = video.flatten(3).median(dim=3).values[..., None, None]
    return 1.0 + weight * ((video - median).abs().amax(dim=1, keepdim=True) > threshold).float()


def latent_thumbnail(video: torch.Tensor, temporal: int = 4, spatial: int = 8) -> torch.Tensor:
    """``video`` ``[B, C, 1 + temporal*k, H, W]`` averaged onto the causal latent grid ``[B, C, 1 + k, H/s, W/s]``:
    frame 0 alone, then each group of ``temporal`` frames, each ``spatial`` x ``spatial`` block (what one latent
    pixel of a Wan-style causal VAE covers)."""
    b, c, f, h, w = video.shape
    frames = torch.cat([video[:, :, :1], video[:, :, 1:].reshape(b, c, (f - 1) // temporal, temporal, h, w).mean(3)], 2)
    return F.avg_pool3d(frames, (1, spatial, spatial))


def latent_color_anchor(latents: torch.Tensor, video: torch.Tensor, scale: float = 2.0,
                        foreground_weight: float = 0.0, temporal: int = 4, spatial: int = 8) -> torch.Tensor:
    """Mean ``|latents[:, :3] - scale * latent_thumbnail(video)|``: the first three latent channels are asked to
    carry the clip's average RGB at each latent pixel (weighted like the reconstruction by ``foreground_weights``,
    averaged onto the latent grid, when ``foreground_weight`` > 0).

    Why: a small VAE trained from scratch on six saturated colours learned brightness and blue-vs-yellow but lost
    the red-green direction in encoder and decoder alike. That is a saddle: the decoder cannot use what the latents
    lack and gives the encoder no gradient to keep it, so reconstruction losses leave it in place (measured: 300+
    steps at any lr). This term reaches the encoder's output directly and breaks the tie (the red-green latent
    distance went 1.8 -> 19, level with red-blue, in 150 steps); the decoder follows once the latents carry it."""
    target = scale * latent_thumbnail(video.float(), temporal, spatial)
    error = (latents[:, : target.shape[1]].float() - target).abs()
    if foreground_weight:
        error = error * latent_thumbnail(foreground_weights(video.float(), foreground_weight), temporal, spatial)
    return error.mean()


def vae_loss(reconstruction: torch.Tensor, video: torch.Tensor, posterior, kl_weight: float,
             mse_weight: float = 0.0, foreground_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """L1 (+ ``mse_weight`` x MSE) reconstruction + ``kl_weight`` x KL(posterior || N(0, I)), averaged per element;
    returns (loss, parts). ``foreground_weight`` > 0 weights the reconstruction terms per pixel by
    ``foreground_weights``: with small objects on flat backgrounds, a reconstruction of the background alone is a
    local minimum that a Wan VAE trained from scratch does not leave (measured: hundreds of steps, even on one clip)."""
    reconstruction, video = reconstruction.float(), video.float()
    w = foreground_weights(video, foreground_weight) if foreground_weight else None
    weigh = (lambda e: (e * w).mean()) if w is not None else (lambda e: e.mean())  # noqa: E731
    recon = weigh((reconstruction - video).abs())
    if mse_weight:
        recon = recon + mse_weight * weigh((reconstruction - video).pow(2))
    kl = 0.5 * (posterior.mean.float().pow(2) + posterior.var.float() - 1.0 - posterior.logvar.float()).mean()
    return recon + kl_weight * kl, {"recon": recon.detach(), "kl": kl.detach()}
