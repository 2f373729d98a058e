"""TrajectoryAdapter: Tora's trajectory extractor and zero-initialised motion-guidance fuser for a VideoDiT's blocks."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

# ----------------------------------------------------------------------------------------------
# Small pure functions
# ----------------------------------------------------------------------------------------------


def frame_group_norm(h: torch.Tensor, grid: tuple[int, int, int], norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (a ``GroupNorm`` over the width) of DiT tokens ``h [B, N, D]`` (N = f * hh * ww) taken per
    latent frame: Tora's fuser normalises ``(b t) c h w`` feature maps, so statistics never mix frames."""
    b, n, d = h.shape
    f, hh, ww = grid
    x = h.reshape(b, f, hh * ww, d).permute(0, 1, 3, 2).reshape(b * f, d, hh * ww)
    x = norm(x)
    return x.reshape(b, f, d, hh * ww).permute(0, 1, 3, 2).reshape(b, n, d)


def fuse(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, grid, norm: nn.GroupNorm) -> torch.Tensor:
    """Tora's motion-guidance fuser ``h + GroupNorm(h) * gamma + beta`` on tokens ``h [B, N, D]``."""
    return h + frame_group_norm(h, grid, norm).to(h.dtype) * gamma.to(h.dtype) + beta.to(h.dtype)


class MotionModulation:
    """One block's fuser with its motion terms, as ``VideoDiT.forward(block_modulations=...)`` takes it: called
    on the block's normalised self-attention input ``h [B, N, D]`` it returns ``fuse(h, gamma, beta)``.

    ``gamma`` / ``beta`` are ``[B, N, D]``; a sample whose terms are zero keeps ``h`` exactly (the trajectory "off"
    inside a batched guidance pass). ``cat`` joins the passes of one step along the batch."""

    def __init__(self, gamma: torch.Tensor, beta: torch.Tensor, grid: tuple[int, int, int], norm: nn.GroupNorm):
        self.gamma, self.beta, self.grid, self.norm = gamma, beta, tuple(grid), norm

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape != self.gamma.shape:
            raise ValueError(f"the trajectory modulation is for tokens {tuple(self.gamma.shape)}; the block's input "
                             f"is {tuple(h.shape)}")
        return fuse(h, self.gamma, self.beta, self.grid, self.norm)

    @classmethod
    def cat(cls, items: Sequence["MotionModulation"]) -> "MotionModulation":
        """The modulations of several passes as one batch (the same fuser and grid)."""
        first = items[0]
        return cls(torch.cat([m.gamma for m in items]), torch.cat([m.beta for m in items]), first.grid, first.norm)

    def scaled(self, scale: torch.Tensor) -> "MotionModulation":
        """The terms times a per-sample ``scale [B]`` (0: this sample's trajectory is off)."""
        s = scale.to(self.gamma).view(-1, 1, 1)
        return MotionModulation(self.gamma * s, self.beta * s, self.grid, self.norm)

    def expand(self, batch: int) -> "MotionModulation":
        """The terms of one trajectory repeated for ``batch`` samples."""
        if self.gamma.shape[0] == batch:
            return self
        if self.gamma.shape[0] != 1:
            raise ValueError(f"cannot expand motion terms of batch {self.gamma.shape[0]} to {batch}")
        return MotionModulation(self.gamma.expand(batch, -1, -1), self.beta.expand(batch, -1, -1), self.grid,
                                self.norm)


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """Tora's extractor block, per frame: norm, ReLU, 3x3 conv, twice, plus the input (GroupNorm instead of Tora's
    BatchNorm, so a batch of a few clips trains and samples alike)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(groups, channels), nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B*f, C, h, w]``."""
        y = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(y)))


