"""VideoDiT: the spatiotemporal diffusion transformer (Wan2.1 architecture) with explicit hooks-free inputs for
skip guidance (STG) and adapters (ControlNet residuals, per-block modulation, the Fun-Control-Camera adapter)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from videogen.models.attention import attention, check_attention_backend
from videogen.validation import check_multiple

# ----------------------------------------------------------------------------------------------
# Small pure functions for the math
# ----------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of timesteps ``t`` (any shape) -> ``[..., dim]``, cosines first (Wan / diffusers order).

    Computed in fp32 exactly as diffusers' ``Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)``.
    """
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    args = t.float()[..., None] * torch.exp(exponent)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """How a head's channels split over (frame, height, width) rotary axes: Wan gives h and w ``2*(d//6)`` each."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_cos_sin(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0, device=None):
    """Rotary cos/sin tables for a ``(f, h, w)`` token grid, each ``[f*h*w, 1, head_dim//2]`` in fp32.

    Each axis gets its own slice of the head's channel pairs (see ``rope_axis_dims``); positions are
    integer indices, frequencies ``theta^(-2i/d_axis)`` computed in float64 as Wan does.
    """
    tables = []
    for n, d in zip(grid, rope_axis_dims(head_dim)):
        freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=device)[: d // 2] / d))
        tables.append(torch.outer(torch.arange(n, dtype=torch.float64, device=device), freqs))  # [n, d/2]
    f, h, w = grid
    angles = torch.cat(
        [
            tables[0][:, None, None].expand(f, h, w, -1),
            tables[1][None, :, None].expand(f, h, w, -1),
            tables[2][None, None, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, 1, -1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs ``(2i, 2i+1)`` of ``x [B, N, H, D]`` by the angles behind ``cos/sin [N, 1, D/2]``."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN modulation ``x * (1 + scale) + shift`` (one fused multiply-add pass)."""
    return torch.addcmul(shift, x, 1 + scale)


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free LayerNorm over the last dim, computed in fp32 (Wan keeps norms in fp32)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps)


def block_mask(batch_size: int, num_layers: int, samples: Sequence[int], blocks: Sequence[int], device=None) -> torch.Tensor:
    """A ``[batch_size, num_layers]`` bool mask, True for the given samples at the given blocks.

    Build ``skip_blocks`` (STG-R) or ``skip_self_attention`` (STG-A) arguments of ``VideoDiT.forward`` with it.
    """
    mask = torch.zeros(batch_size, num_layers, dtype=torch.bool, device=device)
    for b in samples:
        for i in blocks:
            if not -num_layers <= i < num_layers:
                raise ValueError(f"block index {i} is out of range for a model with {num_layers} blocks")
            mask[b, i] = True
    return mask


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Shared parts of Wan's attentions: q/k/v/o projections with bias and q/k RMSNorm across all heads."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.backend: Optional[str] = None  # diffusers attention-dispatcher backend; None: PyTorch's SDPA

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, L, D] -> [B, L, heads, D/heads]``."""
        return t.view(t.shape[0], t.shape[1], self.num_heads, -1)

    def merge_heads(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``[B, heads, L, D/heads]`` attention output -> output projection ``[B, L, D]``."""
        return self.o(t.transpose(1, 2).flatten(2).type_as(like))


class SelfAttention(Attention):
    """Multi-head self-attention with 3D RoPE on q and k; optionally returns V (STG-A)."""

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], values_only: Optional[torch.Tensor] = None):
        """``x [B, N, D]``; ``values_only [B]`` bool: those samples get identity attention (output = V)."""
        q = apply_rope(self.split_heads(self.norm_q(self.q(x))), *rope).transpose(1, 2)
        k = apply_rope(self.split_heads(self.norm_k(self.k(x))), *rope).transpose(1, 2)
        v = self.split_heads(self.v(x)).transpose(1, 2)
        if values_only is None:
            out = attention(q, k, v, self.backend)
        else:  # identity attention map for the flagged samples: their output is V, no attention computed
            out = v.clone()
            keep = (~values_only).nonzero().flatten()
            if keep.numel():
                out[keep] = attention(q[keep], k[keep], v[keep], self.backend)
        return self.merge_heads(out, x)


