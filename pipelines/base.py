"""The one denoising loop every videogen pipeline shares, with input checks, prompt encoding and decoding.

Task pipelines (text-to-video, image-to-video, camera, trajectory) subclass ``VideoDiffusionPipeline`` and only
prepare conditions: they extend ``pass_inputs`` to say what the DiT gets for one guidance pass.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from pipelines.lora import LoraLoaderMixin
from videogen.conditioning.text import encode_prompts
from videogen.guidance import CFG, Guidance, Guider, Pass
from videogen.models.transformer import block_mask
from videogen.step_cache import StepCache, as_step_cache, read_calibration
from videogen.validation import check_multiple, check_num_frames

OUTPUT_TYPES = ("np", "pt", "pil", "latent")


@dataclass
class VideoPipelineOutput(BaseOutput):
    """``frames``: np ``[B, F, H, W, C]`` in [0, 1], pt ``[B, F, C, H, W]``, a list of PIL lists, or 5-D latents;
    ``step_cache``: with a step cache, its report (policy, threshold, ``computed_steps``, ``num_computed``)."""

    frames: Union[np.ndarray, torch.Tensor, list]
    step_cache: Optional[dict] = None


@dataclass
class Conditions:
    """What the DiT is conditioned on for one generation (``[B, ...]`` each, B = prompts x videos per prompt)."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: Optional[torch.Tensor] = None
    extra: dict[str, Any] = field(default_factory=dict)  # task pipelines put their conditions here


def as_guidance(guidance: Union[Guidance, Guider, None], guidance_scale: float) -> Guidance:
    """A ``Guidance`` from the pipeline's ``guidance`` argument, or plain CFG at ``guidance_scale``."""
    if guidance is None:
        return Guidance(CFG(guidance_scale))
    if isinstance(guidance, Guider):
        return Guidance(guidance)
    if isinstance(guidance, Guidance):
        return guidance
    raise ValueError(f"guidance must be a videogen.guidance.Guidance or Guider; got {type(guidance).__name__}")


def cat_entries(values: Sequence) -> Any:
    """One per-block entry for the stacked batch: tensors by ``cat``; objects with a ``cat`` classmethod (the
    trajectory adapter's modulations) by it."""
    first = values[0]
    return torch.cat(values) if isinstance(first, torch.Tensor) else type(first).cat(values)


def stack_inputs(parts: Sequence[dict]) -> dict:
    """Concatenate per-pass model inputs along the batch: tensors by ``cat``, per-block lists element-wise."""
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if values[0] is None:
            out[key] = None
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.cat(values)
        elif isinstance(values[0], (list, tuple)):
            out[key] = [None if v[0] is None else cat_entries(v) for v in zip(*values)]
        else:
            out[key] = values[0]
    return out


# diffusers' Wan pipeline classes -> ours (what ``from_wan`` on the wrong class points the user to).
WAN_PIPELINES = {"WanPipeline": "TextToVideoPipeline", "WanImageToVideoPipeline": "ImageToVideoPipeline"}


