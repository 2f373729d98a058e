"""Building blocks of the causal video VAE (Wan2.1): causal conv, RMS norm, residual block, spatial attention,
resampling, and the explicit cache that carries temporal context from one chunk of frames to the next.

Every temporal layer takes an optional ``cache``. With ``cache=None`` a layer sees the whole clip at once
(full-sequence path); with a ``CausalCache`` it sees one chunk and keeps the frames the next chunk needs
(streaming path). Both paths compute the same numbers: causal convolutions only ever look backwards, and the
resampling layers implement Wan's "first frame is special" rule in both forms.
"""

from __future__ import annotations

import math

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalCache:
    """The frames each temporal layer saw last, keyed by the layer itself (no global index lists).

    One cache lives for one pass over one clip; the streaming encoder/decoder create it and pass it down.
    """

    def __init__(self) -> None:
        self._frames: dict[nn.Module, Optional[torch.Tensor]] = {}

    def __contains__(self, layer: nn.Module) -> bool:
        return layer in self._frames

    def get(self, layer: nn.Module) -> Optional[torch.Tensor]:
        """The frames stored for ``layer`` (None when it has not run yet)."""
        return self._frames.get(layer)

    def set(self, layer: nn.Module, frames: Optional[torch.Tensor]) -> None:
        """Store ``frames`` for ``layer``'s next call (cloned so the chunk they came from can be freed)."""
        self._frames[layer] = None if frames is None else frames.clone()


def per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D op ``fn`` to every frame of ``x`` [B,C,T,H,W] (frames folded into the batch)."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class CausalConv3d(nn.Conv3d):
    """A Conv3d that pads time only in front (with zeros), so output frame t sees input frames <= t.

    Spatial padding is symmetric zeros. With a cache, the front padding is replaced by the frames the
    previous chunk ended with, which makes chunked and full-sequence results identical.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple = 3, padding: int | tuple = 0):
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        pad_t, pad_h, pad_w = (padding,) * 3 if isinstance(padding, int) else padding
        self.context = 2 * pad_t  # past frames each output looks at
        self.spatial_pad = (pad_w, pad_w, pad_h, pad_h)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        front = self.context
        if cache is not None and self.context:
            past = cache.get(self)
            if past is not None:  # the previous chunk's last frames replace (part of) the zero padding
                x = torch.cat([past, x], dim=2)
                front -= past.shape[2]
            cache.set(self, x[:, :, -self.context :])
        return super().forward(F.pad(x, (*self.spatial_pad, front, 0)))


class ChannelRMSNorm(nn.Module):
    """Wan's norm: ``x / ||x||_channels * sqrt(C) * gamma`` at every pixel; no bias, no mean subtraction."""

    def __init__(self, dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *(1,) * spatial_dims))  # (C,1,1,1) for video, (C,1,1) for frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_precision = x.dtype in (torch.float16, torch.bfloat16)  # normalise in fp32 there, as the reference does
        normed = F.normalize(x.float() if low_precision else x, dim=1).to(x.dtype)
        return normed * self.scale * self.gamma


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own (``[B, C, T, H, W]`` or ``[N, C, H, W]``): causal, so streaming and
    full-sequence paths stay equal. The alternative to ``ChannelRMSNorm`` for small VAEs trained from scratch: it
    subtracts each frame's mean, so a small object on a flat background is not drowned by the constant component
    (``CausalVideoVAE(norm_type="group")``)."""

    def __init__(self, dim: int, groups: int = 8) -> None:
        super().__init__(math.gcd(dim, groups), dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return super().forward(x)
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


class ResBlock(nn.Module):
    """norm -> SiLU -> causal conv3 -> norm -> SiLU -> dropout -> causal conv3, plus a 1x1x1 shortcut on a
    channel change. The only place gradient checkpointing applies (full-sequence path only)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_dim)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = ChannelRMSNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        self.shortcut = nn.Conv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()
        self.gradient_checkpointing = False  # switched by ModelMixin.enable_gradient_checkpointing

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        if self.gradient_checkpointing and cache is None and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(self._residual, x)
        return self._residual(x, cache)

    def _residual(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))), cache)
        return h + self.shortcut(x)


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (frames never attend to each other)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim, spatial_dims=2)
        self.to_qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + per_frame(self._attend, x)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(n, 1, 3 * c, h * w).transpose(2, 3)  # [N, 1 head, HW, 3C]
        q, k, v = qkv.chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))


class MidBlock(nn.Module):
    """The bottleneck of encoder and decoder: residual block, spatial attention, residual block."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResBlock(dim, dim, dropout), ResBlock(dim, dim, dropout)])
        self.attention = SpatialAttention(dim)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attention(x), cache)


class Downsample(nn.Module):
    """Halve height and width (pad right/bottom by one, 3x3 stride-2 conv); with ``temporal``, halve time too.

    Wan's time rule: output frame 0 is input frame 0; the other outputs are an unpadded stride-2 temporal
    conv over *all* input frames (frame 0 included), so 1+2k frames become 1+k.
    """

    def __init__(self, dim: int, temporal: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2)
        self.time_conv = nn.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1)) if temporal else None

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        x = per_frame(lambda f: self.conv(F.pad(f, (0, 1, 0, 1))), x)
        if self.time_conv is None:
            return x
        if cache is None:  # whole clip: frame 0 kept, stride-2 windows (0,1,2), (2,3,4), ... for the rest
            return x if x.shape[2] == 1 else torch.cat([x[:, :, :1], self.time_conv(x)], dim=2)
        past = cache.get(self)
        cache.set(self, x[:, :, -1:])
        if past is None:  # the first chunk is frame 0 alone: it passes through
            return x
        return self.time_conv(torch.cat([past, x], dim=2))  # windows start at the previous chunk's last frame


class Upsample(nn.Module):
    """Double height and width (nearest-exact, then a 3x3 conv to ``out_dim``); with ``temporal``, double time too.

    Wan's time rule: frame 0 stays one frame and skips the temporal conv; the later frames go through a causal
    conv (C -> 2C) that never sees frame 0, and the two channel halves become two consecutive frames.
    """

    def __init__(self, dim: int, out_dim: int, temporal: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, 3, padding=1)
        self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0)) if temporal else None

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        if self.time_conv is not None:
            if cache is None:
                x = torch.cat([x[:, :, :1], self._double_frames(x[:, :, 1:])], dim=2)
            elif self in cache:
                x = self._double_frames(x, cache)
            else:  # first chunk = frame 0: passes through; remember that it has been seen
                cache.set(self, None)
        return per_frame(self._upsample_2d, x)

    def _upsample_2d(self, f: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(f.float(), scale_factor=2.0, mode="nearest-exact").to(f.dtype))

    def _double_frames(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if t == 0:
            return x
        y = self.time_conv(x, cache).reshape(b, 2, c, t, h, w)
        return y.permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)  # frame i -> frames 2i (half 0), 2i+1 (half 1)


class Stage(nn.Module):
    """Residual blocks at one resolution, then an optional resample (Downsample or Upsample)."""

    def __init__(self, in_dim: int, out_dim: int, num_blocks: int, dropout: float, resample: Optional[nn.Module]):
        super().__init__()
        dims = [in_dim] + [out_dim] * num_blocks
        self.resnets = nn.ModuleList(ResBlock(a, b, dropout) for a, b in zip(dims[:-1], dims[1:]))
        self.resample = resample

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        return x if self.resample is None else self.resample(x, cache)