class CrossAttention(Attention):
    """Attention from video tokens to text tokens, plus (I2V) a separate attention to image tokens."""

    def __init__(self, dim: int, num_heads: int, eps: float, image_tokens: bool = False):
        super().__init__(dim, num_heads, eps)
        if image_tokens:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = nn.RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img: Optional[torch.Tensor] = None):
        """``x [B, N, D]`` attends to ``context [B, L, D]`` (and ``context_img [B, L_img, D]`` when given)."""
        heads = lambda t: self.split_heads(t).transpose(1, 2)  # noqa: E731
        q = heads(self.norm_q(self.q(x)))
        out = attention(q, heads(self.norm_k(self.k(context))), heads(self.v(context)), self.backend)
        if context_img is not None:
            k_img = heads(self.norm_k_img(self.k_img(context_img)))
            out = out + attention(q, k_img, heads(self.v_img(context_img)), self.backend)
        return self.merge_heads(out, x)


class DiTBlock(nn.Module):
    """One Wan block: modulated self-attention, cross-attention (no gate), modulated feed-forward."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, cross_attn_norm: bool, image_tokens: bool):
        super().__init__()
        self.eps = eps
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.norm_cross = nn.LayerNorm(dim, eps=eps) if cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, num_heads, eps, image_tokens)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        # shift, scale, gate (self-attention), shift, scale, gate (feed-forward); added to the time projection.
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_img: Optional[torch.Tensor],
        e: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        values_only: Optional[torch.Tensor] = None,
        input_modulation: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """``e [B, 1|N, 6, D]`` is the projected timestep; ``input_modulation`` = adapter (scale, shift) on the
        normalised self-attention input; ``values_only [B]`` switches self-attention to STG-A."""
        shift, scale, gate, c_shift, c_scale, c_gate = (self.modulation.unsqueeze(0) + e.float()).unbind(2)
        h = modulate(layer_norm(x, self.eps), shift, scale)
        if callable(input_modulation):  # an adapter's own function of h (the trajectory adapter's fuser)
            h = input_modulation(h)
        elif input_modulation is not None:
            h = modulate(h, input_modulation[1], input_modulation[0])
        x = torch.addcmul(x.float(), self.self_attn(h.type_as(x), rope, values_only), gate).type_as(x)
        x = x + self.cross_attn(self.norm_cross(x.float()).type_as(x), context, context_img)
        h = modulate(layer_norm(x, self.eps), c_shift, c_scale).type_as(x)
        return torch.addcmul(x.float(), self.ffn(h).float(), c_gate).type_as(x)


class ImageEmbedding(nn.Module):
    """Projects image-encoder tokens (e.g. CLIP penultimate states) to the model width: LN, MLP, LN."""

    def __init__(self, image_dim: int, dim: int, pos_embed_seq_len: Optional[int] = None):
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(image_dim), nn.Linear(image_dim, image_dim), nn.GELU(), nn.Linear(image_dim, dim), nn.LayerNorm(dim)
        )
        self.emb_pos = nn.Parameter(torch.zeros(1, pos_embed_seq_len, image_dim)) if pos_embed_seq_len else None

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L, image_dim] -> [B, L, dim]`` (first-last-frame models fold pairs and add positions)."""
        if self.emb_pos is not None:
            b, n, c = image_tokens.shape
            image_tokens = image_tokens.view(-1, 2 * n, c) + self.emb_pos
        return self.proj(image_tokens.float()).type_as(image_tokens)


class ResidualConvBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))`` with two 3x3 convolutions that keep the width."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, dim, h, w] -> [N, dim, h, w]``."""
        return x + self.conv2(F.relu(self.conv1(x)))