def load_wan_components(
    path: Union[str, os.PathLike],
    torch_dtype: Optional[torch.dtype] = None,
    optional: Sequence[str] = (),
    expect: Optional[Union[str, Sequence[str]]] = None,
    transformer: Optional[Union[str, os.PathLike]] = None,
) -> tuple[dict, dict]:
    """Load a diffusers-format Wan2.1 pipeline directory: ``(components, model_index)``.

    Always ``tokenizer``, ``text_encoder``, ``scheduler``, ``transformer`` (as ``VideoDiT``) and ``vae`` (as
    ``CausalVideoVAE``, kept in fp32 as in Wan's reference scripts); each name in ``optional`` (e.g.
    ``image_encoder``, ``image_processor``) is loaded with the transformers class ``model_index.json`` names, or
    is None where the index has none. ``torch_dtype`` applies to the text encoder and the transformer.
    ``expect`` (one diffusers class name or several): a directory of another known Wan pipeline class is a
    ``ValueError``. ``transformer``: DiT weights to load instead of the directory's own (any layout
    ``VideoDiT.from_wan`` reads, e.g. a Fun-Control-Camera checkpoint); the directory's is then never read.
    """
    import diffusers
    import transformers

    from videogen.models.transformer import VideoDiT
    from videogen.models.vae import CausalVideoVAE

    path = Path(path)
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"{path} is not a diffusers pipeline directory (no model_index.json)")
    index = json.loads((path / "model_index.json").read_text())
    found = index.get("_class_name")
    expected = (expect,) if isinstance(expect, str) else tuple(expect or ())
    if expected and found in WAN_PIPELINES and found not in expected:
        raise ValueError(f"{path} holds a {found}; load it with {WAN_PIPELINES[found]}.from_wan")
    two_stage = (index.get("transformer_2") or [None])[-1] is not None or index.get("boundary_ratio") is not None
    if two_stage or index.get("expand_timesteps"):
        raise ValueError(f"{path} is a Wan2.2-style pipeline (transformer_2, boundary_ratio or expand_timesteps); "
                         "only Wan2.1 pipelines are supported")

    def component_class(name, library):
        return getattr(library, index[name][1])

    parts = dict(
        text_encoder=component_class("text_encoder", transformers).from_pretrained(
            path / "text_encoder", torch_dtype=torch_dtype
        ),
        tokenizer=transformers.AutoTokenizer.from_pretrained(path / "tokenizer"),
        scheduler=component_class("scheduler", diffusers).from_pretrained(path / "scheduler"),
        transformer=VideoDiT.from_wan(path / "transformer" if transformer is None else transformer,
                                      torch_dtype=torch_dtype),
        vae=CausalVideoVAE.from_wan(path / "vae"),
    )
    for name in optional:
        spec = index.get(name)
        if not spec or spec[1] is None or not (path / name).exists():
            parts[name] = None
        else:  # an image encoder stays fp32 like the VAE, as diffusers' Wan I2V example loads it
            parts[name] = component_class(name, transformers).from_pretrained(path / name)
    return parts, index


