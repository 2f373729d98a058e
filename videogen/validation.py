"""Input checks shared by models and pipelines: each failure names the rule, the value and the nearest valid values."""

from __future__ import annotations

import torch


def nearest_valid(value: int, step: int, offset: int = 0, minimum: int | None = None) -> list[int]:
    """The valid values (of the form ``offset + step*k``, k >= 0) just below and above ``value``."""
    minimum = offset if minimum is None else minimum
    below = offset + ((value - offset) // step) * step
    candidates = {max(below, minimum), max(below + step, minimum)}
    return sorted(candidates)


def check_num_frames(num_frames: int, temporal_factor: int = 4, name: str = "num_frames") -> None:
    """Frame counts must be ``1 + temporal_factor*k`` (the causal VAE keeps frame 0 alone)."""
    if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % temporal_factor:
        near = nearest_valid(int(num_frames), temporal_factor, offset=1)
        raise ValueError(
            f"{name} must be 1 + {temporal_factor}k (1, {1 + temporal_factor}, {1 + 2 * temporal_factor}, ...); "
            f"got {num_frames}; nearest valid values: {', '.join(map(str, near))}"
        )


def check_multiple(name: str, value: int, factor: int) -> None:
    """``value`` (a height or width) must be a positive multiple of ``factor``."""
    if not isinstance(value, int) or value < factor or value % factor:
        near = nearest_valid(int(value), factor, offset=0, minimum=factor)
        raise ValueError(
            f"{name} must be a multiple of {factor}; got {value}; nearest valid values: {', '.join(map(str, near))}"
        )


def check_video_tensor(
    video: torch.Tensor, channels: int, name: str = "video", temporal_factor: int = 4, spatial_factor: int = 1
) -> None:
    """A 5-D ``[B, C, F, H, W]`` floating tensor with the given channels, 1+4k frames and divisible size."""
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, C, F, H, W]; got {type(video).__name__}")
    if video.ndim != 5:
        raise ValueError(f"{name} must be 5-D [B, C, F, H, W]; got shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {video.dtype}")
    if video.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (dim 1 of [B, C, F, H, W]); got {video.shape[1]}")
    if temporal_factor > 1:
        check_num_frames(video.shape[2], temporal_factor, name=f"{name} frame count")
    if spatial_factor > 1:
        check_multiple(f"{name} height", video.shape[3], spatial_factor)
        check_multiple(f"{name} width", video.shape[4], spatial_factor)


def check_same_device_dtype(module: torch.nn.Module, tensor: torch.Tensor, name: str) -> None:
    """``tensor`` must live on the module's device (dtype mismatches are cast by the caller, devices never)."""
    param = next(module.parameters(), None)
    if param is not None and tensor.device != param.device:
        raise ValueError(
            f"{name} is on {tensor.device} but {type(module).__name__} is on {param.device}; move one of them"
        )
