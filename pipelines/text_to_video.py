"""Text-to-video: prompts in, videos out, with any guidance (CFG, STG-R/A, APG, CFG-Zero*) over the shared loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from pipelines.base import VideoDiffusionPipeline
from videogen.guidance import Guidance, Guider


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
        index = __import__("json").loads((path / "model_index.json").read_text())

        def component_class(name, library):
            lib, cls_name = index[name]
            return getattr(library, cls_name)

        text_encoder = component_class("text_encoder", transformers).from_pretrained(
            path / "text_encoder", torch_dtype=torch_dtype
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(path / "tokenizer")
        scheduler = component_class("scheduler", diffusers).from_pretrained(path / "scheduler")
        transformer = VideoDiT.from_wan(path / "transformer", torch_dtype=torch_dtype)
        vae = CausalVideoVAE.from_wan(path / "vae")  # the VAE stays fp32, as in Wan's reference scripts
        return cls(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, list[str], None] = None,
        negative_prompt: Union[str, list[str], None] = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        guidance: Union[Guidance, Guider, None] = None,
        num_videos_per_prompt: int = 1,
        generator: Union[torch.Generator, list[torch.Generator], None] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        max_sequence_length: int = 512,
        batch_guidance: bool = True,
    ):
        """Generate videos from text.

        Args (diffusers' names and defaults, as ``WanPipeline``):
            prompt / negative_prompt: text or lists of text (negative defaults to ``""`` when guidance needs it).
            height, width: pixels, multiples of VAE factor x patch (16 for Wan); num_frames: 1 + 4k.
            num_inference_steps: scheduler steps. guidance_scale: CFG scale (used when ``guidance`` is None).
            guidance: a ``videogen.guidance.Guidance`` (or one ``Guider``), e.g. ``Guidance(CFG(5), STG(1, [2]))``.
            num_videos_per_prompt, generator, latents: batch and noise control.
            prompt_embeds / negative_prompt_embeds: precomputed ``[B, L, text_dim]`` text states.
            output_type: ``"np"`` ``[B,F,H,W,C]`` in [0,1], ``"pt"`` ``[B,F,C,H,W]``, ``"pil"``, ``"latent"`` (5-D).
            return_dict: return ``VideoPipelineOutput`` (else a 1-tuple).
            callback_on_step_end(pipe, step, timestep, tensors) -> dict, with ``callback_on_step_end_tensor_inputs``
                from ``latents``, ``prompt_embeds``, ``negative_prompt_embeds``.
            max_sequence_length: text tokens (Wan: 512).
            batch_guidance: stack all passes of a step into one DiT forward (False: one forward per pass).

        Returns: ``VideoPipelineOutput`` with ``.frames``.
        """
        return self.generate(
            prompt=prompt, negative_prompt=negative_prompt, height=height, width=width, num_frames=num_frames,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, guidance=guidance,
            num_videos_per_prompt=num_videos_per_prompt, generator=generator, latents=latents,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, output_type=output_type,
            return_dict=return_dict, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            max_sequence_length=max_sequence_length, batch_guidance=batch_guidance,
        )
