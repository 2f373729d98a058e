"""Image conditioning for image-to-video: load and fit images, Wan's frame mask, and the VAE condition latents."""

from __future__ import annotations

import os
import warnings
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps


def _channels_error(channels: int) -> ValueError:
    return ValueError(f"the image has {channels} channel(s); 3 (RGB) are needed")


def _check_unit_range(image: torch.Tensor, what: str) -> torch.Tensor:
    low, high = image.min().item(), image.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"{what} values must lie in [0, 1]; got [{low:.3g}, {high:.3g}]")
    return image


def load_image(image) -> torch.Tensor:
    """Any single image as a float32 tensor ``[3, h, w]`` in [0, 1].

    Accepts a file path (``str`` / ``os.PathLike``; EXIF orientation applied), a PIL image (any mode, converted
    to RGB, alpha dropped), a numpy array ``[h, w, 3]`` (uint8 0..255 or float in [0, 1]), or a torch tensor
    ``[3, h, w]`` / ``[1, 3, h, w]`` (float in [0, 1], or uint8 0..255). Anything else is a ``ValueError``.
    """
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, ValueError) as err:  # missing, unreadable or not an image
            raise ValueError(f"cannot read image {os.fspath(image)!r}: {err}") from None
    if isinstance(image, Image.Image):
        # uint8 / 255 in float32, exactly as diffusers' image processors do.
        return torch.from_numpy(np.asarray(image.convert("RGB")).astype(np.float32) / 255.0).permute(2, 0, 1)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            raise ValueError(f"got a 2-D (grayscale) array of shape {image.shape}; 3 (RGB) channels are needed")
        if image.ndim != 3:
            raise ValueError(f"a numpy image must be [h, w, 3]; got shape {image.shape}")
        if image.shape[-1] != 3:
            raise _channels_error(image.shape[-1])
        if image.dtype == np.uint8:
            return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"a numpy image must be uint8 (0..255) or float (0..1); got dtype {image.dtype}")
        return _check_unit_range(torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1), "float image")
    if isinstance(image, torch.Tensor):
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3:
            raise ValueError(f"a torch image must be [3, h, w] or [1, 3, h, w]; got shape {tuple(image.shape)}")
        if image.shape[0] != 3:
            raise _channels_error(image.shape[0])
        if image.dtype == torch.uint8:
            return image.float() / 255.0
        if not image.is_floating_point():
            raise ValueError(f"a torch image must be float (0..1) or uint8; got dtype {image.dtype}")
        return _check_unit_range(image.detach().float().cpu(), "float image")
    raise ValueError(
        f"cannot use a {type(image).__name__} as an image: pass a path, a PIL image, a numpy [h, w, 3] array or a "
        "torch [3, h, w] tensor"
    )


def fit_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Fit ``image [3, h, w]`` to ``[3, height, width]``: resize to cover, then center crop.

    Policy: scale by ``max(height / h, width / w)`` keeping the aspect ratio, so the image covers the target in
    both directions (nothing is padded or stretched), then cut the centre ``height x width`` window; the part of
    the longer side that does not fit is lost evenly on both ends. Resizing is bicubic with antialiasing,
    clamped to [0, 1]. An image already of the target size is returned unchanged (bit for bit). An image with a
    side below half the target side gets a one-line warning: it will be upscaled (blurry).
    """
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image
    if h < height / 2 or w < width / 2:
        warnings.warn(f"image of {h}x{w} is much smaller than the {height}x{width} video; it will be upscaled")
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bicubic", antialias=True,
                            align_corners=False)[0].clamp(0, 1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[:, top : top + height, left : left + width]


def frame_mask(num_frames: int, temporal_factor: int = 4, last: bool = False) -> torch.Tensor:
    """Wan's image-to-video mask ``[temporal_factor, F']`` (F' = latent frames): which pixel frames are given.

    1 at pixel frame 0 (and at frame ``num_frames - 1`` when ``last``), 0 elsewhere; frame 0 is repeated
    ``temporal_factor`` times so the frames pack into ``F' x temporal_factor``, and each of the ``temporal_factor``
    channels holds one position within a latent frame (diffusers' ``mask_lat_size``).
    """
    mask = torch.zeros(num_frames)
    mask[0] = 1
    if last:
        mask[num_frames - 1] = 1
    mask = torch.cat([mask[:1].repeat(temporal_factor), mask[1:]])
    return mask.view(-1, temporal_factor).transpose(0, 1)


def image_condition(
    vae, images: torch.Tensor, num_frames: int, last_images: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """The I2V channels the DiT gets besides the noisy latents: ``[B, T + z_dim, F', H/8, W/8]`` in fp32.

    ``images`` (and ``last_images``) ``[B, 3, H, W]`` in [-1, 1] become a video ``[image, 0, ..., 0, (last)]`` of
    ``num_frames`` frames, encoded by ``vae`` (posterior mode, in the VAE's dtype and device) and normalised with
    ``vae.normalize_latents``; the ``frame_mask`` (T = the VAE's temporal factor channels) goes first, as Wan.
    """
    b, _, h, w = images.shape
    frames = [images[:, :, None]]
    num_zeros = num_frames - 1 - (last_images is not None)
    if num_zeros < 0:
        raise ValueError(f"a first and a last image need num_frames >= 2; got {num_frames}")
    frames.append(images.new_zeros(b, 3, num_zeros, h, w))
    if last_images is not None:
        if last_images.shape != images.shape:
            raise ValueError(f"last_images {tuple(last_images.shape)} must match images {tuple(images.shape)}")
        frames.append(last_images[:, :, None])
    param = next(vae.parameters())
    video = torch.cat(frames, dim=2).to(device=param.device, dtype=param.dtype)
    latents = vae.normalize_latents(vae.encode(video).latent_dist.mode().float())
    mask = frame_mask(num_frames, vae.temporal_compression, last=last_images is not None).to(latents.device)
    mask = mask[None, :, :, None, None].expand(b, -1, -1, *latents.shape[-2:])
    return torch.cat([mask, latents], dim=1)
