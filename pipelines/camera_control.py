"""Camera-controlled generation with Fun-Control-Camera models or our ``CameraControlNet`` on any base DiT: a camera
path (preset, pose file or poses), an optional start image and prompts in, videos out, over the shared loop, with
camera motion guidance."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Optional, Sequence, Union

import torch
from PIL import Image

from pipelines.adapter_dir import AdapterDirMixin
from pipelines.base import Conditions, VideoDiffusionPipeline, load_wan_components
from pipelines.image_to_video import as_list, image_encoder_tokens, repeat_for_batch, to_pil
from videogen.conditioning.camera import camera_condition, camera_poses, static_camera_condition
from videogen.conditioning.image import fit_image, image_condition, load_image
from videogen.guidance import Guidance, Guider, Pass, camera_guidance
from videogen.models.adapters.camera import CameraControlNet  # imported here, so from_pretrained finds the class
from videogen.validation import check_multiple

# How a guidance pass without the camera (``Pass(extra=False)``) is materialised: the rays of a camera that does not
# move (what camera motion guidance trains as its null), all-zero rays (what the Fun models saw for clips without
# poses), or the adapter not run at all (its biases make that differ from zeros).
CAMERA_NULLS = ("identity", "zeros", "off")
CLIP_TOKENS = 257  # Wan2.1's CLIP ViT-H/14 tokens per image, for zeroed image tokens when there is no image encoder


def start_image_latents(vae, images: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The Fun models' image channels ``[B, z_dim, F', H/8, W/8]``: ``images [B, 3, H, W]`` in [-1, 1] encoded by
    ``vae`` on their own (a one-frame video, posterior mode, normalised) into latent frame 0; zeros elsewhere."""
    param = next(vae.parameters())
    video = images[:, :, None].to(device=param.device, dtype=param.dtype)
    first = vae.normalize_latents(vae.encode(video).latent_dist.mode().float())
    latent_frames = (num_frames - 1) // vae.temporal_compression + 1
    out = first.new_zeros(first.shape[0], first.shape[1], latent_frames, *first.shape[-2:])
    out[:, :, :1] = first
    return out


