"""Text-to-video: prompts in, videos out, with any guidance (CFG, STG-R/A, APG, CFG-Zero*) over the shared loop."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import torch
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from pipelines.base import VideoDiffusionPipeline


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

    @classmethod
    def from_wan(cls, path: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None) -> "TextToVideoPipeline":
        """Load a diffusers-format Wan2.1 T2V directory (``model_index.json`` + component subfolders)."""
        import diffusers
        import transformers

        from videogen.models.transformer import VideoDiT
        from videogen.models.vae import CausalVideoVAE

        path = Path(path)
        if not (path / "model_index.json").exists():
            raise FileNotFoundError(f"{path} is not a diffusers pipeline directory (no model_index.json)")
        index = json.loads((path / "model_index.json").read_text())

        def component_class(name, library):
            return getattr(library, index[name][1])

        text_encoder = component_class("text_encoder", transformers).from_pretrained(
            path / "text_encoder", torch_dtype=torch_dtype
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(path / "tokenizer")
        scheduler = component_class("scheduler", diffusers).from_pretrained(path / "scheduler")
        transformer = VideoDiT.from_wan(path / "transformer", torch_dtype=torch_dtype)
        vae = CausalVideoVAE.from_wan(path / "vae")  # the VAE stays fp32, as in Wan's reference scripts
        return cls(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler)
