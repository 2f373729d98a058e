"""CausalVideoVAE: the Wan2.1 causal 3D VAE (4x temporal, 8x spatial compression) with a streaming and a
full-sequence path, spatial tiling, and the latent normalisation pipelines use.

Video [B,3,F,H,W] in [-1,1] with F = 1+4k  ->  latents [B,z,1+k,H/8,W/8]  ->  video again.

Causality is what makes the two paths equal. Every temporal conv looks only backwards, and frame 0 is
special (kept alone by the temporal downsample, never mixed into later frames by the temporal upsample), so

* the **streaming** path (encoder over frame chunks 1,4,4,..., decoder one latent frame at a time, a
  ``CausalCache`` carrying the last frames each layer saw) keeps memory flat in the number of frames, and
* the **full-sequence** path (one pass over all frames, zero front-padding) is simpler and faster for short clips,

and both give the numbers of diffusers' ``AutoencoderKLWan`` (the oracle) and of the original Wan2.1 VAE.
Blocks live in ``vae_blocks.py``; checkpoint conversion in ``videogen/convert/wan_vae.py``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

from videogen.models.vae_blocks import (
    CausalCache,
    CausalConv3d,
    ChannelRMSNorm,
    Downsample,
    FrameGroupNorm,
    MidBlock,
    Stage,
    Upsample,
)
from videogen.validation import check_num_frames, check_same_device_dtype, check_video_tensor

# Per-channel statistics of Wan2.1 latents (from the released VAE); normalize_latents uses them.
WAN_LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)  # fmt: skip
WAN_LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                   3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)  # fmt: skip


class Encoder(nn.Module):
    """Video [B,C,F,H,W] -> ``2*z_dim`` channels (mean, log-variance) at 1+(F-1)/4 frames and H/8 x W/8."""

    def __init__(self, base_dim, z_dim, dim_mult, num_res_blocks, temporal_downsample, dropout, in_channels=3):
        super().__init__()
        dims = [base_dim * m for m in (1, *dim_mult)]
        self.conv_in = CausalConv3d(in_channels, dims[0], 3, padding=1)
        self.stages = nn.ModuleList()
        for s, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            down = Downsample(d_out, temporal_downsample[s]) if s < len(dim_mult) - 1 else None
            self.stages.append(Stage(d_in, d_out, num_res_blocks, dropout, down))
        self.mid = MidBlock(dims[-1], dropout)
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], 2 * z_dim, 3, padding=1)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        x = self.conv_in(x, cache)
        for stage in self.stages:
            x = stage(x, cache)
        x = self.mid(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class Decoder(nn.Module):
    """Latents [B,z,T,h,w] -> video [B,C,1+4(T-1),8h,8w]. Each stage has ``num_res_blocks+1`` residual blocks and
    its upsample halves the channels (so the next stage starts at half width, as in Wan2.1)."""

    def __init__(self, base_dim, z_dim, dim_mult, num_res_blocks, temporal_upsample, dropout, out_channels=3):
        super().__init__()
        dims = [base_dim * m for m in (dim_mult[-1], *reversed(dim_mult))]
        self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid = MidBlock(dims[0], dropout)
        self.stages = nn.ModuleList()
        for s, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            d_in = d_in // 2 if s > 0 else d_in  # the previous upsample halved the channels
            up = Upsample(d_out, d_out // 2, temporal_upsample[s]) if s < len(dim_mult) - 1 else None
            self.stages.append(Stage(d_in, d_out, num_res_blocks + 1, dropout, up))
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        x = self.mid(self.conv_in(z, cache), cache)
        for stage in self.stages:
            x = stage(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


def blend_into(a: torch.Tensor, b: torch.Tensor, extent: int, dim: int) -> None:
    """Cross-fade the first ``extent`` rows (``dim=-2``) or columns (``dim=-1``) of tile ``b`` with the last ones
    of its neighbour ``a``, in place: ``b[k] = a[-e+k]*(1-k/e) + b[k]*(k/e)`` (diffusers' blend_v/blend_h)."""
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent <= 0:
        return
    ramp = torch.arange(extent, dtype=torch.float64) / extent
    shape = [1] * b.ndim
    shape[dim] = extent
    ramp = ramp.view(shape)
    head = b.narrow(dim, 0, extent)
    tail = a.narrow(dim, a.shape[dim] - extent, extent)
    head.copy_(tail * (1 - ramp).to(b) + head * ramp.to(b))


def blend_tiles(rows: list[list[torch.Tensor]], stride: tuple[int, int], overlap: tuple[int, int]) -> torch.Tensor:
    """Stitch a grid of overlapping tiles: blend each tile with its (already blended) upper and left neighbours
    in raster order, keep its top-left ``stride`` part, and concatenate."""
    out_rows = []
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            if i > 0:
                blend_into(rows[i - 1][j], tile, overlap[0], dim=-2)
            if j > 0:
                blend_into(row[j - 1], tile, overlap[1], dim=-1)
        out_rows.append(torch.cat([tile[..., : stride[0], : stride[1]] for tile in row], dim=-1))
    return torch.cat(out_rows, dim=-2)


def swap_norms(module: nn.Module) -> None:
    """Replace every ``ChannelRMSNorm`` under ``module`` by a ``FrameGroupNorm`` of the same width, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, ChannelRMSNorm):
            setattr(module, name, FrameGroupNorm(child.gamma.shape[0]))
        else:
            swap_norms(child)


class CausalVideoVAE(ModelMixin, ConfigMixin):
    """The Wan2.1 video VAE at any size.

    Args:
        base_dim: channels of the first stage (96 in Wan2.1).
        z_dim: latent channels (16).
        dim_mult: channel multiplier per stage; ``len(dim_mult)-1`` stages downsample 2x in space.
        num_res_blocks: residual blocks per encoder stage (the decoder has one more).
        attn_scales: must be empty (Wan2.1 has attention only in the mid blocks).
        norm_type: ``"rms"`` (Wan2.1's per-pixel channel RMS norm; what public weights need) or ``"group"``
            (``FrameGroupNorm``). Trained from scratch at small sizes, the RMS-norm VAE keeps flat backgrounds but
            does not learn small objects (measured in configs/retired-gen1/shapes-vae.yaml); the group norm learns
            them in tens of steps. ``from_wan`` / diffusers export need ``"rms"``.
        temporal_downsample: per downsampling stage, whether it also halves time.
        dropout: dropout inside the residual blocks.
        latents_mean, latents_std: per-channel latent statistics for ``normalize_latents``.

    ``use_streaming`` (default True) picks the streaming path when ``encode``/``decode`` get ``streaming=None``.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        base_dim: int = 96,
        z_dim: int = 16,
        dim_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_scales: Sequence[float] = (),
        temporal_downsample: Sequence[bool] = (False, True, True),
        dropout: float = 0.0,
        latents_mean: Sequence[float] = WAN_LATENTS_MEAN,
        latents_std: Sequence[float] = WAN_LATENTS_STD,
        norm_type: str = "rms",
    ) -> None:
        super().__init__()
        if norm_type not in ("rms", "group"):
            raise ValueError(f"norm_type must be 'rms' (Wan2.1) or 'group'; got {norm_type!r}")
        if len(attn_scales):
            raise ValueError(f"attn_scales must be empty (Wan2.1 uses attention only in the mid blocks); got {attn_scales}")
        if len(temporal_downsample) != len(dim_mult) - 1:
            raise ValueError(
                f"temporal_downsample needs one entry per downsampling stage (len(dim_mult)-1 = {len(dim_mult) - 1}); "
                f"got {len(temporal_downsample)}"
            )
        for name, stats in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if len(stats) != z_dim:
                raise ValueError(f"{name} needs one value per latent channel (z_dim = {z_dim}); got {len(stats)}")
        temporal_downsample = [bool(t) for t in temporal_downsample]
        self.encoder = Encoder(base_dim, z_dim, dim_mult, num_res_blocks, temporal_downsample, dropout)
        self.quant_conv = nn.Conv3d(2 * z_dim, 2 * z_dim, 1)
        self.post_quant_conv = nn.Conv3d(z_dim, z_dim, 1)
        self.decoder = Decoder(base_dim, z_dim, dim_mult, num_res_blocks, temporal_downsample[::-1], dropout)
        if norm_type == "group":
            swap_norms(self)

        self.use_streaming = True
        self.use_tiling = False
        self.tile_sample_min_height = self.tile_sample_min_width = 256
        self.tile_sample_stride_height = self.tile_sample_stride_width = 192

    # ------------------------------------------------------------------ geometry and latent statistics

    @property
    def temporal_compression(self) -> int:
        """Frames per latent frame after the first (4 for Wan2.1): 2 ** (number of temporal downsamples)."""
        return 2 ** sum(bool(t) for t in self.config.temporal_downsample)

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent pixel along height and width (8 for Wan2.1): 2 ** (number of stages - 1)."""
        return 2 ** (len(self.config.dim_mult) - 1)

    def _latent_stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (z.ndim - 2)
        mean = torch.tensor(self.config.latents_mean, dtype=torch.float32).view(shape).to(z)
        std = torch.tensor(self.config.latents_std, dtype=torch.float32).view(shape).to(z)
        return mean, std

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents -> the unit-scale latents the DiT works on: ``(z - mean) / std`` per channel."""
        mean, std = self._latent_stats(z)
        return (z - mean) / std

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalize_latents``: ``z * std + mean`` per channel (call before ``decode``)."""
        mean, std = self._latent_stats(z)
        return z * std + mean

    # ------------------------------------------------------------------ tiling switches

    def enable_tiling(
        self,
        tile_sample_min_height: int = 256,
        tile_sample_min_width: int = 256,
        tile_sample_stride_height: int = 192,
        tile_sample_stride_width: int = 192,
    ) -> None:
        """Encode/decode large frames as overlapping spatial tiles (sizes in pixels), cross-faded where they
        overlap, exactly as diffusers' ``AutoencoderKLWan`` tiling does. Frames no larger than one tile are not tiled."""
        sizes = dict(
            tile_sample_min_height=tile_sample_min_height,
            tile_sample_min_width=tile_sample_min_width,
            tile_sample_stride_height=tile_sample_stride_height,
            tile_sample_stride_width=tile_sample_stride_width,
        )
        for name, value in sizes.items():
            if not isinstance(value, int) or value < self.spatial_compression or value % self.spatial_compression:
                raise ValueError(
                    f"{name} must be a positive multiple of the spatial compression {self.spatial_compression}; got {value}"
                )
        for axis in ("height", "width"):
            if sizes[f"tile_sample_stride_{axis}"] > sizes[f"tile_sample_min_{axis}"]:
                raise ValueError(f"tile_sample_stride_{axis} must not exceed tile_sample_min_{axis} (tiles must overlap or touch)")
        for name, value in sizes.items():
            setattr(self, name, value)
        self.use_tiling = True

    def disable_tiling(self) -> None:
        """Go back to encoding/decoding whole frames."""
        self.use_tiling = False

    # ------------------------------------------------------------------ encode

    def encode(
        self, video: torch.Tensor, streaming: Optional[bool] = None, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Encode ``video`` [B,3,F,H,W] in [-1,1] (F = 1+4k, H and W multiples of 8) into a diagonal Gaussian over
        raw latents [B,z_dim,1+k,H/8,W/8]; ``.latent_dist.mode()`` is the mean, ``.sample(generator)`` draws.

        ``streaming`` picks the chunked causal path (True) or the full-sequence path (False); None uses
        ``self.use_streaming``. Both give the same numbers.
        """
        self._check_input(video, 3, "video", self.temporal_compression, self.spatial_compression)
        video = video.to(self.dtype)
        streaming = self.use_streaming if streaming is None else streaming
        height, width = video.shape[-2:]
        if self.use_tiling and (height > self.tile_sample_min_height or width > self.tile_sample_min_width):
            moments = self._tiled_encode(video, streaming)
        else:
            moments = self._encode(video, streaming)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def _encode(self, video: torch.Tensor, streaming: bool) -> torch.Tensor:
        if not streaming:
            return self.quant_conv(self.encoder(video))
        # Chunks of 1, 4, 4, ... frames: each chunk yields one latent frame, the cache carries the context.
        cache = CausalCache()
        chunks = [video[:, :, :1]] + list(video[:, :, 1:].split(self.temporal_compression, dim=2))
        return self.quant_conv(torch.cat([self.encoder(c, cache) for c in chunks if c.shape[2]], dim=2))

    def _tiled_encode(self, video: torch.Tensor, streaming: bool) -> torch.Tensor:
        sc = self.spatial_compression
        min_h, min_w = self.tile_sample_min_height, self.tile_sample_min_width
        stride_h, stride_w = self.tile_sample_stride_height, self.tile_sample_stride_width
        height, width = video.shape[-2:]
        rows = [
            [self._encode(video[..., i : i + min_h, j : j + min_w], streaming) for j in range(0, width, stride_w)]
            for i in range(0, height, stride_h)
        ]
        overlap = (min_h // sc - stride_h // sc, min_w // sc - stride_w // sc)
        moments = blend_tiles(rows, (stride_h // sc, stride_w // sc), overlap)
        return moments[..., : height // sc, : width // sc]

    # ------------------------------------------------------------------ decode

    def decode(
        self, z: torch.Tensor, streaming: Optional[bool] = None, return_dict: bool = True, clamp: bool = True
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode raw latents ``z`` [B,z_dim,T,h,w] into video [B,3,1+4(T-1),8h,8w], clamped to [-1,1] (as Wan
        does; ``clamp=False`` keeps the raw output, which training needs for gradients at the range ends).

        The streaming path (default, ``self.use_streaming``) decodes one latent frame at a time into a
        preallocated output, so its working memory does not grow with T; ``streaming=False`` runs one pass.
        """
        self._check_input(z, self.config.z_dim, "latents", 1, 1)
        check_num_frames(z.shape[2], 1, name="latents frame count")
        z = z.to(self.dtype)
        streaming = self.use_streaming if streaming is None else streaming
        sc = self.spatial_compression
        height, width = z.shape[-2:]
        if self.use_tiling and (height > self.tile_sample_min_height // sc or width > self.tile_sample_min_width // sc):
            video = self._tiled_decode(z, streaming)
        else:
            video = self._decode(z, streaming)
        if clamp:
            video = video.clamp(-1.0, 1.0)
        return DecoderOutput(sample=video) if return_dict else (video,)

    def _decode(self, z: torch.Tensor, streaming: bool) -> torch.Tensor:
        """Unclamped decode of one (tile of a) latent clip."""
        if not streaming:
            return self.decoder(self.post_quant_conv(z))
        cache = CausalCache()
        out, t = None, 0
        for i in range(z.shape[2]):
            frames = self.decoder(self.post_quant_conv(z[:, :, i : i + 1]), cache)  # 1 frame, then 4 per latent
            if out is None:
                num_frames = 1 + self.temporal_compression * (z.shape[2] - 1)
                out = frames.new_empty(*frames.shape[:2], num_frames, *frames.shape[3:])
            out[:, :, t : t + frames.shape[2]] = frames
            t += frames.shape[2]
            del frames
        return out

    def _tiled_decode(self, z: torch.Tensor, streaming: bool) -> torch.Tensor:
        sc = self.spatial_compression
        min_h, min_w = self.tile_sample_min_height // sc, self.tile_sample_min_width // sc
        stride_h, stride_w = self.tile_sample_stride_height // sc, self.tile_sample_stride_width // sc
        height, width = z.shape[-2:]
        rows = [
            [self._decode(z[..., i : i + min_h, j : j + min_w], streaming) for j in range(0, width, stride_w)]
            for i in range(0, height, stride_h)
        ]
        overlap = (
            self.tile_sample_min_height - self.tile_sample_stride_height,
            self.tile_sample_min_width - self.tile_sample_stride_width,
        )
        video = blend_tiles(rows, (self.tile_sample_stride_height, self.tile_sample_stride_width), overlap)
        return video[..., : height * sc, : width * sc]

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        generator: Optional[torch.Generator] = None,
        return_dict: bool = True,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Encode then decode ``sample`` (the posterior mode, or a draw with ``sample_posterior``)."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)

    # ------------------------------------------------------------------ checks and checkpoints

    def _check_input(self, x: torch.Tensor, channels: int, name: str, temporal: int, spatial: int) -> None:
        check_video_tensor(x, channels, name=name, temporal_factor=temporal, spatial_factor=spatial)
        check_same_device_dtype(self, x, name)

    @classmethod
    def from_wan(
        cls, path, torch_dtype: Optional[torch.dtype] = None, latents_mean: Optional[Sequence[float]] = None,
        latents_std: Optional[Sequence[float]] = None,
    ) -> "CausalVideoVAE":
        """Load Wan2.1 VAE weights: a diffusers ``AutoencoderKLWan`` directory (possibly sharded), an original
        ``Wan2.1_VAE.pth`` file, or a directory holding one. An original-format file of another architecture than
        the public Wan2.1 VAE needs ``latents_mean``/``latents_std`` (they are not in the weights). See
        ``videogen.convert.wan_vae.load_wan_vae``."""
        from videogen.convert.wan_vae import load_wan_vae

        return load_wan_vae(path, cls, torch_dtype=torch_dtype, latents_mean=latents_mean, latents_std=latents_std)

    def to_diffusers_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under diffusers ``AutoencoderKLWan`` key names."""
        from videogen.convert.wan_vae import vae_state_dict_to_diffusers

        if self.config.norm_type != "rms":
            raise ValueError("only norm_type='rms' VAEs have a diffusers AutoencoderKLWan equivalent")
        return vae_state_dict_to_diffusers(self.state_dict(), config=dict(self.config))