class Fuser(nn.Module):
    """One block's gamma and beta from its motion feature map: a 3x3 spatial conv, then a zero-initialised temporal
    conv (kernel 3, replicate padding), as Tora's ``flow_{gamma,beta}_{spatial,temporal}``; and the fuser's norm."""

    def __init__(self, channels: int, dim: int, groups: int, eps: float):
        super().__init__()
        self.gamma_spatial = nn.Conv2d(channels, dim, 3, padding=1)
        self.gamma_temporal = nn.Conv1d(dim, dim, 3, padding=1, padding_mode="replicate")
        self.beta_spatial = nn.Conv2d(channels, dim, 3, padding=1)
        self.beta_temporal = nn.Conv1d(dim, dim, 3, padding=1, padding_mode="replicate")
        self.norm = nn.GroupNorm(groups, dim, eps=eps)

    def terms(self, feature: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``feature [B*f, C, h, w]`` -> ``(gamma, beta)``, each ``[B, f*h*w, dim]`` in the DiT's token order."""
        bf, _, h, w = feature.shape
        f = bf // batch

        def one(spatial, temporal):
            x = spatial(feature)  # [B*f, D, h, w]
            d = x.shape[1]
            x = x.reshape(batch, f, d, h * w).permute(0, 3, 2, 1).reshape(batch * h * w, d, f)
            x = temporal(x)  # [B*h*w, D, f]
            return x.reshape(batch, h * w, d, f).permute(0, 3, 1, 2).reshape(batch, f * h * w, d)

        return one(self.gamma_spatial, self.gamma_temporal), one(self.beta_spatial, self.beta_temporal)


class TrajectoryAdapter(ModelMixin, ConfigMixin):
    """Tora's trajectory branch for a ``VideoDiT``: motion latents in, one fuser per block out.

    Tora (alibaba/Tora, ``traj_module.py``): a trajectory becomes blurred flow maps drawn as RGB by the Middlebury
    colour wheel and encoded by the video VAE (``videogen.conditioning.trajectory.tora_flow_video``); the
    **extractor** patchifies these motion latents like the DiT (``conv_in``: a ``(1, ph, pw)`` strided conv) and
    runs two ``ResBlock``\\s per DiT block, so block ``i`` reads the ``i``-th, ever deeper feature map; the
    **fuser** of block ``i`` turns its map into ``gamma``, ``beta`` (3x3 spatial conv, then a temporal conv) and
    modulates the block's normalised self-attention input ``h <- h + GroupNorm(h) * gamma + beta`` (through
    ``VideoDiT.forward(block_modulations=...)``). The temporal convs start at zero, so untrained the adapter is
    the identity, bit for bit. The motion terms do not depend on the timestep or the text: they are computed
    once per generation.

    Args:
        num_layers: DiT blocks fused (0 .. num_layers-1; Tora: all).
        dim: the DiT's width. channels: the extractor's width (Tora: 128).
        latent_channels: the VAE's latent channels. patch_size: the DiT's (1, ph, pw) patch.
        groups: GroupNorm groups of the extractor and of the fuser's norm (Tora: 32; must divide both widths).
        eps: the fuser norm's epsilon.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        num_layers: int = 30,
        dim: int = 1536,
        channels: int = 128,
        latent_channels: int = 16,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        groups: int = 32,
        eps: float = 1e-6,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1; got {num_layers}")
        if patch_size[0] != 1:
            raise ValueError(f"TrajectoryAdapter needs a temporal patch of 1; got patch_size={tuple(patch_size)}")
        for name, width in (("channels", channels), ("dim", dim)):
            if width % groups:
                raise ValueError(f"groups ({groups}) must divide {name} ({width})")
        patch = tuple(patch_size)
        self.conv_in = nn.Conv3d(latent_channels, channels, kernel_size=patch, stride=patch)
        self.body = nn.ModuleList(
            [nn.Sequential(ResBlock(channels, groups), ResBlock(channels, groups)) for _ in range(num_layers)]
        )
        self.fusers = nn.ModuleList([Fuser(channels, dim, groups, eps) for _ in range(num_layers)])
        self.zero_outputs()

    def zero_outputs(self) -> None:
        """Zero every fuser's temporal convs (weights and biases): gamma = beta = 0, the adapter's identity start."""
        for fuser in self.fusers:
            for conv in (fuser.gamma_temporal, fuser.beta_temporal):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    @classmethod
    def for_transformer(cls, transformer, num_layers: Optional[int] = None, channels: int = 64,
                        latent_channels: Optional[int] = None, groups: int = 16, **kwargs) -> "TrajectoryAdapter":
        """An untrained adapter sized for ``transformer`` (a ``VideoDiT``): every block by default, its width and
        patch, its noisy-latent channels; ``groups`` lowered to the largest that divides both widths."""
        cfg = transformer.config
        num_layers = cfg.num_layers if num_layers is None else num_layers
        groups = math.gcd(math.gcd(groups, cfg.dim), channels)  # the largest that divides both widths
        if num_layers > cfg.num_layers:
            raise ValueError(f"num_layers ({num_layers}) exceeds the DiT's {cfg.num_layers} blocks")
        return cls(num_layers=num_layers, dim=cfg.dim, channels=channels,
                   latent_channels=latent_channels or cfg.out_channels, patch_size=tuple(cfg.patch_size),
                   groups=groups, eps=cfg.eps, **kwargs)

    def check_inputs(self, motion: torch.Tensor) -> None:
        """The motion latents against the config; a mismatch is a ``ValueError`` naming it."""
        cfg = self.config
        if not isinstance(motion, torch.Tensor) or motion.ndim != 5 or motion.shape[1] != cfg.latent_channels:
            shape = tuple(motion.shape) if isinstance(motion, torch.Tensor) else type(motion).__name__
            raise ValueError(f"motion latents must be [B, {cfg.latent_channels}, F', h, w] (the VAE's latents of the "
                             f"flow video); got {shape}")
        _, ph, pw = cfg.patch_size
        if motion.shape[3] % ph or motion.shape[4] % pw:
            raise ValueError(f"motion latent height/width {tuple(motion.shape[3:])} must be multiples of the patch "
                             f"({ph}, {pw})")

    def forward(self, motion: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(gamma, beta)`` per fused block, each ``[B, N, dim]`` (N the DiT's tokens), from the motion latents
        ``[B, latent_channels, F', h, w]``."""
        self.check_inputs(motion)
        dtype = self.conv_in.weight.dtype
        x = self.conv_in(motion.to(dtype))  # [B, C, f, hh, ww]
        b, c, f, hh, ww = x.shape
        x = x.transpose(1, 2).reshape(b * f, c, hh, ww)
        terms = []
        for body, fuser in zip(self.body, self.fusers):
            x = body(x)
            terms.append(fuser.terms(x, b))
        return terms

    def block_modulations(
        self, motion: torch.Tensor, num_layers: int, scale: Optional[Union[float, torch.Tensor]] = None,
    ) -> list[Optional[MotionModulation]]:
        """``forward``'s terms as ``VideoDiT.forward(block_modulations=...)`` for a DiT of ``num_layers`` blocks:
        one ``MotionModulation`` per fused block (times ``scale``, a number or ``[B]``; default 1), None after."""
        if self.config.num_layers > num_layers:
            raise ValueError(f"the trajectory adapter fuses {self.config.num_layers} blocks but the DiT has only "
                             f"{num_layers}")
        terms = self(motion)
        b = motion.shape[0]
        _, ph, pw = self.config.patch_size
        grid = (motion.shape[2], motion.shape[3] // ph, motion.shape[4] // pw)
        mods = [MotionModulation(g, bt, grid, fuser.norm) for (g, bt), fuser in zip(terms, self.fusers)]
        if scale is not None:
            s = torch.as_tensor(scale, dtype=torch.float32, device=motion.device)
            s = s.expand(b) if s.ndim == 0 else s
            if s.shape != (b,):
                raise ValueError(f"scale must be a number or a [B={b}] tensor; got shape {tuple(s.shape)}")
            mods = [m.scaled(s) for m in mods]
        return mods + [None] * (num_layers - len(mods))
