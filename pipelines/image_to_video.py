"""Image-to-video: a first frame (optionally also a last frame) and prompts in, videos out, over the shared loop."""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np
import torch
from diffusers.utils.torch_utils import get_module_execution_device
from PIL import Image

from pipelines.base import Conditions, VideoDiffusionPipeline, load_wan_components
from videogen.conditioning.image import fit_image, image_condition, load_image
from videogen.guidance import Guidance, Guider, Pass


def as_list(images) -> list:
    """One image or a list/tuple of images -> a list."""
    return list(images) if isinstance(images, (list, tuple)) else [images]


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, h, w]`` in [0, 1] -> an RGB PIL image (exact for images that came from uint8 pixels)."""
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def repeat_for_batch(x: torch.Tensor, num_prompts: int, num_videos_per_prompt: int) -> torch.Tensor:
    """``[1 | num_prompts, ...]`` -> ``[num_prompts * num_videos_per_prompt, ...]`` in the prompts' order."""
    if x.shape[0] == 1:
        return x.repeat(num_prompts * num_videos_per_prompt, *([1] * (x.ndim - 1)))
    return x.repeat_interleave(num_videos_per_prompt, dim=0)


def image_encoder_tokens(image_encoder, image_processor, images: Sequence[Image.Image], device) -> torch.Tensor:
    """Image-encoder tokens ``[N, L, image_dim]`` on ``device``: the penultimate hidden states, as Wan2.1 uses CLIP."""
    inputs = image_processor(images=list(images), return_tensors="pt").to(get_module_execution_device(image_encoder))
    return image_encoder(**inputs, output_hidden_states=True).hidden_states[-2].to(device)


