"""Trajectory control: tracks in (a file, the inline form or tensors), videos whose objects follow them out; Tora's
adapter on any base DiT, or ATI / Wan-Move condition transforms on Wan I2V checkpoints, over the shared loop."""

from __future__ import annotations

import os
import re
import warnings
from typing import Optional, Sequence, Union

import torch

from pipelines.adapter_dir import AdapterDirMixin
from pipelines.base import Conditions, load_wan_components
from pipelines.image_to_video import ImageToVideoPipeline, as_list
from videogen.conditioning.image import load_image
from videogen.conditioning.trajectory import ati_condition, tora_flow_video, tracks_from, wan_move_condition
from videogen.guidance import Guidance, Guider, Pass, camera_guidance
from videogen.models.adapters.trajectory import TrajectoryAdapter  # imported here, so from_pretrained finds it
from videogen.validation import check_multiple

TRAJECTORY_MODES = ("tora", "ati", "wan-move")
# The shapes world's object nouns: how many objects a prompt names (for the "more tracks than objects" warning).
OBJECT_NOUNS = ("circle", "square", "triangle")


def count_named_objects(prompt: str, nouns: Sequence[str] = OBJECT_NOUNS) -> int:
    """How many objects ``prompt`` names: occurrences of ``nouns`` (and their plurals) as whole words."""
    pattern = r"\b(" + "|".join(re.escape(n) for n in nouns) + r")s?\b"
    return len(re.findall(pattern, prompt.lower()))


def flow_latents(vae, flows: torch.Tensor) -> torch.Tensor:
    """Flow videos ``[B, 3, F, H, W]`` in [-1, 1] through ``vae``: posterior mode, normalised like the video
    latents (the full-sequence path, which equals the streaming one and is faster on a batch)."""
    param = next(vae.parameters())
    flows = flows.to(device=param.device, dtype=param.dtype)
    return vae.normalize_latents(vae.encode(flows, streaming=False).latent_dist.mode().float())