class VideoDiffusionPipeline(LoraLoaderMixin, DiffusionPipeline):
    """Base class: validation, prompt encoding, latent preparation, the shared denoising loop and decoding."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    @property
    def vae_scale_factor_temporal(self) -> int:
        """Frames per latent frame (after the first)."""
        return self.vae.temporal_compression if getattr(self, "vae", None) is not None else 4

    @property
    def vae_scale_factor_spatial(self) -> int:
        """Pixels per latent pixel along height and width."""
        return self.vae.spatial_compression if getattr(self, "vae", None) is not None else 8

    @property
    def size_multiple(self) -> int:
        """Heights and widths must be multiples of this (VAE factor x DiT patch)."""
        return self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]

    @property
    def video_processor(self) -> VideoProcessor:
        """diffusers' post-processing from [-1, 1] tensors to np / pt / PIL frames."""
        return VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    # diffusers-style state exposed to callbacks
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def current_timestep(self):
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------

    def check_inputs(
        self, prompt, negative_prompt, height, width, num_frames, num_inference_steps, guidance_scale,
        num_videos_per_prompt, prompt_embeds, negative_prompt_embeds, output_type, callback_tensor_inputs,
    ) -> None:
        """Every rule a generation's arguments must follow; a broken one is a ``ValueError`` that names it."""
        check_num_frames(num_frames, self.vae_scale_factor_temporal)
        check_multiple("height", height, self.size_multiple)
        check_multiple("width", width, self.size_multiple)
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer; got {num_inference_steps}")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0; got {guidance_scale}")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be a positive integer; got {num_videos_per_prompt}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}; got {output_type!r}")
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of `prompt` and `prompt_embeds`")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("pass at most one of `negative_prompt` and `negative_prompt_embeds`")
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise ValueError(f"prompt must be a str or a list of str; got {type(prompt).__name__}")
        n = (1 if isinstance(prompt, str) else len(prompt)) if prompt is not None else prompt_embeds.shape[0]
        if isinstance(negative_prompt, list) and len(negative_prompt) != n:
            raise ValueError(f"negative_prompt has {len(negative_prompt)} entries but there are {n} prompts")
        if negative_prompt_embeds is not None and negative_prompt_embeds.shape[0] != n:
            raise ValueError(
                f"negative_prompt_embeds has batch size {negative_prompt_embeds.shape[0]} but prompts/prompt_embeds "
                f"have {n}"
            )
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape[1:] != negative_prompt_embeds.shape[1:]:
                raise ValueError(
                    f"prompt_embeds {tuple(prompt_embeds.shape)} and negative_prompt_embeds "
                    f"{tuple(negative_prompt_embeds.shape)} must match after the batch dimension"
                )
        bad = [k for k in callback_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs {bad} are not in {self._callback_tensor_inputs}")

    def encode_prompt(
        self,
        prompt,
        negative_prompt=None,
        need_negative: bool = True,
        num_videos_per_prompt: int = 1,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        max_sequence_length: int = 512,
        device: Optional[torch.device] = None,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Text states for the prompts (and the negative prompts, default ``""``), repeated per video."""
        device = device or self._execution_device
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = encode_prompts(self.tokenizer, self.text_encoder, prompts, max_sequence_length, device)
        n = prompt_embeds.shape[0]
        if need_negative and negative_prompt_embeds is None:
            negatives = negative_prompt or ""
            negatives = [negatives] * n if isinstance(negatives, str) else list(negatives)
            negative_prompt_embeds = encode_prompts(
                self.tokenizer, self.text_encoder, negatives, max_sequence_length, device
            )
        repeat = lambda e: None if e is None else e.to(device).repeat_interleave(num_videos_per_prompt, dim=0)  # noqa: E731
        return repeat(prompt_embeds), repeat(negative_prompt_embeds) if need_negative else None

    def prepare_latents(self, batch_size, height, width, num_frames, generator, latents, device) -> torch.Tensor:
        """Initial noise ``[B, C, 1 + (F-1)/4, H/8, W/8]`` in fp32 (or the given ``latents``, checked)."""
        shape = (
            batch_size,
            self.transformer.config.out_channels,
            (num_frames - 1) // self.vae_scale_factor_temporal + 1,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape} for these arguments; got {tuple(latents.shape)}")
            return latents.to(device=device, dtype=torch.float32)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch_size} videos")
        return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)

    # ------------------------------------------------------------------------------------------
    # The shared loop
    # ------------------------------------------------------------------------------------------

    def pass_inputs(self, latents: torch.Tensor, p: Pass, conds: Conditions) -> dict:
        """DiT inputs for one guidance pass over the whole batch. Task pipelines extend this."""
        num_layers = self.transformer.config.num_layers
        b = latents.shape[0]
        text = conds.prompt_embeds if p.text else conds.negative_prompt_embeds
        return {
            "hidden_states": latents.to(self.transformer.dtype),
            "encoder_hidden_states": text.to(self.transformer.dtype),
            "skip_blocks": block_mask(b, num_layers, range(b), p.skip_blocks, latents.device),
            "skip_self_attention": block_mask(b, num_layers, range(b), p.skip_attention, latents.device),
        }

    def conditions_at(self, conds: Conditions, step: int, num_steps: int) -> Conditions:
        """The conditions for one step; the same every step here. Task pipelines whose conditions switch over the
        schedule (the camera window) override it."""
        return conds

    def predict(self, latents, t, passes: Sequence[Pass], conds: Conditions, batch_guidance: bool) -> dict:
        """The DiT's prediction for every pass: one batched forward (default) or one forward per pass; with a step
        cache running, through ``predict_cached``."""
        groups = [list(passes)] if batch_guidance else [[p] for p in passes]
        run = getattr(self, "_step_cache_run", None)
        if run is not None:
            return self.predict_cached(run, latents, t, groups, conds)
        preds = {}
        for group in groups:
            inputs, timestep = self.group_inputs(latents, t, group, conds)
            out = self.transformer(timestep=timestep, return_dict=False, **inputs)[0].float()
            for p, chunk in zip(group, out.chunk(len(group))):
                preds[p] = chunk
        return preds

    def group_inputs(self, latents, t, group: Sequence[Pass], conds: Conditions) -> tuple[dict, torch.Tensor]:
        """The DiT's inputs for a group of passes stacked on the batch, and the timestep for each sample."""
        inputs = stack_inputs([self.pass_inputs(latents, p, conds) for p in group])
        for key in ("skip_blocks", "skip_self_attention"):
            if inputs[key] is not None and not inputs[key].any():
                inputs[key] = None  # nothing perturbed: the plain Wan computation
        return inputs, t.expand(inputs["hidden_states"].shape[0]).to(latents.device)

    def predict_cached(self, run, latents, t, groups: Sequence[Sequence[Pass]], conds: Conditions) -> dict:
        """``predict`` with a step cache: every group's embeddings and head run; the block stack runs, or each
        pass reuses the residual it added at the last computed step. All passes of the step are computed or
        skipped together (first-block: block 0 runs first, and its residual over all passes decides)."""
        dit, passes = self.transformer, [p for g in groups for p in g]
        split = run.split_first_block
        if not run.planned(passes):  # known skip: conditions that only feed the blocks need not be made
            conds = dataclasses.replace(conds, extra={**conds.extra, "blocks_cached": True})
        block_keys = ("skip_blocks", "skip_self_attention", "block_residuals", "block_modulations")
        work = []
        for group in groups:
            inputs, timestep = self.group_inputs(latents, t, group, conds)
            blocks = {k: inputs.pop(k, None) for k in block_keys}
            state = dit.embed(timestep=timestep, **inputs)
            first = dit.run_blocks(state, state.x, 0, 1, **blocks) if split and run.planned(passes) else None
            work.append((group, state, blocks, first))
        first_residual = torch.cat([f - s.x for _, s, _, f in work]) if split and work[0][3] is not None else None
        compute = run.decide(passes, first_residual)
        if compute:
            run.computed.append(run.step)
        preds = {}
        for group, state, blocks, first in work:
            base = first if split else state.x  # first-block reuses the residual of blocks 1.. after a fresh block 0
            if compute:
                x = dit.run_blocks(state, base, 1 if split else 0, **blocks)
                run.store(group, x - base, None)
                run.observe(run.step, group, state.x, first, x)
            else:
                x = base + run.cached(group)
            out = dit.finish(state, x).float()
            for p, chunk in zip(group, out.chunk(len(group))):
                preds[p] = chunk
        if compute and first_residual is not None:
            run.first_residual = (tuple(passes), first_residual)
        return preds

    def start_step_cache(self, step_cache, timesteps) -> None:
        """Set up ``step_cache`` (a ``StepCache``, a policy name, or None: off) for a run over ``timesteps``; the
        model's calibration is read from its generation_config.json (``videogen cache-calibrate``)."""
        cache = as_step_cache(step_cache)
        if cache is None:
            self._step_cache_run = None
            return
        calibration = read_calibration(getattr(self, "name_or_path", None) or self.config.get("_name_or_path"))
        self._step_cache_run = cache.start(self.transformer, timesteps, calibration)

    def denoise(
        self,
        latents: torch.Tensor,
        conds: Conditions,
        guidance: Guidance,
        num_inference_steps: int,
        batch_guidance: bool = True,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        step_cache: Union[StepCache, str, None] = None,
    ) -> torch.Tensor:
        """Run the scheduler from noise to clean latents under ``guidance`` (with ``step_cache``: skipping the
        block stack at some steps; its report is ``self.step_cache_report``)."""
        device = latents.device
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        self.scheduler.set_begin_index(0)
        guidance.reset()
        self.start_step_cache(step_cache, timesteps)
        run = self._step_cache_run
        try:
            latents = self._denoise_steps(latents, conds, guidance, timesteps, batch_guidance, callback_on_step_end,
                                          callback_on_step_end_tensor_inputs, run)
        finally:
            self._step_cache_run = None
        self.step_cache_report = None if run is None else run.report()
        self._current_timestep = None
        return latents

    def _denoise_steps(self, latents, conds, guidance, timesteps, batch_guidance, callback_on_step_end,
                       callback_on_step_end_tensor_inputs, run) -> torch.Tensor:
        """The steps of ``denoise``."""
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                if run is not None:
                    run.begin(i)
                passes = guidance.passes(i, len(timesteps))
                preds = self.predict(latents, t, passes, self.conditions_at(conds, i, len(timesteps)), batch_guidance)
                noise_pred = guidance.combine(preds, i, len(timesteps))
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    local = {"latents": latents, "prompt_embeds": conds.prompt_embeds,
                             "negative_prompt_embeds": conds.negative_prompt_embeds}
                    result = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    latents = result.pop("latents", latents)
                    conds.prompt_embeds = result.pop("prompt_embeds", conds.prompt_embeds)
                    conds.negative_prompt_embeds = result.pop("negative_prompt_embeds", conds.negative_prompt_embeds)
                if run is not None:
                    bar.set_postfix_str(f"computed {len(run.computed)}/{i + 1}", refresh=False)
                bar.update()
        return latents

    def decode_latents(self, latents: torch.Tensor, output_type: str):
        """Latents -> frames in the requested output type (``latent`` returns them as they are, 5-D)."""
        if output_type == "latent":
            return latents
        vae_device = next(self.vae.parameters()).device
        z = self.vae.denormalize_latents(latents.to(vae_device, self.vae.dtype))
        video = self.vae.decode(z, return_dict=False)[0]
        return self.video_processor.postprocess_video(video, output_type=output_type)

    @torch.no_grad()
    def __call__(
        self,
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
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        max_sequence_length: int = 512,
        batch_guidance: bool = True,
        extra_conditions: Optional[dict] = None,
        attention_kwargs: Optional[dict] = None,
        step_cache: Union[StepCache, str, None] = None,
    ):
        """Generate videos.

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
            extra_conditions: task pipelines' conditions (``Conditions.extra``), read by their ``pass_inputs``.
            attention_kwargs: diffusers' per-call options; ``{"scale": s}`` scales every active LoRA for this call.
            step_cache: a ``videogen.step_cache.StepCache`` (e.g. ``StepCache("teacache", speedup=2.0)`` or
                ``StepCache("first-block", threshold=0.1)``) or a policy name (at x2): reuse the block stack's
                residual, per guidance pass, at the steps it skips. None: every step computed (default).

        Returns: ``VideoPipelineOutput`` with ``.frames`` (and ``.step_cache``: the steps computed).
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        self.check_inputs(
            prompt, negative_prompt, height, width, num_frames, num_inference_steps, guidance_scale,
            num_videos_per_prompt, prompt_embeds, negative_prompt_embeds, output_type,
            callback_on_step_end_tensor_inputs,
        )
        guidance = as_guidance(guidance, guidance_scale)
        self._guidance_scale = guidance_scale
        self._interrupt = False
        self._current_timestep = None
        device = self._execution_device
        need_negative = any(
            not p.text for g in guidance.guiders if g.enabled() for p in g.passes()
        )
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, need_negative, num_videos_per_prompt, prompt_embeds, negative_prompt_embeds,
            max_sequence_length, device,
        )
        conds = Conditions(prompt_embeds, negative_prompt_embeds, dict(extra_conditions or {}))
        latents = self.prepare_latents(prompt_embeds.shape[0], height, width, num_frames, generator, latents, device)
        with self.lora_scale((attention_kwargs or {}).get("scale", 1.0)):
            latents = self.denoise(
                latents, conds, guidance, num_inference_steps, batch_guidance, callback_on_step_end,
                callback_on_step_end_tensor_inputs, step_cache,
            )
        video = self.decode_latents(latents, output_type)
        self.maybe_free_model_hooks()
        return VideoPipelineOutput(frames=video, step_cache=self.step_cache_report) if return_dict else (video,)