class CameraAdapter(nn.Module):
    """The Fun-Control-Camera adapter (VideoX-Fun's ``SimpleAdapter``): packed Plücker rays to patch features.

    Per latent frame: ``PixelUnshuffle(downscale)`` folds each ``downscale x downscale`` pixel block into channels
    (24 -> 24 * 64 for Wan's 8x VAE), a convolution with the DiT's spatial patch as kernel and stride maps them to
    the model width, and one residual block refines them. The output ``[B, dim, F, H / (ds ph), W / (ds pw)]`` lies
    on the patch embedding's token grid; ``VideoDiT`` adds it there. Nothing is zero-initialised, as in the release.
    """

    def __init__(self, in_channels: int, dim: int, downscale: int, patch: tuple[int, int]):
        super().__init__()
        self.downscale = downscale
        self.embed = nn.Conv2d(in_channels * downscale**2, dim, kernel_size=patch, stride=patch)
        self.refine = ResidualConvBlock(dim)

    def forward(self, camera: torch.Tensor) -> torch.Tensor:
        """``camera [B, C, F, H, W]`` (pixel resolution) -> ``[B, dim, F, H / (ds ph), W / (ds pw)]``."""
        b, c, f, h, w = camera.shape
        frames = camera.transpose(1, 2).reshape(b * f, c, h, w)
        x = self.refine(self.embed(F.pixel_unshuffle(frames, self.downscale)))
        return x.unflatten(0, (b, f)).transpose(1, 2)