def motion_latents(vae, tracks: torch.Tensor, visible: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tora's motion latents ``[1, z_dim, F', h, w]``: the tracks' flow video (``tora_flow_video``: sparse flow,
    Gaussian blur, colour wheel, in [-1, 1]) through ``vae`` (``flow_latents``)."""
    return flow_latents(vae, tora_flow_video(tracks, visible, height, width)[None])


class TrajectoryControlPipeline(AdapterDirMixin, ImageToVideoPipeline):
    """Videos whose objects follow given tracks: the first object the prompt names follows the first track, and so on.

    Modes (``trajectory_mode``):

    - ``tora``: our ``TrajectoryAdapter`` (component ``trajectory_adapter/``): the tracks become Tora's flow video,
      the VAE encodes it, the adapter turns the latents into one fuser per block, ``h + GN(h) gamma + beta`` on
      each block's normalised self-attention input. Works on text-to-video bases (``in_channels == out_channels``)
      and on bases in Wan's I2V layout (``noise || mask || image latents``; an image optional when the base was
      trained with the image dropped, ``image_optional``).
    - ``ati`` / ``wan-move``: Wan2.1-I2V-14B fine-tunes (bytedance/ATI, ali-vilab/Wan-Move) read the tracks from
      the I2V condition itself: frame 0's latent features splatted along each track (ATI: Gaussian weights,
      top 2) or copied to the nearest latent pixel (Wan-Move). No adapter; a start image is required.

    A guidance pass with ``extra=False`` runs without the trajectory (the adapter's terms zero, or the condition
    untransformed): ``trajectory_guidance_scale > 0`` adds ``s (e(c, traj) - e(c, no traj))`` (the nested
    ``MultiCondition`` of ``videogen.guidance``); at 0 the trajectory is in every pass and CFG acts on the text.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->trajectory_adapter->transformer->vae"
    adapter_component, adapter_class = "trajectory_adapter", TrajectoryAdapter
    _optional_components = ["image_encoder", "image_processor", "trajectory_adapter"]

    def __init__(self, tokenizer, text_encoder, transformer, vae, scheduler, image_encoder=None, image_processor=None,
                 trajectory_adapter=None, image_optional: bool = False, trajectory_mode: Optional[str] = None):
        super().__init__(tokenizer, text_encoder, transformer, vae, scheduler, image_encoder, image_processor,
                         image_optional=image_optional)
        self.register_modules(trajectory_adapter=trajectory_adapter)
        if trajectory_mode is not None and trajectory_mode not in TRAJECTORY_MODES:
            raise ValueError(f"trajectory_mode must be one of {TRAJECTORY_MODES}; got {trajectory_mode!r}")
        self.register_to_config(trajectory_mode=trajectory_mode)

    @classmethod
    def from_base(cls, base, trajectory_adapter=None, trajectory_mode: Optional[str] = None):
        """A trajectory pipeline over the components of a loaded base pipeline (shared, not copied) with a
        ``TrajectoryAdapter`` (Tora mode) or none (``trajectory_mode`` ``ati`` / ``wan-move`` on a Wan I2V base)."""
        parts = {k: getattr(base, k, None) for k in ("tokenizer", "text_encoder", "transformer", "vae", "scheduler",
                                                     "image_encoder", "image_processor")}
        optional = bool(getattr(base, "config", {}).get("image_optional", False))
        return cls(**parts, trajectory_adapter=trajectory_adapter, image_optional=optional,
                   trajectory_mode=trajectory_mode)

    @classmethod
    def from_wan(cls, path: Union[str, os.PathLike], trajectory_mode: str = "ati",
                 torch_dtype: Optional[torch.dtype] = None, transformer=None) -> "TrajectoryControlPipeline":
        """ATI or Wan-Move: a diffusers-format Wan2.1 I2V directory (``WanImageToVideoPipeline``) whose transformer
        is the fine-tune (or ``transformer``: the released weights, any layout ``VideoDiT.from_wan`` reads)."""
        if trajectory_mode not in ("ati", "wan-move"):
            raise ValueError(f"from_wan loads ATI or Wan-Move checkpoints: trajectory_mode must be 'ati' or "
                             f"'wan-move'; got {trajectory_mode!r}")
        parts, _ = load_wan_components(path, torch_dtype, optional=("image_encoder", "image_processor"),
                                       expect="WanImageToVideoPipeline", transformer=transformer)
        return cls(**parts, trajectory_mode=trajectory_mode)

    # ------------------------------------------------------------------------------------------
    # An adapter-only directory (the shipped trajectory model points at its base): pipelines.adapter_dir
    # ------------------------------------------------------------------------------------------

    def adapter_info(self) -> dict:
        """``base.json``'s extra field: the trajectory mode (always ``tora``: the only mode with an adapter)."""
        return {"trajectory_mode": "tora"}

    @classmethod
    def from_base_options(cls, info: dict) -> dict:
        """``from_base``'s ``trajectory_mode`` from ``base.json``."""
        return {"trajectory_mode": info.get("trajectory_mode", "tora")}

    # ------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------

    @property
    def image_layout(self) -> str:
        """``text`` (noise only: a text-to-video base) or ``i2v`` (Wan's noise || mask || image latents)."""
        cfg = self.transformer.config
        return "text" if cfg.in_channels == cfg.out_channels else "i2v"

    def resolve_mode(self, trajectory_mode: Optional[str]) -> str:
        """The mode of this call: as given, else the pipeline's, else ``tora`` when it has an adapter. A pipeline
        that cannot take a trajectory at all is a ``ValueError`` saying so."""
        mode = trajectory_mode or self.config.get("trajectory_mode") or (
            "tora" if getattr(self, "trajectory_adapter", None) is not None else None)
        if mode is None:
            raise ValueError("this model has no trajectory adapter and no trajectory mode, so a trajectory would be "
                             "ignored: load a trajectory model (a TrajectoryControlPipeline with a trajectory_adapter, "
                             "or an ATI / Wan-Move checkpoint with TrajectoryControlPipeline.from_wan)")
        if mode not in TRAJECTORY_MODES:
            raise ValueError(f"trajectory_mode must be one of {TRAJECTORY_MODES}; got {mode!r}")
        return mode

    def check_trajectory_model(self, mode: str) -> None:
        """The model must be able to take the trajectory in ``mode``; a mismatch is a ``ValueError`` naming it."""
        cfg, adapter = self.transformer.config, getattr(self, "trajectory_adapter", None)
        if mode == "tora":
            if adapter is None:
                raise ValueError("trajectory_mode 'tora' needs a trajectory_adapter (TrajectoryAdapter); this "
                                 "pipeline has none")
            if not isinstance(adapter, TrajectoryAdapter):
                raise ValueError(f"trajectory_adapter must be a videogen.models.adapters.TrajectoryAdapter; got "
                                 f"{type(adapter).__name__}")
            a = adapter.config
            if a.dim != cfg.dim or tuple(a.patch_size) != tuple(cfg.patch_size) or a.num_layers > cfg.num_layers:
                raise ValueError(f"the trajectory_adapter was built for a DiT of width {a.dim}, patch "
                                 f"{tuple(a.patch_size)} and >= {a.num_layers} blocks; this transformer has width "
                                 f"{cfg.dim}, patch {tuple(cfg.patch_size)} and {cfg.num_layers} blocks")
            if a.latent_channels != self.vae.config.z_dim:
                raise ValueError(f"the trajectory_adapter reads {a.latent_channels} latent channels but the VAE has "
                                 f"{self.vae.config.z_dim}")
        elif self.image_layout != "i2v":
            raise ValueError(f"trajectory_mode {mode!r} rewrites Wan's image-to-video condition; this transformer "
                             f"has no image channels (in_channels == out_channels == {cfg.in_channels})")

    def check_trajectory_inputs(self, mode, image, trajectory_strength, trajectory_guidance_scale, guidance,
                                height, width, num_frames) -> None:
        """The trajectory rules that need no file read; a broken one is a ``ValueError``."""
        self.check_trajectory_model(mode)
        if mode in ("ati", "wan-move") and image is None:
            raise ValueError(f"trajectory_mode {mode!r} moves the start image's features along the tracks: pass "
                             "image=...")
        if self.image_layout == "text" and image is not None:
            raise ValueError("image was given but this transformer has no image channels (a text-to-video base)")
        if not isinstance(trajectory_strength, (int, float)) or not trajectory_strength >= 0:
            raise ValueError(f"trajectory_strength must be a number >= 0; got {trajectory_strength!r}")
        if trajectory_guidance_scale < 0:
            raise ValueError(f"trajectory_guidance_scale must be >= 0 (0: off); got {trajectory_guidance_scale}")
        if trajectory_guidance_scale > 0 and guidance is not None:
            raise ValueError("pass trajectory guidance either as trajectory_guidance_scale or inside guidance= "
                             "(videogen.guidance.MultiCondition), not both")
        factor = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        check_multiple("height", height, factor)
        check_multiple("width", width, factor)

    def prepare_tracks(self, trajectory, visible, prompts, num_frames: int, height: int, width: int):
        """``(tracks [N, F, 2], visible [N, F])`` from any form ``tracks_from`` reads; one warning when there are
        more tracks than objects a prompt names (the extra tracks move nothing the prompt asked for)."""
        tracks, visible = tracks_from(trajectory, num_frames, height, width, visible=visible)
        for prompt in prompts or ():
            named = count_named_objects(prompt)
            if 0 < named < tracks.shape[0]:
                warnings.warn(f"{tracks.shape[0]} tracks but the prompt names {named} object(s) ({prompt!r}): track "
                              f"i moves the i-th object named, so tracks {named + 1}..{tracks.shape[0]} have no "
                              "object to move", stacklevel=3)
                break
        return tracks, visible

    # ------------------------------------------------------------------------------------------
    # The shared loop
    # ------------------------------------------------------------------------------------------

    def pass_inputs(self, latents: torch.Tensor, p: Pass, conds: Conditions) -> dict:
        """The base inputs, with the I2V condition (the track-rewritten one for ATI / Wan-Move passes with the
        trajectory) and the adapter's modulations (zero terms for passes without it)."""
        extra = conds.extra
        if self.image_layout == "i2v":
            inputs = super().pass_inputs(latents, p, conds)
            if p.extra and extra.get("trajectory_condition") is not None:
                inputs["hidden_states"] = torch.cat([latents, extra["trajectory_condition"]], dim=1).to(
                    self.transformer.dtype)
        else:
            inputs = super(ImageToVideoPipeline, self).pass_inputs(latents, p, conds)
        mods = extra.get("trajectory_modulations")
        if mods is not None:
            inputs["block_modulations"] = mods["on" if p.extra else "off"]
        return inputs

    @torch.no_grad()
    def __call__(
        self,
        prompt=None,
        trajectory=None,
        image=None,
        negative_prompt=None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        trajectory_guidance_scale: float = 0.0,
        trajectory_strength: float = 1.0,
        trajectory_mode: Optional[str] = None,
        visible=None,
        guidance: Union[Guidance, Guider, None] = None,
        num_videos_per_prompt: int = 1,
        generator=None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        image_embeds: Optional[torch.Tensor] = None,
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
        """Generate videos whose objects follow ``trajectory``.

        Args (the rest as ``ImageToVideoPipeline``):
            trajectory: tracks in output pixels: a file (``.json`` ours, ``.pth`` ATI, ``.npy`` Wan-Move, ``.txt``
                Tora), the inline form ``"x0,y0 x1,y1 ..."`` (one object at constant speed along the polyline),
                a ``{"tracks", "visible"}`` dict, a ``(tracks, visible)`` pair or ``[N, F, 2]`` (any F: resampled
                over the clip). Track i moves the i-th object the prompt names. Points outside the frame are
                clipped with a warning. None: a warning, and the model runs without it.
            visible: ``[N, F]`` visibility for array tracks (default all visible).
            image: the start image (Wan I2V-layout bases; required for ATI / Wan-Move).
            trajectory_mode: ``tora`` (the adapter), ``ati`` or ``wan-move``; default the pipeline's own.
            trajectory_strength: multiplies the adapter's gamma and beta (0: off); Tora mode only.
            trajectory_guidance_scale: ``s`` of ``e(0,0) + s_t (e(c,0) - e(0,0)) + s (e(c,traj) - e(c,0))``
                (0: the trajectory in every pass, CFG on the text only).
            guidance: any ``videogen.guidance`` chain instead; a pass with ``extra=False`` runs without the
                trajectory.
            step_cache: a ``videogen.step_cache.StepCache`` or a policy name (as ``TextToVideoPipeline``); the
                adapter's terms are computed once per call, so they cost nothing on skipped steps either.

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
        mode = self.resolve_mode(trajectory_mode)
        self.check_trajectory_inputs(mode, image, trajectory_strength, trajectory_guidance_scale, guidance, height,
                                     width, num_frames)
        num_prompts = (1 if isinstance(prompt, str) else len(prompt)) if prompt is not None else prompt_embeds.shape[0]
        if self.image_layout == "i2v":
            self.check_image_inputs(image, None, image_embeds, num_prompts, num_frames)
        prompts = [prompt] if isinstance(prompt, str) else prompt
        tracks = None if trajectory is None else self.prepare_tracks(trajectory, visible, prompts, num_frames,
                                                                     height, width)
        if tracks is None:
            warnings.warn("this is a trajectory model but no trajectory was given: it runs without one; pass "
                          "trajectory=FILE, an inline 'x,y x,y' path or tracks", stacklevel=2)
            if trajectory_guidance_scale > 0:
                raise ValueError("trajectory_guidance_scale needs a trajectory")
        images = None if image is None else [load_image(x) for x in as_list(image)]
        device = self._execution_device
        b = num_prompts * num_videos_per_prompt
        conditions = {}
        if self.image_layout == "i2v":
            conditions.update(self.prepare_image_conditions(images, None, image_embeds, num_prompts,
                                                            num_videos_per_prompt, height, width, num_frames, device))
        if tracks is not None and mode == "tora" and trajectory_strength > 0:
            adapter = self.trajectory_adapter
            motion = motion_latents(self.vae, *tracks, height, width).to(next(adapter.parameters()).device)
            layers = self.transformer.config.num_layers
            on = [None if m is None else m.expand(b) for m in adapter.block_modulations(
                motion, layers, scale=float(trajectory_strength))]
            off = [None if m is None else m.scaled(torch.zeros(b, device=m.gamma.device)) for m in on]
            conditions["trajectory_modulations"] = {"on": on, "off": off}
        if tracks is not None and mode in ("ati", "wan-move"):
            transform = ati_condition if mode == "ati" else wan_move_condition
            cond = conditions["image_condition"]
            conditions["trajectory_condition"] = torch.stack([transform(c, *tracks) for c in cond])
        if guidance is None:
            guidance = camera_guidance(guidance_scale, trajectory_guidance_scale if tracks is not None else 0.0)
        return super(ImageToVideoPipeline, self).__call__(
            **base_args, guidance=guidance, generator=generator, latents=latents, return_dict=return_dict,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            max_sequence_length=max_sequence_length, batch_guidance=batch_guidance,
            extra_conditions={**(extra_conditions or {}), **conditions}, attention_kwargs=attention_kwargs,
            step_cache=step_cache,
        )
