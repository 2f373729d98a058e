"""Text-to-video: prompts in, videos out, with any guidance (CFG, STG-R/A, APG, CFG-Zero*) over the shared loop."""

from __future__ import annotations

import os
from typing import Optional, Union

import torch
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from pipelines.base import VideoDiffusionPipeline, load_wan_components


def make_scheduler(name: str = "unipc", flow_shift: float = 3.0, num_train_timesteps: int = 1000):
    """A flow-matching scheduler by name: ``"unipc"`` (Wan's default, flow prediction) or ``"euler"``."""
    if name == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift,
            num_train_timesteps=num_train_timesteps,
        )
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=flow_shift, num_train_timesteps=num_train_timesteps)
    raise ValueError(f"unknown scheduler {name!r}; choose 'unipc' or 'euler'")


class TextToVideoPipeline(VideoDiffusionPipeline):
    """Text-to-video with a ``VideoDiT``, a ``CausalVideoVAE`` and any transformers text encoder (UMT5 for Wan).

    Components: ``tokenizer``, ``text_encoder``, ``transformer``, ``vae``, ``scheduler`` (flow matching:
    ``UniPCMultistepScheduler`` with ``flow_prediction`` or ``FlowMatchEulerDiscreteScheduler``).
    """

    def __init__(self, tokenizer, text_encoder, transformer, vae, scheduler):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler
        )

    def check_inputs(self, *args, **kwargs) -> None:
        """The shared checks, plus: the transformer must be a text-to-video model (no image channels)."""
        cfg = self.transformer.config
        if cfg.in_channels != cfg.out_channels:
            raise ValueError(
                f"this transformer is an image-to-video model (in_channels {cfg.in_channels} != out_channels "
                f"{cfg.out_channels}: it expects image condition channels); use ImageToVideoPipeline"
            )
        super().check_inputs(*args, **kwargs)

    @classmethod
    def from_wan(cls, path: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None) -> "TextToVideoPipeline":
        """Load a diffusers-format Wan2.1 T2V directory (``model_index.json`` + component subfolders)."""
        parts, _ = load_wan_components(path, torch_dtype, expect="WanPipeline")
        return cls(**parts)