class Head(nn.Module):
    """Final modulated LayerNorm and linear projection back to patch channels."""

    def __init__(self, dim: int, out_features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.head = nn.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """``temb [B, 1|N, D]`` is the (pre-projection) time embedding."""
        shift, scale = (self.modulation.unsqueeze(0) + temb.unsqueeze(2)).unbind(2)
        return self.head(modulate(layer_norm(x, self.eps), shift, scale).type_as(x))


@dataclass
class DiTState:
    """What ``VideoDiT.embed`` computes once per forward and the blocks and head read: the patch tokens ``x``
    ``[B, N, D]``, the time embedding ``temb`` ``[B, 1|N, D]`` and its projection ``e`` ``[B, 1|N, 6, D]``, the
    text (and image) tokens, the RoPE tables and the token grid ``(f, h, w)``."""

    x: torch.Tensor
    temb: torch.Tensor
    e: torch.Tensor
    context: torch.Tensor
    context_img: Optional[torch.Tensor]
    rope: tuple[torch.Tensor, torch.Tensor]
    grid: tuple[int, int, int]


@dataclass
class VideoDiTOutput(BaseOutput):
    """Output of ``VideoDiT.forward``: the prediction ``sample [B, C, F, H, W]``."""

    sample: torch.Tensor


class VideoDiT(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Spatiotemporal DiT with text cross-attention (Wan2.1 architecture at any size).

    Args:
        patch_size: (t, h, w) patch of the Conv3d patch embedding.
        num_heads, dim: attention heads and model width (head dim = dim / num_heads, must be even per axis).
        in_channels, out_channels: latent channels in and out (I2V models take 36 = 16 noise + 4 mask + 16 image).
        text_dim: width of the text encoder states; freq_dim: sinusoid size of the timestep embedding.
        ffn_dim, num_layers: feed-forward width and number of blocks.
        cross_attn_norm: affine LayerNorm before cross-attention (Wan: True); eps: every norm's epsilon.
        image_dim: width of image-encoder tokens; set it for I2V models with image cross-attention.
        pos_embed_seq_len: learned image-token positions (first-last-frame models).
        rope_theta, rope_max_seq_len: rotary base and the largest grid extent per axis.
        camera_channels: channels of the packed camera input (24 for Plücker rays packed as VideoX-Fun does); set
            it for Fun-Control-Camera models, whose ``CameraAdapter`` output is added to the patch embedding.
        camera_downscale: pixels per latent pixel the adapter folds into channels (the VAE's spatial factor, 8).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["DiTBlock"]
    _keep_in_fp32_modules = ["time_embedding", "modulation", "norm_cross"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_heads: int = 12,
        dim: int = 1536,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
        image_dim: Optional[int] = None,
        pos_embed_seq_len: Optional[int] = None,
        rope_theta: float = 10000.0,
        rope_max_seq_len: int = 1024,
        camera_channels: Optional[int] = None,
        camera_downscale: int = 8,
    ):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2 or min(rope_axis_dims(dim // num_heads)) <= 0:
            raise ValueError(f"dim ({dim}) / num_heads ({num_heads}) must give an even head dim of at least 6")
        if camera_channels is not None and (patch_size[0] != 1 or camera_channels < 1 or camera_downscale < 1):
            raise ValueError(
                f"a camera adapter needs a temporal patch of 1 (it works per latent frame) and positive channels and "
                f"downscale; got patch_size={tuple(patch_size)}, camera_channels={camera_channels}, "
                f"camera_downscale={camera_downscale}"
            )
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.camera_adapter = (
            CameraAdapter(camera_channels, dim, camera_downscale, tuple(patch_size[1:])) if camera_channels else None
        )
        self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.img_emb = ImageEmbedding(image_dim, dim, pos_embed_seq_len) if image_dim else None
        self.blocks = nn.ModuleList(
            [DiTBlock(dim, ffn_dim, num_heads, eps, cross_attn_norm, image_dim is not None) for _ in range(num_layers)]
        )
        self.head = Head(dim, out_channels * math.prod(patch_size), eps)
        self.gradient_checkpointing = False

    def _rope(self, grid: tuple[int, int, int], device) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables for a token grid, computed once per (grid, device): every denoising step reuses them."""
        cache = self.__dict__.setdefault("_rope_cache", {})
        key = (grid, str(device))
        if key not in cache:
            cache.clear()  # one grid per generation; do not accumulate tables
            cache[key] = rope_cos_sin(grid, self.config.dim // self.config.num_heads, self.config.rope_theta, device)
        return cache[key]

    # -- conversion helpers (implemented in videogen.convert.wan) -------------------------------

    @classmethod
    def from_wan(cls, path, torch_dtype: Optional[torch.dtype] = None, num_heads: Optional[int] = None) -> "VideoDiT":
        """Load Wan2.1 DiT weights: a diffusers model directory or original checkpoint shards (auto-detected).
        ``num_heads`` is needed only for bare weights (no config.json) of a width no public Wan2.1 model has."""
        from videogen.convert.wan import load_wan_transformer

        return load_wan_transformer(path, cls, torch_dtype=torch_dtype, num_heads=num_heads)

    def to_diffusers_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under diffusers ``WanTransformer3DModel`` key names."""
        from videogen.convert.wan import transformer_state_dict_to_diffusers

        return transformer_state_dict_to_diffusers(self.state_dict())

    # -- forward ------------------------------------------------------------------------------

    def _check_inputs(self, x, timestep, context, context_img, num_tokens):
        cfg = self.config
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"hidden_states must have {cfg.in_channels} channels (config in_channels); got {x.shape[1]}")
        for name, size, p in zip(("latent frames", "latent height", "latent width"), x.shape[2:], cfg.patch_size):
            if p > 1:
                check_multiple(name, size, p)
        if context.ndim != 3 or context.shape[-1] != cfg.text_dim or context.shape[0] != x.shape[0]:
            raise ValueError(
                f"encoder_hidden_states must be [B={x.shape[0]}, L, text_dim={cfg.text_dim}]; got {tuple(context.shape)}"
            )
        if timestep.shape not in ((x.shape[0],), (x.shape[0], num_tokens)):
            raise ValueError(
                f"timestep must be [B] or [B, N] with B={x.shape[0]}, N={num_tokens} tokens; got {tuple(timestep.shape)}"
            )
        if (context_img is None) != (self.img_emb is None):
            need = "requires" if self.img_emb is not None else "takes no"
            raise ValueError(f"this model {need} encoder_hidden_states_image (config image_dim={cfg.image_dim})")
        device = self.patch_embedding.weight.device
        for name, tensor in (("hidden_states", x), ("encoder_hidden_states", context), ("encoder_hidden_states_image", context_img)):
            if tensor is None:
                continue
            if not tensor.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor; got dtype {tensor.dtype}")
            if tensor.device != device:
                raise ValueError(f"{name} is on {tensor.device} but the model is on {device}; move one of them")

    def _check_camera(self, camera, camera_scale, x) -> None:
        """The camera input must fit the adapter and the latents; a camera for a model without one is an error."""
        cfg = self.config
        if camera is None:
            if camera_scale is not None:
                raise ValueError("camera_scale was given without a camera")
            return
        if self.camera_adapter is None:
            raise ValueError(
                "this model has no camera adapter (config camera_channels=None), so it cannot use a camera; load a "
                "camera model (e.g. Wan2.1-Fun-V1.1-Control-Camera) or leave camera out"
            )
        if not isinstance(camera, torch.Tensor) or camera.ndim != 5:
            shape = tuple(camera.shape) if isinstance(camera, torch.Tensor) else type(camera).__name__
            raise ValueError(f"camera must be a 5-D tensor [B, {cfg.camera_channels}, F, H, W]; got {shape}")
        b, c, f, h, w = camera.shape
        if c != cfg.camera_channels:
            raise ValueError(f"camera must have {cfg.camera_channels} channels (config camera_channels); got {c}")
        if b != x.shape[0]:
            raise ValueError(f"camera has batch size {b} but hidden_states has {x.shape[0]}")
        if f != x.shape[2]:
            raise ValueError(f"camera has {f} latent frames but hidden_states has {x.shape[2]} (pack the camera for "
                             "the same number of video frames)")
        factor = cfg.camera_downscale * cfg.patch_size[1], cfg.camera_downscale * cfg.patch_size[2]
        for name, size, multiple, latent in (("height", h, factor[0], x.shape[3]), ("width", w, factor[1], x.shape[4])):
            check_multiple(f"camera {name}", size, multiple)  # the adapter's unshuffle x the patch
            if size != latent * cfg.camera_downscale:
                raise ValueError(f"camera {name} is {size} pixels but the latents are {latent} "
                                 f"(x {cfg.camera_downscale} = {latent * cfg.camera_downscale} pixels)")
        if not camera.is_floating_point():
            raise ValueError(f"camera must be a floating-point tensor; got dtype {camera.dtype}")
        if camera.device != self.patch_embedding.weight.device:
            raise ValueError(f"camera is on {camera.device} but the model is on {self.patch_embedding.weight.device}")
        if isinstance(camera_scale, torch.Tensor) and camera_scale.shape not in ((), (b,)):
            raise ValueError(f"camera_scale must be a number or a [B={b}] tensor; got shape {tuple(camera_scale.shape)}")

    def add_camera(self, x: torch.Tensor, camera: torch.Tensor, camera_scale=None) -> torch.Tensor:
        """Patch features ``x [B, dim, f, h, w]`` plus ``camera_scale * CameraAdapter(camera)`` per sample.

        ``camera_scale`` (a number or ``[B]``; default 1) multiplies the adapter's output; the adapter runs only for
        samples whose scale is not 0, so those keep ``x`` exactly (the camera "off" in a batched guidance pass)."""
        b = x.shape[0]
        scale = torch.as_tensor(1.0 if camera_scale is None else camera_scale, dtype=torch.float32, device=x.device)
        scale = scale.expand(b) if scale.ndim == 0 else scale
        on = scale.nonzero().flatten()
        if on.numel() == 0:
            return x
        some = on.numel() < b
        features = self.camera_adapter((camera[on] if some else camera).to(x.dtype))
        features = features * scale[on].view(-1, 1, 1, 1, 1).to(features.dtype)
        if not some:
            return x + features
        out = x.clone()
        out[on] = x[on] + features
        return out

    def set_attention_backend(self, backend: Optional[str]) -> None:
        """Run every attention of this model through ``backend`` (a diffusers attention-dispatcher name: ``native``,
        ``flash``, ``sage``, ...; None or ``sdpa``: PyTorch's SDPA, the default). A backend that is unknown or not
        installed is a ``ValueError`` (``videogen.models.attention.check_attention_backend``)."""
        backend = check_attention_backend(backend)
        for module in self.modules():
            if isinstance(module, Attention):
                module.backend = backend

    def time_embeddings(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(temb [B, 1|N, D], e [B, 1|N, 6, D])`` for timesteps ``[B]`` or ``[B, N]``: the time embedding the
        head reads and its projection the blocks read (TeaCache's modulated inputs ``e`` and ``e0``)."""
        t = timestep if timestep.ndim == 2 else timestep[:, None]
        freq = timestep_embedding(t, self.config.freq_dim).to(self.time_embedding[0].weight.dtype)
        temb = self.time_embedding(freq).type_as(self.patch_embedding.weight)
        return temb, self.time_projection(temb).unflatten(-1, (6, -1))

    def embed(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: Optional[torch.Tensor] = None,
        camera: Optional[torch.Tensor] = None,
        camera_scale: Optional[Union[float, torch.Tensor]] = None,
    ) -> "DiTState":
        """The part of ``forward`` before the blocks: inputs checked, patch tokens (with the camera adapter's
        features), RoPE tables, time embedding and projection, text and image tokens (arguments as ``forward``)."""
        if hidden_states.ndim != 5:
            raise ValueError(f"hidden_states must be 5-D [B, C, F, H, W]; got shape {tuple(hidden_states.shape)}")
        b, _, f, h, w = hidden_states.shape
        pt, ph, pw = self.config.patch_size
        grid = (f // pt, h // ph, w // pw)
        num_tokens = math.prod(grid)
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        self._check_inputs(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image, num_tokens)
        self._check_camera(camera, camera_scale, hidden_states)
        # Float inputs of another precision are cast to the weights' (e.g. fp32 latents into a bf16 model).
        dtype = self.patch_embedding.weight.dtype
        hidden_states, encoder_hidden_states = hidden_states.to(dtype), encoder_hidden_states.to(dtype)
        if encoder_hidden_states_image is not None:
            encoder_hidden_states_image = encoder_hidden_states_image.to(dtype)

        x = self.patch_embedding(hidden_states)  # [B, D, f, h, w]
        if camera is not None:  # Fun-Control-Camera: the adapter's features join the patch features
            x = self.add_camera(x, camera, camera_scale)
        # [B, D, f, h, w] -> [B, f*h*w, D]; contiguous, or every residual add below runs on strided memory.
        x = x.flatten(2).transpose(1, 2).contiguous()
        rope = self._rope(grid, x.device)
        # Time: [B] -> [B, 1, D]; per token [B, N] -> [B, N, D]. Projection -> [B, 1|N, 6, D].
        temb, e = self.time_embeddings(timestep)
        context = self.text_embedding(encoder_hidden_states)
        context_img = self.img_emb(encoder_hidden_states_image) if encoder_hidden_states_image is not None else None
        return DiTState(x, temb, e, context, context_img, rope, grid)

    def run_blocks(
        self,
        state: "DiTState",
        x: torch.Tensor,
        start: int = 0,
        stop: Optional[int] = None,
        skip_blocks: Optional[torch.Tensor] = None,
        skip_self_attention: Optional[torch.Tensor] = None,
        block_residuals: Optional[Sequence[Optional[torch.Tensor]]] = None,
        block_modulations: Optional[Sequence[Optional[tuple[torch.Tensor, torch.Tensor]]]] = None,
    ) -> torch.Tensor:
        """Blocks ``start .. stop - 1`` (default: all) on tokens ``x [B, N, D]`` with ``state``'s conditions; the
        per-block arguments as ``forward`` (indexed by absolute block number, one entry per block)."""
        n = len(self.blocks)
        stop = n if stop is None else stop
        for name, per_block in (("block_residuals", block_residuals), ("block_modulations", block_modulations)):
            if per_block is not None and len(per_block) != n:
                raise ValueError(f"{name} must have one entry per block ({n}); got {len(per_block)}")
        # Which blocks have any perturbed sample: read once (one host sync), not per block.
        attn_used = skip_self_attention.any(0).tolist() if skip_self_attention is not None else [False] * n
        skip_used = skip_blocks.any(0).tolist() if skip_blocks is not None else [False] * n
        context, context_img, e, rope = state.context, state.context_img, state.e, state.rope
        for i in range(start, stop):
            block = self.blocks[i]
            values_only = skip_self_attention[:, i] if attn_used[i] else None
            skip = skip_blocks[:, i] if skip_used[i] else None
            modulation = block_modulations[i] if block_modulations is not None else None
            if skip is not None and bool(skip.all()):
                out = x  # every sample skips this block: no need to run it
            elif torch.is_grad_enabled() and self.gradient_checkpointing:
                out = self._gradient_checkpointing_func(block, x, context, context_img, e, rope, values_only, modulation)
            else:
                out = block(x, context, context_img, e, rope, values_only, modulation)
            if skip is not None:
                out = torch.where(skip[:, None, None], x, out)
            if block_residuals is not None and block_residuals[i] is not None:
                out = out + block_residuals[i]
            x = out
        return x

    def finish(self, state: "DiTState", x: torch.Tensor) -> torch.Tensor:
        """The part of ``forward`` after the blocks: the modulated head and unpatchify, tokens ``x [B, N, D]`` ->
        the prediction ``[B, C, F, H, W]``."""
        pt, ph, pw = self.config.patch_size
        x = self.head(x, state.temb)
        # Unpatchify: [B, f*h*w, pt*ph*pw*C] -> [B, C, f*pt, h*ph, w*pw]
        x = x.reshape(x.shape[0], *state.grid, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: Optional[torch.Tensor] = None,
        skip_blocks: Optional[torch.Tensor] = None,
        skip_self_attention: Optional[torch.Tensor] = None,
        block_residuals: Optional[Sequence[Optional[torch.Tensor]]] = None,
        block_modulations: Optional[Sequence[Optional[tuple[torch.Tensor, torch.Tensor]]]] = None,
        camera: Optional[torch.Tensor] = None,
        camera_scale: Optional[Union[float, torch.Tensor]] = None,
        return_dict: bool = True,
    ):
        """Predict the flow (velocity) for noisy latents: ``embed``, ``run_blocks``, ``finish``.

        Args:
            hidden_states: ``[B, C_in, F, H, W]`` latents (I2V: noise ‖ mask ‖ image latents on channels).
            timestep: ``[B]`` per sample, or ``[B, N]`` per token (N = F/pt · H/ph · W/pw), in [0, 1000).
            encoder_hidden_states: ``[B, L, text_dim]`` text states, zero-padded as Wan does (512 tokens).
            encoder_hidden_states_image: ``[B, L_img, image_dim]`` image-encoder tokens (I2V models only).
            skip_blocks: ``[B, num_layers]`` bool (see ``block_mask``); block i returns its input for sample b (STG-R).
            skip_self_attention: ``[B, num_layers]`` bool; block i's self-attention returns V for sample b (STG-A).
            block_residuals: per block, ``None`` or ``[B, N, dim]`` added to the block's output (ControlNet).
            block_modulations: per block, ``None`` or ``(scale, shift)`` each broadcastable to ``[B, N, dim]``,
                applied to the block's normalised self-attention input as ``h * (1 + scale) + shift``.
            camera: ``[B, camera_channels, F, H, W]`` packed camera rays at pixel resolution (``H = 8 h`` for the
                latents' ``h``), for models with a camera adapter: its output is added to the patch embedding.
            camera_scale: a number or ``[B]``: multiplies the adapter's output per sample (0: adapter not run).
            return_dict: return a ``VideoDiTOutput`` (else a 1-tuple).

        With every optional argument left out the computation is exactly Wan's.
        """
        for name, per_block in (("block_residuals", block_residuals), ("block_modulations", block_modulations)):
            if per_block is not None and len(per_block) != len(self.blocks):
                raise ValueError(f"{name} must have one entry per block ({len(self.blocks)}); got {len(per_block)}")
        state = self.embed(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image, camera,
                           camera_scale)
        x = self.run_blocks(state, state.x, skip_blocks=skip_blocks, skip_self_attention=skip_self_attention,
                            block_residuals=block_residuals, block_modulations=block_modulations)
        out = self.finish(state, x)
        return VideoDiTOutput(sample=out) if return_dict else (out,)
