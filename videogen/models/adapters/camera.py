"""CameraControlNet: our own VD3D/AC3D-style camera branch, whose zero-initialised outputs join a VideoDiT's blocks."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from videogen.models.transformer import (
    SelfAttention, layer_norm, modulate, rope_axis_dims, rope_cos_sin, timestep_embedding,
)

# ----------------------------------------------------------------------------------------------
# Small pure functions
# ----------------------------------------------------------------------------------------------


def expand_residuals(residuals: Sequence[torch.Tensor], num_layers: int) -> list[Optional[torch.Tensor]]:
    """The adapter's per-block outputs as ``VideoDiT.forward(block_residuals=...)``: one entry per main block,
    the adapter's ``i``-th output after main block ``i``, None for the blocks after the last one."""
    if len(residuals) > num_layers:
        raise ValueError(f"the camera adapter has {len(residuals)} blocks but the DiT only {num_layers}; it can be "
                         "injected after main blocks 0..N-1 only when N <= the DiT's blocks")
    return list(residuals) + [None] * (num_layers - len(residuals))


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


class ControlBlock(nn.Module):
    """A DiT-XS block: timestep-modulated self-attention (3D RoPE) and feed-forward, no text (AC3D's thin blocks;
    the camera does not depend on the prompt)."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float):
        super().__init__()
        self.eps = eps
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``x [B, N, dim]``; ``e [B, 1|N, 6, dim]`` the projected timestep."""
        shift, scale, gate, f_shift, f_scale, f_gate = (self.modulation.unsqueeze(0) + e.float()).unbind(2)
        h = modulate(layer_norm(x, self.eps), shift, scale).type_as(x)
        x = torch.addcmul(x.float(), self.self_attn(h, rope).float(), gate).type_as(x)
        h = modulate(layer_norm(x, self.eps), f_shift, f_scale).type_as(x)
        return torch.addcmul(x.float(), self.ffn(h).float(), f_gate).type_as(x)