class ImageToVideoPipeline(VideoDiffusionPipeline):
    """Image-to-video (Wan2.1 I2V / first-last-frame) with a ``VideoDiT``, a ``CausalVideoVAE`` and a text encoder.

    Components: ``tokenizer``, ``text_encoder``, ``transformer``, ``vae``, ``scheduler`` as ``TextToVideoPipeline``,
    plus, for transformers with image cross-attention (config ``image_dim`` set, as Wan2.1 I2V 14B), an
    ``image_encoder`` (transformers ``CLIPVisionModel``) and its ``image_processor`` (``CLIPImageProcessor``).

    The DiT sees ``noise || mask || image latents`` on channels (``in_channels = 2 z_dim + 4`` for Wan): the given
    frame(s) encoded by the VAE inside an otherwise black video, and a mask saying which pixel frames are given.
    Images are fitted to the video size by "resize to cover, then center crop" (``videogen.conditioning.image.
    fit_image``): scaled with the aspect ratio kept until they cover ``height x width``, then cut in the centre.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->transformer->vae"
    _optional_components = ["image_encoder", "image_processor"]

    def __init__(self, tokenizer, text_encoder, transformer, vae, scheduler, image_encoder=None, image_processor=None,
                 image_optional: bool = False):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler,
            image_encoder=image_encoder, image_processor=image_processor,
        )
        # A model trained with the image condition dropped for part of its batches (train.image_dropout, as
        # Wan2.2-TI2V) also generates from text alone: with image=None it gets the all-zero condition it saw then.
        self.register_to_config(image_optional=bool(image_optional))

    @classmethod
    def from_wan(
        cls, path: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None
    ) -> "ImageToVideoPipeline":
        """Load a diffusers-format Wan2.1 I2V or FLF2V directory (``WanImageToVideoPipeline``; its ``image_encoder``
        and ``image_processor`` subfolders are optional). The VAE and the image encoder stay fp32."""
        parts, _ = load_wan_components(
            path, torch_dtype, optional=("image_encoder", "image_processor"), expect="WanImageToVideoPipeline"
        )
        return cls(**parts)

    # ------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------

    @property
    def image_tokens_per_video(self) -> int:
        """Images whose encoder tokens one video gets: 0 (no image cross-attention), 1, or 2 (first-last-frame)."""
        cfg = self.transformer.config
        return 0 if cfg.image_dim is None else (2 if cfg.pos_embed_seq_len else 1)

    def check_image_inputs(self, image, last_image, image_embeds, num_prompts: int, num_frames: int) -> None:
        """The image-to-video rules (the model, the images, the image tokens); a broken one is a ``ValueError``."""
        cfg = self.transformer.config
        if cfg.in_channels == cfg.out_channels:
            raise ValueError(
                f"this transformer is a text-to-video model (in_channels == out_channels == {cfg.in_channels}: no "
                "image condition channels); use TextToVideoPipeline"
            )
        need = cfg.out_channels + self.vae_scale_factor_temporal + self.vae.config.z_dim
        if cfg.in_channels != need:
            raise ValueError(
                f"transformer in_channels ({cfg.in_channels}) must be out_channels + mask channels + VAE z_dim = "
                f"{cfg.out_channels} + {self.vae_scale_factor_temporal} + {self.vae.config.z_dim} = {need}"
            )
        if image is None:
            if not self.config.get("image_optional", False):
                raise ValueError("ImageToVideoPipeline needs an image (the first frame): pass image=...; this model "
                                 "was not trained to generate from text alone (model_index.json image_optional)")
            if last_image is not None or image_embeds is not None:
                raise ValueError("last_image / image_embeds need an image (the first frame) too")
            if self.image_tokens_per_video:
                raise ValueError("text-only generation is for models without image tokens (image_dim=None)")
            return
        for name, value in (("image", image), ("last_image", last_image)):
            if isinstance(value, (list, tuple)) and len(value) not in (1, num_prompts):
                raise ValueError(
                    f"{name} is a list of {len(value)} images but there are {num_prompts} prompts; pass one image "
                    "or one per prompt"
                )
        if last_image is not None and num_frames < 2:
            raise ValueError(f"a last_image needs num_frames >= 2 (1 + 4k: 5, 9, ...); got {num_frames}")
        per_video = self.image_tokens_per_video
        if per_video == 0:
            if image_embeds is not None:
                raise ValueError("image_embeds were given but this transformer takes no image tokens (image_dim=None)")
            return
        if per_video == 2 and last_image is None and image_embeds is None:
            raise ValueError(
                "this transformer is a first-last-frame model (config pos_embed_seq_len set): pass last_image too"
            )
        if per_video == 1 and last_image is not None:
            raise ValueError(
                "this transformer's image tokens are for a first frame only (config pos_embed_seq_len is None); a "
                "last_image needs a first-last-frame model"
            )
        if image_embeds is None and (self.image_encoder is None or self.image_processor is None):
            raise ValueError(
                f"this transformer takes image tokens (config image_dim={cfg.image_dim}) but the pipeline has no "
                "image_encoder / image_processor: add them (e.g. CLIPVisionModel + CLIPImageProcessor) or pass "
                "image_embeds"
            )
        if image_embeds is not None and (
            image_embeds.ndim != 3 or image_embeds.shape[-1] != cfg.image_dim
            or image_embeds.shape[0] not in (per_video, per_video * num_prompts)
        ):
            raise ValueError(
                f"image_embeds must be [N, L, image_dim={cfg.image_dim}] with N = {per_video} (shared) or "
                f"{per_video * num_prompts} ({per_video} per prompt); got {tuple(image_embeds.shape)}"
            )

    def encode_image(self, images: Sequence[Image.Image], device: Optional[torch.device] = None) -> torch.Tensor:
        """Image-encoder tokens ``[N, L, image_dim]``: the penultimate hidden states, as Wan2.1 uses CLIP."""
        return image_encoder_tokens(self.image_encoder, self.image_processor, images, device or self._execution_device)

    def prepare_image_conditions(
        self, image, last_image, image_embeds, num_prompts, num_videos_per_prompt, height, width, num_frames, device
    ) -> dict:
        """The condition channels ``[B, T + z, F', h, w]`` and image tokens (or None), repeated to the batch.

        One image serves every prompt; a list gives one per prompt. The video's first (last) frame is the image
        fitted by ``fit_image``; the image encoder gets the image as given (its processor resizes and crops to
        its own square), as diffusers and Wan2.1 do.
        """
        if image is None:  # text only (an image_optional model): no given frame, the zero condition it was trained on
            b = num_prompts * num_videos_per_prompt
            shape = (b, self.vae_scale_factor_temporal + self.vae.config.z_dim,
                     (num_frames - 1) // self.vae_scale_factor_temporal + 1,
                     height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
            return {"image_condition": torch.zeros(shape, device=device), "image_embeds": None}
        firsts = [load_image(x) for x in as_list(image)]
        lasts = None if last_image is None else [load_image(x) for x in as_list(last_image)]
        n = 1 if len(firsts) == 1 and (lasts is None or len(lasts) == 1) else num_prompts
        firsts = firsts * n if len(firsts) == 1 else firsts
        lasts = None if lasts is None else (lasts * n if len(lasts) == 1 else lasts)

        def pixels(images):  # [n, 3, H, W] in [-1, 1]
            return torch.stack([fit_image(x, height, width) for x in images]).to(device) * 2 - 1

        condition = image_condition(self.vae, pixels(firsts), num_frames, None if lasts is None else pixels(lasts))
        condition = repeat_for_batch(condition.to(device), num_prompts, num_videos_per_prompt)

        per_video = self.image_tokens_per_video
        if per_video and image_embeds is None:
            pairs = zip(firsts, lasts) if per_video == 2 else ((x,) for x in firsts)
            image_embeds = self.encode_image([to_pil(x) for pair in pairs for x in pair], device)
        if image_embeds is not None:
            # [n * per_video, L, D] -> per video [n, per_video, L, D] -> batch, flattened back: the DiT folds
            # first-last pairs itself (its pos_embed_seq_len = 2 L).
            grouped = image_embeds.to(device).unflatten(0, (-1, per_video))
            image_embeds = repeat_for_batch(grouped, num_prompts, num_videos_per_prompt).flatten(0, 1)
        return {"image_condition": condition, "image_embeds": image_embeds}

    # ------------------------------------------------------------------------------------------
    # The shared loop
    # ------------------------------------------------------------------------------------------

    def pass_inputs(self, latents: torch.Tensor, p: Pass, conds: Conditions) -> dict:
        """The base inputs with the image condition on channels and the image tokens (the same for every pass)."""
        inputs = super().pass_inputs(latents, p, conds)
        condition, embeds = conds.extra["image_condition"], conds.extra["image_embeds"]
        inputs["hidden_states"] = torch.cat([latents, condition], dim=1).to(self.transformer.dtype)
        inputs["encoder_hidden_states_image"] = None if embeds is None else embeds.to(self.transformer.dtype)
        return inputs

    @torch.no_grad()
    def __call__(
        self,
        image=None,
        prompt=None,
        negative_prompt=None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        guidance: Union[Guidance, Guider, None] = None,
        num_videos_per_prompt: int = 1,
        generator=None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        image_embeds: Optional[torch.Tensor] = None,
        last_image=None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        max_sequence_length: int = 512,
        batch_guidance: bool = True,
        extra_conditions: Optional[dict] = None,
        attention_kwargs: Optional[dict] = None,
        step_cache=None,
    ):
        """Generate videos that start from ``image`` (and end at ``last_image``).

        Args (diffusers' ``WanImageToVideoPipeline`` names; the rest as ``TextToVideoPipeline``):
            image: the first frame: a path, PIL image, numpy ``[h, w, 3]`` (uint8, or float in [0, 1]) or torch
                ``[3, h, w]`` in [0, 1]; one for all prompts or a list with one per prompt. None generates from
                text alone, for a model saved with ``image_optional=True`` (trained with the image dropped). It is fitted to
                ``height x width`` by resizing to cover (aspect ratio kept) and center cropping; pass an image of
                exactly that size to keep every pixel.
            last_image: optional last frame (first-last-frame generation), in the same forms.
            image_embeds: precomputed image-encoder tokens ``[N, L, image_dim]`` instead of the image encoder
                (N = 1 or one per prompt; doubled, first then last, for first-last-frame models).
            guidance: any ``videogen.guidance`` guiders; every pass keeps the image (CFG drops the text only).
            attention_kwargs: ``{"scale": s}`` scales the loaded LoRAs for this call (diffusers' convention).

            step_cache: a ``videogen.step_cache.StepCache`` or a policy name (as ``TextToVideoPipeline``).

        Returns: ``VideoPipelineOutput`` with ``.frames`` (and ``.step_cache``, the steps computed, with a cache).
        """
        base_args = dict(
            prompt=prompt, negative_prompt=negative_prompt, height=height, width=width, num_frames=num_frames,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            num_videos_per_prompt=num_videos_per_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, output_type=output_type,
        )
        tensor_inputs = getattr(callback_on_step_end, "tensor_inputs", callback_on_step_end_tensor_inputs)
        self.check_inputs(**base_args, callback_tensor_inputs=tensor_inputs)
        num_prompts = (1 if isinstance(prompt, str) else len(prompt)) if prompt is not None else prompt_embeds.shape[0]
        self.check_image_inputs(image, last_image, image_embeds, num_prompts, num_frames)
        conditions = self.prepare_image_conditions(
            image, last_image, image_embeds, num_prompts, num_videos_per_prompt, height, width, num_frames,
            self._execution_device,
        )
        return super().__call__(
            **base_args, guidance=guidance, generator=generator, latents=latents, return_dict=return_dict,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            max_sequence_length=max_sequence_length, batch_guidance=batch_guidance,
            extra_conditions={**(extra_conditions or {}), **conditions}, attention_kwargs=attention_kwargs,
            step_cache=step_cache,
        )


def load_base_pipeline(path: Union[str, os.PathLike]):
    """A text- or image-to-video pipeline directory (ours, or a diffusers-format Wan2.1 T2V / I2V one), loaded as
    the class its ``model_index.json`` names."""
    import json

    from pipelines.text_to_video import TextToVideoPipeline

    path = os.fspath(path)
    with open(os.path.join(path, "model_index.json"), encoding="utf-8") as f:
        name = json.load(f).get("_class_name")
    image = name in ("ImageToVideoPipeline", "WanImageToVideoPipeline")
    cls = ImageToVideoPipeline if image else TextToVideoPipeline
    return cls.from_wan(path) if name in ("WanPipeline", "WanImageToVideoPipeline") else cls.from_pretrained(path)