class CameraControlPipeline(AdapterDirMixin, VideoDiffusionPipeline):
    """Camera-controlled video with a Fun-Control-Camera ``VideoDiT`` (a camera adapter added to the patch embedding)
    or with any ``VideoDiT`` plus our ``camera_adapter`` (``videogen.models.adapters.CameraControlNet``, whose
    outputs join the DiT's first blocks as ``block_residuals``).

    Components: ``tokenizer``, ``text_encoder``, ``transformer``, ``vae``, ``scheduler`` as ``TextToVideoPipeline``,
    plus ``image_encoder`` / ``image_processor`` (CLIP vision, as Wan2.1 I2V) for transformers with image
    cross-attention. The DiT sees ``noise || start-image latents`` on channels (``in_channels = out_channels +
    z_dim``: the start image VAE-encoded alone into latent frame 0, zeros elsewhere; no mask channels) and the
    camera as packed Plücker rays ``[B, 24, F', H, W]`` (``videogen.conditioning.camera``). A transformer without
    image channels (``in_channels == out_channels``) takes no start image; one in Wan's I2V layout (``noise || mask
    || image latents``, ``out_channels + 4 + z_dim``) gets the start image as ``ImageToVideoPipeline`` gives it,
    or the all-zero condition without one (what a base trained with ``image_dropout`` saw for text-only samples).
    ``camera_adapter`` (optional component, folder ``camera_adapter/``) is how a base without its own camera
    adapter takes the camera; the same presets, window, strength, nulls and CMG apply to both.

    Conventions of ``camera`` (CameraCtrl / VideoX-Fun): camera-to-world poses in OpenCV axes (x right, y down,
    z forward), relative to frame 0, intrinsics in pixels; ``pan-left`` moves the camera left (the scene slides
    right in the image).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->camera_adapter->transformer->vae"
    adapter_component, adapter_class = "camera_adapter", CameraControlNet
    _optional_components = ["image_encoder", "image_processor", "camera_adapter"]

    def __init__(self, tokenizer, text_encoder, transformer, vae, scheduler, image_encoder=None, image_processor=None,
                 camera_adapter=None):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler,
            image_encoder=image_encoder, image_processor=image_processor, camera_adapter=camera_adapter,
        )

    @classmethod
    def from_base(cls, base, camera_adapter) -> "CameraControlPipeline":
        """A camera pipeline over the components of a loaded base pipeline (``TextToVideoPipeline`` or
        ``ImageToVideoPipeline``, shared, not copied) with ``camera_adapter`` (a ``CameraControlNet``)."""
        parts = {k: getattr(base, k, None) for k in ("tokenizer", "text_encoder", "transformer", "vae", "scheduler",
                                                     "image_encoder", "image_processor")}
        return cls(**parts, camera_adapter=camera_adapter)

    @classmethod
    def from_wan(
        cls,
        path: Union[str, os.PathLike],
        transformer: Optional[Union[str, os.PathLike]] = None,
        torch_dtype: Optional[torch.dtype] = None,
        **components,
    ) -> "CameraControlPipeline":
        """A Fun-Control-Camera pipeline from a diffusers-format Wan2.1 directory plus the Fun transformer.

        ``path``: a diffusers Wan2.1 I2V directory (``WanImageToVideoPipeline``; its tokenizer, text encoder, VAE,
        scheduler, image encoder and processor are used) or a T2V one (``WanPipeline``: no image encoder, so no
        start image for a model with image tokens unless ``image_encoder=`` / ``image_processor=`` are given).
        ``transformer``: the Fun-Control-Camera DiT weights as released (original Wan keys plus ``control_adapter.*``,
        a file or a directory of shards, its ``config.json`` optional) or any layout ``VideoDiT.from_wan`` reads;
        default ``path/transformer``, whose weights are then the ones read. ``components`` replace loaded ones
        (e.g. ``vae=CausalVideoVAE.from_wan("Wan2.1_VAE.pth")``). A transformer without a camera adapter is a
        ``ValueError``. The VAE and the image encoder stay fp32; ``torch_dtype`` applies to the text encoder and DiT.
        """
        parts, _ = load_wan_components(
            path, torch_dtype, optional=("image_encoder", "image_processor"),
            expect=("WanImageToVideoPipeline", "WanPipeline"), transformer=transformer,
        )
        parts.update(components)
        if parts["transformer"].camera_adapter is None and parts.get("camera_adapter") is None:
            source = transformer if transformer is not None else os.path.join(os.fspath(path), "transformer")
            raise ValueError(f"{source} is not a camera model (no control_adapter.* weights); pass the "
                             "Fun-Control-Camera transformer: CameraControlPipeline.from_wan(path, transformer=...)")
        return cls(**parts)

    # ------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------

    @property
    def takes_start_image(self) -> bool:
        """Whether the transformer has start-image channels (Fun: ``out_channels + z_dim``; Wan I2V: ``+ 4 + z``)."""
        cfg = self.transformer.config
        return cfg.in_channels != cfg.out_channels

    @property
    def image_layout(self) -> str:
        """The transformer's input layout: ``text`` (noise only), ``fun`` (noise || start-image latents) or
        ``i2v`` (Wan's noise || mask || image latents)."""
        cfg = self.transformer.config
        if cfg.in_channels == cfg.out_channels:
            return "text"
        return "fun" if cfg.in_channels == cfg.out_channels + self.vae.config.z_dim else "i2v"

    def check_camera_model(self) -> None:
        """The camera must enter exactly one way (the DiT's own Fun adapter, or ``camera_adapter``), fitted to the
        DiT; a mismatch is a ``ValueError`` that names it."""
        cfg, adapter = self.transformer.config, getattr(self, "camera_adapter", None)
        if self.transformer.camera_adapter is None and adapter is None:
            raise ValueError(
                "this transformer has no camera adapter (config camera_channels=None) and the pipeline has no "
                "camera_adapter, so a camera would be ignored: CameraControlPipeline needs a camera model (e.g. "
                "Wan2.1-Fun-V1.1-Control-Camera) or a CameraControlNet (camera_adapter=...); use "
                "ImageToVideoPipeline or TextToVideoPipeline for this one"
            )
        if self.transformer.camera_adapter is not None and adapter is not None:
            raise ValueError("the transformer has its own camera adapter (Fun-Control-Camera) and the pipeline has a "
                             "camera_adapter too: the camera would enter twice; drop one")
        if adapter is None:
            return
        if not isinstance(adapter, CameraControlNet):
            raise ValueError(f"camera_adapter must be a videogen.models.adapters.CameraControlNet; got "
                             f"{type(adapter).__name__}")
        a = adapter.config
        if a.out_dim != cfg.dim or tuple(a.patch_size) != tuple(cfg.patch_size):
            raise ValueError(f"the camera_adapter was built for a DiT of width {a.out_dim} and patch "
                             f"{tuple(a.patch_size)}; this transformer has width {cfg.dim} and patch "
                             f"{tuple(cfg.patch_size)}")
        if a.camera_downscale != self.vae.spatial_compression:
            raise ValueError(f"the camera_adapter folds {a.camera_downscale}x{a.camera_downscale} pixels per latent "
                             f"pixel but this VAE compresses {self.vae.spatial_compression}x: build it with "
                             "CameraControlNet.for_transformer(transformer, vae=vae)")
        if a.num_layers > cfg.num_layers or a.latent_channels > cfg.in_channels:
            raise ValueError(f"the camera_adapter has {a.num_layers} blocks reading {a.latent_channels} latent "
                             f"channels; this transformer has {cfg.num_layers} blocks and {cfg.in_channels} input "
                             "channels")

    @property
    def camera_downscale(self) -> int:
        """Pixels per latent pixel the camera path folds (the Fun adapter's or the ``camera_adapter``'s)."""
        adapter = getattr(self, "camera_adapter", None)
        return (adapter or self.transformer).config.camera_downscale

    def check_camera_inputs(
        self, camera, image, image_embeds, num_prompts, height, width, camera_null, camera_strength, camera_window,
        camera_guidance_scale, guidance,
    ) -> None:
        """The camera-control rules (the model, the camera settings, the start image); a broken one is a
        ``ValueError`` that names it. Nothing here reads a file or runs a model."""
        cfg = self.transformer.config
        self.check_camera_model()
        downscale = self.camera_downscale
        if downscale != self.vae_scale_factor_spatial:
            raise ValueError(f"the camera adapter folds {downscale}x{downscale} pixels but the "
                             f"VAE's spatial factor is {self.vae_scale_factor_spatial}; they must be equal")
        factor = downscale * cfg.patch_size[1]
        check_multiple("height", height, factor)
        check_multiple("width", width, factor)
        z, t = self.vae.config.z_dim, self.vae_scale_factor_temporal
        layouts = (cfg.out_channels, cfg.out_channels + z)
        if getattr(self, "camera_adapter", None) is not None:  # our adapter also fits bases in Wan's I2V layout
            layouts += (cfg.out_channels + t + z,)
        if cfg.in_channels not in layouts:
            raise ValueError(
                f"transformer in_channels ({cfg.in_channels}) must be out_channels ({cfg.out_channels}; no start "
                f"image) or out_channels + VAE z_dim = {cfg.out_channels + z} (noise || start-image latents, the "
                f"Wan2.1 Fun layout); with a camera_adapter also out_channels + {t} + z_dim = "
                f"{cfg.out_channels + t + z} (noise || mask || image latents, Wan's I2V layout); mask channels in a "
                "Fun-Control-Camera model (Wan2.2 Fun camera models) are not supported"
            )
        if image is not None and not self.takes_start_image:
            raise ValueError("image was given but this transformer has no start-image channels "
                             f"(in_channels == out_channels == {cfg.in_channels})")
        if isinstance(image, (list, tuple)) and len(image) not in (1, num_prompts):
            raise ValueError(f"image is a list of {len(image)} images but there are {num_prompts} prompts; pass one "
                             "image or one per prompt")
        if camera_null not in CAMERA_NULLS:
            raise ValueError(f"camera_null must be one of {CAMERA_NULLS}; got {camera_null!r}")
        if not isinstance(camera_strength, (int, float)) or not math.isfinite(camera_strength) or camera_strength < 0:
            raise ValueError(f"camera_strength must be a finite number >= 0; got {camera_strength!r}")
        if (not isinstance(camera_window, (tuple, list)) or len(camera_window) != 2
                or not 0.0 <= camera_window[0] <= camera_window[1] <= 1.0):
            raise ValueError(f"camera_window must be (start, stop) with 0 <= start <= stop <= 1 (fractions of the "
                             f"schedule); got {camera_window!r}")
        if camera_guidance_scale < 0:
            raise ValueError(f"camera_guidance_scale must be >= 0 (0: no camera motion guidance); got "
                             f"{camera_guidance_scale}")
        if camera_guidance_scale > 0 and guidance is not None:
            raise ValueError("pass camera motion guidance either as camera_guidance_scale or inside guidance= "
                             "(videogen.guidance.MultiCondition), not both")
        if camera_guidance_scale > 0 and camera is None:
            raise ValueError("camera_guidance_scale needs a camera: pass camera=...")
        if cfg.image_dim is None:
            if image_embeds is not None:
                raise ValueError("image_embeds were given but this transformer takes no image tokens (image_dim=None)")
            return
        if image_embeds is not None:
            if image_embeds.ndim != 3 or image_embeds.shape[-1] != cfg.image_dim or \
                    image_embeds.shape[0] not in (1, num_prompts):
                raise ValueError(f"image_embeds must be [N, L, image_dim={cfg.image_dim}] with N = 1 (shared) or "
                                 f"{num_prompts} (one per prompt); got {tuple(image_embeds.shape)}")
        elif image is not None and (self.image_encoder is None or self.image_processor is None):
            raise ValueError(
                f"this transformer takes image tokens (config image_dim={cfg.image_dim}) but the pipeline has no "
                "image_encoder / image_processor: add them (e.g. CLIPVisionModel + CLIPImageProcessor) or pass "
                "image_embeds"
            )

    def prepare_camera_conditions(
        self, camera, num_frames, height, width, camera_speed, camera_null, device
    ) -> dict:
        """The packed camera ``[1, 24, F', H, W]`` and the null camera CMG's passes without it get (or None).

        Pose files are read and checked here (a malformed line is a ``ValueError`` naming it); poses of another
        count than ``num_frames`` are resampled with one warning."""
        if camera is None:
            return {"camera": None, "null_camera": None}
        intrinsics, c2w = camera_poses(camera, num_frames, height, width, speed=camera_speed)
        packed = camera_condition((intrinsics, c2w), num_frames, height, width, device=device)[None]
        if camera_null == "identity":
            null = static_camera_condition(intrinsics, num_frames, height, width, device=device)[None]
        elif camera_null == "zeros":
            null = torch.zeros_like(packed)
        else:  # "off": the adapter is not run for those passes
            null = None
        return {"camera": packed, "null_camera": null}

    def prepare_image_conditions(
        self, images, image_embeds, num_prompts, num_videos_per_prompt, height, width, num_frames, device
    ) -> dict:
        """The start-image channels ``[B, z_dim, F', h, w]`` (Fun) or ``[B, 4 + z_dim, F', h, w]`` (mask and
        latents, Wan's I2V layout; zeros without an image; None for a model without image channels) and the image tokens ``[B, L, image_dim]`` (CLIP of the image, zeros without one, as
        VideoX-Fun does; None for a model without image cross-attention), repeated to the batch."""
        cfg = self.transformer.config
        b = num_prompts * num_videos_per_prompt
        latents = None
        if self.takes_start_image:
            if images is None:  # zeros: no image latents (Fun), and no mask either (Wan's I2V layout)
                latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
                channels = cfg.in_channels - cfg.out_channels
                latents = torch.zeros(b, channels, latent_frames, height // self.vae_scale_factor_spatial,
                                      width // self.vae_scale_factor_spatial, device=device)
            else:
                pixels = torch.stack([fit_image(x, height, width) for x in images]).to(device) * 2 - 1
                encode = start_image_latents if self.image_layout == "fun" else image_condition
                latents = encode(self.vae, pixels, num_frames).to(device)
                latents = repeat_for_batch(latents, num_prompts, num_videos_per_prompt)
        tokens = None
        if cfg.image_dim is not None:
            if image_embeds is not None:
                tokens = image_embeds.to(device)
            elif images is not None:
                tokens = image_encoder_tokens(self.image_encoder, self.image_processor, [to_pil(x) for x in images],
                                              device)
            elif self.image_encoder is not None and self.image_processor is not None:
                black = Image.new("RGB", (width, height))  # VideoX-Fun: CLIP of a black image, zeroed
                tokens = torch.zeros_like(image_encoder_tokens(self.image_encoder, self.image_processor, [black], device))
            else:  # every token the same zero vector: the image attention's output does not depend on their count
                tokens = torch.zeros(1, CLIP_TOKENS, cfg.image_dim, device=device)
            tokens = repeat_for_batch(tokens, num_prompts, num_videos_per_prompt)
        return {"image_latents": latents, "image_embeds": tokens}

    # ------------------------------------------------------------------------------------------
    # The shared loop
    # ------------------------------------------------------------------------------------------

    def conditions_at(self, conds: Conditions, step: int, num_steps: int) -> Conditions:
        """The camera is on only inside ``camera_window`` (fractions of the schedule) and at a non-zero strength."""
        extra = conds.extra
        start, stop = extra["camera_window"]
        active = extra["camera"] is not None and extra["camera_strength"] != 0 and start <= step / num_steps < stop
        # The camera_adapter runs at this step's timestep; its outputs are shared by the passes with the same camera
        # (text does not enter it), so CMG's three passes cost at most two adapter runs.
        timestep = self.scheduler.timesteps[step] if active else None
        return dataclasses.replace(conds, extra={**extra, "camera_active": active, "timestep": timestep,
                                                 "camera_residuals": {}})

    def pass_camera(self, p: Pass, extra: dict) -> tuple[Optional[torch.Tensor], float]:
        """The camera and the adapter's scale for one pass: the camera for ``p.extra``, else the chosen null; with
        the camera off (outside its window, or none given) None for every pass."""
        if not extra.get("camera_active", False):
            return None, 0.0
        strength = float(extra["camera_strength"])
        if p.extra:
            return extra["camera"], strength
        if extra["null_camera"] is None:  # "off": any tensor keeps the batch stackable; scale 0 skips the adapter
            return extra["camera"], 0.0
        return extra["null_camera"], strength

    def pass_inputs(self, latents: torch.Tensor, p: Pass, conds: Conditions) -> dict:
        """The base inputs with the start-image latents on channels, the image tokens and the pass's camera."""
        inputs = super().pass_inputs(latents, p, conds)
        extra, dtype, b = conds.extra, self.transformer.dtype, latents.shape[0]
        if extra["image_latents"] is not None:
            inputs["hidden_states"] = torch.cat([latents, extra["image_latents"]], dim=1).to(dtype)
        embeds = extra["image_embeds"]
        inputs["encoder_hidden_states_image"] = None if embeds is None else embeds.to(dtype)
        camera, scale = self.pass_camera(p, extra)
        if getattr(self, "camera_adapter", None) is not None:
            inputs["camera"], inputs["camera_scale"] = None, None
            skipped = camera is None or extra.get("blocks_cached", False)  # a cached step runs no block
            inputs["block_residuals"] = None if skipped else self.camera_residuals(
                inputs["hidden_states"], camera, scale, extra)
            return inputs
        inputs["camera"] = None if camera is None else camera.expand(b, *camera.shape[1:]).to(dtype)
        inputs["camera_scale"] = None if camera is None else torch.full((b,), scale, device=latents.device)
        return inputs

    def camera_residuals(self, hidden_states: torch.Tensor, camera: torch.Tensor, scale: float, extra: dict) -> list:
        """The ``camera_adapter``'s ``block_residuals`` for one pass (the DiT's input ``hidden_states``, the pass's
        camera at ``scale``), computed once per step for each distinct (camera, scale); scale 0 gives zeros."""
        key = (id(camera), scale)
        cache = extra["camera_residuals"]
        if key not in cache:
            adapter, b = self.camera_adapter, hidden_states.shape[0]
            param = next(adapter.parameters())
            t = extra["timestep"].expand(b).to(hidden_states.device)
            cam = camera.expand(b, *camera.shape[1:]).to(device=param.device, dtype=param.dtype)
            residuals = adapter.block_residuals(hidden_states.to(param.device), t, cam,
                                                self.transformer.config.num_layers,
                                                torch.full((b,), scale, device=param.device))
            cache[key] = [None if r is None else r.to(hidden_states.device, self.transformer.dtype) for r in residuals]
        return cache[key]

    def predict(self, latents, t, passes: Sequence[Pass], conds: Conditions, batch_guidance: bool) -> dict:
        """As the base, but with the camera off at this step, passes that differ only in ``extra`` are one model
        call: each is run once and shared."""
        if conds.extra.get("camera_active", False):
            return super().predict(latents, t, passes, conds, batch_guidance)
        same = {p: dataclasses.replace(p, extra=True) for p in passes}
        preds = super().predict(latents, t, list(dict.fromkeys(same.values())), conds, batch_guidance)
        return {p: preds[q] for p, q in same.items()}

    @torch.no_grad()
    def __call__(
        self,
        prompt=None,
        camera=None,
        image=None,
        negative_prompt=None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        camera_guidance_scale: float = 0.0,
        camera_null: str = "identity",
        camera_strength: float = 1.0,
        camera_window: tuple[float, float] = (0.0, 1.0),
        camera_speed: float = 1.0,
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
        """Generate videos whose camera follows ``camera`` (and that start from ``image``).

        Args (the rest as ``TextToVideoPipeline``; defaults those of VideoX-Fun's camera example, CFG 6):
            camera: a preset name (``videogen.conditioning.camera.CAMERA_PRESETS``: ``pan-left``, ``zoom-in``,
                ``orbit-right``, ...), a pose-file path (CameraCtrl / RealEstate10K text, the shapes world's JSON,
                or ``{"intrinsics", "c2w"}`` JSON; see ``read_pose_file``), or an ``(intrinsics [F, 4] px,
                c2w [F, 4, 4])`` pair (camera-to-world, OpenCV axes). Made relative to frame 0; a path of another
                length than ``num_frames`` is resampled, with one warning. One camera serves every video. None: a
                warning, and the model runs without it (as image-to-video).
            image: the start image (a path, PIL, numpy or torch image, one or one per prompt), fitted to the video
                by resizing to cover and center cropping; optional (None: zero image latents and zeroed image
                tokens, as VideoX-Fun).
            camera_strength: multiplies the camera adapter's output (0: the camera is off).
            camera_window: ``(start, stop)`` fractions of the schedule in which the camera is on; outside it the
                adapter is not run (AC3D: camera motion is settled in the high-noise steps).
            camera_speed: scales a preset's motion (not pose files).
            camera_guidance_scale: camera motion guidance ``s_c`` (0: off; CFG on the text alone, the camera in both
                passes, as VideoX-Fun): ``e(0,0) + s_t (e(c,0) - e(0,0)) + s_c (e(c,cam) - e(c,0))`` with
                ``s_t = guidance_scale``, inside the camera window.
            camera_null: the camera of CMG's passes without it: ``identity`` (a static camera, CMG's null),
                ``zeros`` (what the Fun models saw for clips without poses) or ``off`` (the adapter not run).
            image_embeds: precomputed image-encoder tokens ``[N, L, image_dim]`` (N = 1 or one per prompt).
            guidance: any ``videogen.guidance`` chain (CFG, MultiCondition, STG, ...) instead of
                ``guidance_scale`` / ``camera_guidance_scale``; a pass with ``extra=False`` gets ``camera_null``.

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
        self.check_camera_inputs(camera, image, image_embeds, num_prompts, height, width, camera_null,
                                 camera_strength, camera_window, camera_guidance_scale, guidance)
        if camera is None:
            warnings.warn("this is a camera model but no camera was given: it runs without one, as image-to-video "
                          "(the camera adapter is not run); pass camera=PRESET or a pose file", stacklevel=2)
        # Files first (pose file, images), so a bad one is reported before any model runs.
        images = None if image is None else [load_image(x) for x in as_list(image)]
        device = self._execution_device
        conditions = self.prepare_camera_conditions(camera, num_frames, height, width, camera_speed, camera_null,
                                                    device)
        conditions.update(self.prepare_image_conditions(images, image_embeds, num_prompts, num_videos_per_prompt,
                                                        height, width, num_frames, device))
        conditions.update(camera_strength=camera_strength, camera_window=tuple(camera_window))
        if guidance is None:
            guidance = camera_guidance(guidance_scale, camera_guidance_scale, camera_window=tuple(camera_window))
        return super().__call__(
            **base_args, guidance=guidance, generator=generator, latents=latents, return_dict=return_dict,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            max_sequence_length=max_sequence_length, batch_guidance=batch_guidance,
            extra_conditions={**(extra_conditions or {}), **conditions}, attention_kwargs=attention_kwargs,
            step_cache=step_cache,
        )