class CameraControlNet(ModelMixin, ConfigMixin):
    """A thin ControlNet branch that turns packed Plücker rays into residuals for a ``VideoDiT``'s early blocks.

    VD3D: video and Plücker frames become patch tokens and a ControlNet-like branch conditions the main
    transformer through zero-initialised linear layers; AC3D: the branch is thin (its own, small width), injected
    only into the first blocks, and the camera matters in the high-noise steps. Here:

    - **video tokens**: the branch's own patch embedding of the DiT's input latents (their first
      ``latent_channels`` channels: the noisy latents in every Wan layout, so the same adapter fits text-to-video,
      Fun and Wan-I2V-layout bases; set it to the DiT's ``in_channels`` to read the image condition too);
    - **camera tokens**: the packed camera ``[B, 24, F', H, W]`` (``plucker_rays`` + ``pack_camera``) cut into
      ``(downscale * ph) x (downscale * pw)`` pixel patches per latent frame, one linear map each (a strided
      convolution), so camera token ``n`` covers exactly the pixels of the DiT's patch token ``n``;
    - their sum goes through ``num_layers`` ``ControlBlock``\\s modulated by the branch's own timestep embedding;
    - output ``i`` is ``proj_out[i]`` (zero-initialised ``Linear(dim, out_dim)``) of block ``i``'s output, added
      after main block ``i`` through ``VideoDiT.forward(block_residuals=...)``.

    Untrained, every output is exactly zero, so the DiT's result is unchanged bit for bit.

    Args:
        num_layers: branch blocks = main blocks injected (0..num_layers-1).
        dim, num_heads, ffn_dim: the branch's width (head dim even, >= 6), heads and feed-forward width.
        out_dim: the main DiT's width.
        latent_channels: input latent channels the branch reads.
        patch_size: the main DiT's (t, h, w) patch; t must be 1 (the packed camera has one slot per latent frame).
        camera_channels: packed camera channels (24). camera_downscale: pixels per latent pixel (the VAE's 8).
        freq_dim: sinusoid size of the timestep embedding. eps: norms' epsilon. rope_theta: rotary base.
    """

    _supports_gradient_checkpointing = True
    _keep_in_fp32_modules = ["time_embedding", "modulation"]

    @register_to_config
    def __init__(
        self,
        num_layers: int = 8,
        dim: int = 128,
        num_heads: int = 4,
        ffn_dim: int = 512,
        out_dim: int = 1536,
        latent_channels: int = 16,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        camera_channels: int = 24,
        camera_downscale: int = 8,
        freq_dim: int = 256,
        eps: float = 1e-6,
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2 or min(rope_axis_dims(dim // num_heads)) <= 0:
            raise ValueError(f"dim ({dim}) / num_heads ({num_heads}) must give an even head dim of at least 6")
        if patch_size[0] != 1:
            raise ValueError(f"CameraControlNet needs a temporal patch of 1 (one packed camera slot per latent "
                             f"frame); got patch_size={tuple(patch_size)}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1; got {num_layers}")
        patch = tuple(patch_size)
        self.patch_embedding = nn.Conv3d(latent_channels, dim, kernel_size=patch, stride=patch)
        pixels = (camera_downscale * patch[1], camera_downscale * patch[2])
        self.camera_embedding = nn.Conv2d(camera_channels, dim, kernel_size=pixels, stride=pixels)
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList([ControlBlock(dim, ffn_dim, num_heads, eps) for _ in range(num_layers)])
        self.proj_out = nn.ModuleList([nn.Linear(dim, out_dim) for _ in range(num_layers)])
        self.gradient_checkpointing = False
        self.zero_outputs()

    def zero_outputs(self) -> None:
        """Zero every output projection (weights and biases): the adapter then adds nothing (its initial state)."""
        for proj in self.proj_out:
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    @classmethod
    def for_transformer(cls, transformer, num_layers: int = 2, dim: Optional[int] = None, num_heads: int = 4,
                        ffn_dim: Optional[int] = None, latent_channels: Optional[int] = None, vae=None, **kwargs):
        """An untrained adapter sized for ``transformer`` (a ``VideoDiT``): its width, patch and noisy-latent
        channels, and with ``vae`` its spatial compression (``camera_downscale``; else 8, Wan2.1's); the branch
        width defaults to a quarter of the DiT's (at least 24), ``ffn_dim`` to 4x that."""
        cfg = transformer.config
        if vae is not None:
            kwargs.setdefault("camera_downscale", vae.spatial_compression)
        if num_layers > cfg.num_layers:
            raise ValueError(f"num_layers ({num_layers}) exceeds the DiT's {cfg.num_layers} blocks")
        dim = dim if dim is not None else max(24, cfg.dim // 4 // num_heads * num_heads)
        return cls(num_layers=num_layers, dim=dim, num_heads=num_heads, ffn_dim=ffn_dim or 4 * dim,
                   out_dim=cfg.dim, latent_channels=latent_channels or cfg.out_channels,
                   patch_size=tuple(cfg.patch_size), freq_dim=cfg.freq_dim, eps=cfg.eps,
                   rope_theta=cfg.rope_theta, **kwargs)

    def _rope(self, grid: tuple[int, int, int], device):
        """RoPE tables for the token grid, remembered for the last grid (every denoising step reuses them)."""
        cache = self.__dict__.setdefault("_rope_cache", {})
        key = (grid, str(device))
        if key not in cache:
            cache.clear()
            cache[key] = rope_cos_sin(grid, self.config.dim // self.config.num_heads, self.config.rope_theta, device)
        return cache[key]

    def check_inputs(self, latents: torch.Tensor, timestep: torch.Tensor, camera: torch.Tensor) -> None:
        """Shapes of the inputs against the config and each other; a mismatch is a ``ValueError`` naming it."""
        cfg = self.config
        if latents.ndim != 5 or latents.shape[1] < cfg.latent_channels:
            raise ValueError(f"latents must be [B, >= {cfg.latent_channels}, F, H, W] (config latent_channels); "
                             f"got {tuple(latents.shape)}")
        b, _, f, h, w = latents.shape
        _, ph, pw = cfg.patch_size
        if h % ph or w % pw:
            raise ValueError(f"latent height/width ({h}, {w}) must be multiples of the patch ({ph}, {pw})")
        expected = (b, cfg.camera_channels, f, h * cfg.camera_downscale, w * cfg.camera_downscale)
        if not isinstance(camera, torch.Tensor) or tuple(camera.shape) != expected:
            shape = tuple(camera.shape) if isinstance(camera, torch.Tensor) else type(camera).__name__
            raise ValueError(f"camera must be {list(expected)} (the packed rays at pixel resolution for these "
                             f"latents); got {shape}")
        n = f * (h // ph) * (w // pw)
        if timestep.shape not in ((b,), (b, n)):
            raise ValueError(f"timestep must be [B={b}] or [B, N={n}]; got {tuple(timestep.shape)}")

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        camera: torch.Tensor,
        camera_scale: Optional[Union[float, torch.Tensor]] = None,
    ) -> list[torch.Tensor]:
        """The residuals ``[num_layers x [B, N, out_dim]]`` for main blocks ``0..num_layers-1``.

        Args:
            latents: the DiT's input ``[B, C >= latent_channels, F, H, W]`` (its first ``latent_channels`` read).
            timestep: ``[B]`` (or ``[B, N]`` per token) in [0, 1000), as the DiT gets it.
            camera: packed camera rays ``[B, camera_channels, F, H * downscale, W * downscale]``.
            camera_scale: a number or ``[B]`` multiplying the outputs (the camera strength); samples at 0 are not
                run and get exact zeros (the camera "off" inside a batched guidance pass).
        """
        timestep = torch.as_tensor(timestep, device=latents.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(latents.shape[0])
        self.check_inputs(latents, timestep, camera)
        b = latents.shape[0]
        scale = torch.as_tensor(1.0 if camera_scale is None else camera_scale, dtype=torch.float32,
                                device=latents.device)
        scale = scale.expand(b) if scale.ndim == 0 else scale
        if scale.shape != (b,):
            raise ValueError(f"camera_scale must be a number or a [B={b}] tensor; got shape {tuple(scale.shape)}")
        on = scale.nonzero().flatten()
        _, _, f, h, w = latents.shape
        _, ph, pw = self.config.patch_size
        n = f * (h // ph) * (w // pw)
        dtype = self.patch_embedding.weight.dtype
        if on.numel() == 0:
            return [latents.new_zeros(b, n, self.config.out_dim, dtype=dtype) for _ in self.blocks]
        some = on.numel() < b
        pick = (lambda t: t[on]) if some else (lambda t: t)  # noqa: E731
        outs = self._branch(pick(latents[:, : self.config.latent_channels]).to(dtype), pick(timestep),
                            pick(camera).to(dtype), (f, h // ph, w // pw))
        weight = scale[on].view(-1, 1, 1)
        if not some:
            return [o * weight.to(o.dtype) for o in outs]
        full = []
        for o in outs:
            z = o.new_zeros(b, *o.shape[1:])
            z[on] = o * weight.to(o.dtype)
            full.append(z)
        return full

    def _branch(self, latents, timestep, camera, grid) -> list[torch.Tensor]:
        """The branch on the samples that run: tokens, blocks, output projections."""
        x = self.patch_embedding(latents).flatten(2).transpose(1, 2)  # [B, N, dim]
        b, c, f, hp, wp = camera.shape
        frames = camera.transpose(1, 2).reshape(b * f, c, hp, wp)
        cam = self.camera_embedding(frames).unflatten(0, (b, f))  # [B, F, dim, h, w]
        x = (x + cam.permute(0, 1, 3, 4, 2).reshape(b, -1, cam.shape[2])).contiguous()
        t = timestep if timestep.ndim == 2 else timestep[:, None]
        freq = timestep_embedding(t, self.config.freq_dim).to(self.time_embedding[0].weight.dtype)
        temb = self.time_embedding(freq).to(self.time_projection[1].weight.dtype)
        e = self.time_projection(temb).unflatten(-1, (6, -1))
        rope = self._rope(grid, x.device)
        outs = []
        for block, proj in zip(self.blocks, self.proj_out):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, e, rope)
            else:
                x = block(x, e, rope)
            outs.append(proj(x))
        return outs

    def block_residuals(self, latents, timestep, camera, num_layers: int, camera_scale=None):
        """``forward``'s outputs as the DiT's ``block_residuals`` argument for a DiT of ``num_layers`` blocks."""
        return expand_residuals(self(latents, timestep, camera, camera_scale), num_layers)

