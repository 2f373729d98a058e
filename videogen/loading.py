"""Read a pipeline directory: the embedded defaults, class detection, integrity, dtype and generation defaults.

The one place that turns a path (or nothing: the embedded default) into a ready pipeline and its settings. The
CLI, the evaluation, export and the web UI all call it; none of them sets up a pipeline on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

# Embedded default models, by the conditioning they take (a name under the checkpoints directory; None: no
# embedded model takes it). The camera and trajectory ones are adapters alone over shapes-t2v (base.json).
DEFAULT_MODELS = {"text": "shapes-t2v", "image": "shapes-t2v", "camera": "shapes-camera",
                  "trajectory": "shapes-trajectory"}

GENERATION_DEFAULTS = dict(height=480, width=832, num_frames=81, steps=50, guidance_scale=5.0, stg_scale=0.0,
                           stg_blocks=[2], stg_mode="block", negative_prompt="", fps=16, scheduler=None,
                           max_sequence_length=512, camera_scale=0.0, camera_null="identity", camera_strength=1.0,
                           camera_window=[0.0, 1.0], camera_speed=1.0, trajectory_scale=0.0,
                           trajectory_strength=1.0, step_cache=None, speedup=None, step_cache_threshold=None,
                           attention=None)

IMAGE_TO_VIDEO_CLASSES = ("WanImageToVideoPipeline", "ImageToVideoPipeline")
CAMERA_CONTROL_CLASSES = ("CameraControlPipeline",)
TRAJECTORY_CONTROL_CLASSES = ("TrajectoryControlPipeline",)
DTYPES = ("float32", "bfloat16", "float16")


def checkpoints_dir() -> Path:
    """The folder that holds the embedded default models, in every install mode.

    A wheel or ``pip install .`` ships the repository's ``checkpoints/`` as the package data
    ``videogen/checkpoints`` (setup.cfg maps one onto the other); a source checkout or an editable install uses
    the repository's folder itself."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "checkpoints", here.parent / "checkpoints"):
        if (candidate / DEFAULT_MODELS["text"] / "model_index.json").exists():
            return candidate
    raise FileNotFoundError(
        f"the embedded default models are missing: no checkpoints folder next to {here} and no package data "
        "videogen.checkpoints; reinstall videogen, or pass --model PATH"
    )


def default_model(conditioning: str = "text") -> Path:
    """The embedded default pipeline directory for a kind of conditioning: ``text`` (text-to-video), ``image``
    (image-to-video), ``camera`` or ``trajectory`` (a kind with no embedded model is a ``ValueError`` saying so)."""
    if conditioning not in DEFAULT_MODELS:
        raise ValueError(f"no embedded default takes {conditioning!r} conditioning; "
                         f"there are defaults for: {', '.join(k for k, v in DEFAULT_MODELS.items() if v)}")
    if DEFAULT_MODELS[conditioning] is None:
        if conditioning == "trajectory":
            raise ValueError(
                "there is no embedded trajectory-control model yet; pass --model DIR with a TrajectoryControlPipeline "
                "directory (one trained by `videogen train` with task: trajectory, or ATI / Wan-Move weights loaded "
                "with TrajectoryControlPipeline.from_wan(WAN_I2V_DIR, 'ati').save_pretrained(DIR))"
            )
        raise ValueError(
            f"there is no embedded {conditioning}-control model yet; pass --model DIR with a CameraControlPipeline "
            "directory, e.g. one written by CameraControlPipeline.from_wan(WAN_I2V_DIR, transformer=FUN_CAMERA_DIT)"
            ".save_pretrained(DIR) from the Wan2.1-Fun-V1.1 Control-Camera weights"
        )
    return checkpoints_dir() / DEFAULT_MODELS[conditioning]


def default_model_for(image: bool = False, camera: bool = False, trajectory: bool = False) -> Path:
    """The embedded default that supports every conditioning asked for (``image``: a first frame; ``camera``: a
    camera path, which only a camera-control model takes; ``trajectory``: tracks, for a trajectory model)."""
    if camera and trajectory:
        raise ValueError("a camera and a trajectory together: no model takes both; pass one")
    if camera:
        return default_model("camera")
    if trajectory:
        return default_model("trajectory")
    return default_model("image" if image else "text")


def pipeline_class_name(model: Path) -> Optional[str]:
    """The ``_class_name`` in a pipeline directory's model_index.json; a directory without one is an error."""
    index = Path(model) / "model_index.json"
    if not index.exists():
        raise FileNotFoundError(f"no pipeline directory at {model} (no model_index.json)")
    return json.loads(index.read_text()).get("_class_name")


def is_image_to_video(model: Path) -> bool:
    """Whether the pipeline directory holds an image-to-video pipeline (ours or diffusers' Wan2.1 I2V)."""
    return pipeline_class_name(model) in IMAGE_TO_VIDEO_CLASSES


def is_camera_control(model: Path) -> bool:
    """Whether the pipeline directory holds a camera-control pipeline (``CameraControlPipeline``)."""
    return pipeline_class_name(model) in CAMERA_CONTROL_CLASSES


def is_trajectory_control(model: Path) -> bool:
    """Whether the pipeline directory holds a trajectory-control pipeline (``TrajectoryControlPipeline``)."""
    return pipeline_class_name(model) in TRAJECTORY_CONTROL_CLASSES


def takes_start_image(model: Optional[Path]) -> bool:
    """Whether the pipeline directory's transformer has image channels (``in_channels != out_channels``); for an
    adapter-only directory (``base.json``), its base's; None: the embedded trajectory default."""
    model = Path(model) if model is not None else default_model("trajectory")
    base = model / "base.json"
    if base.exists():
        model = (model / json.loads(base.read_text())["base"]).resolve()
    cfg = json.loads((model / "transformer" / "config.json").read_text())
    return cfg.get("in_channels") != cfg.get("out_channels")


def generates_from_text(model: Path) -> bool:
    """Whether the pipeline directory generates from a prompt alone: a text-to-video pipeline, or an image-to-video
    one trained with the image dropped (``image_optional`` in its model_index.json)."""
    index = json.loads((Path(model) / "model_index.json").read_text())
    return index.get("_class_name") not in IMAGE_TO_VIDEO_CLASSES or bool(index.get("image_optional", False))


def adapter_pipeline_class(model: Path):
    """The control pipeline class (``CameraControlPipeline`` or ``TrajectoryControlPipeline``) of an adapter-only
    directory (``base.json``, ``pipelines.adapter_dir``), by its model_index.json; another class is a ``ValueError``."""
    name = pipeline_class_name(model)
    if name in CAMERA_CONTROL_CLASSES:
        from pipelines.camera_control import CameraControlPipeline

        return CameraControlPipeline
    if name in TRAJECTORY_CONTROL_CLASSES:
        from pipelines.trajectory_control import TrajectoryControlPipeline

        return TrajectoryControlPipeline
    raise ValueError(f"{model} has a base.json (an adapter-only directory) but its model_index.json names {name}, "
                     "not a camera- or trajectory-control pipeline")


def load_pipeline(model: Path, device: str = "cpu", dtype: str = "float32"):
    """The pipeline a directory holds, by its model_index.json ``_class_name``: diffusers Wan2.1 ``WanPipeline`` or
    ``WanImageToVideoPipeline`` (converted on load), our ``ImageToVideoPipeline``, ``CameraControlPipeline`` or
    ``TrajectoryControlPipeline`` (an adapter-only directory, ``base.json``, over its base), else our
    ``TextToVideoPipeline``.
    Files are checked first (``videogen.integrity.verify_checkpoint``): a corrupted one is an error naming it.
    ``dtype``: the compute dtype of the text encoder and the DiT (the VAE stays fp32; norms and modulation too)."""
    import torch

    from videogen.integrity import verify_checkpoint

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}; got {dtype!r}")
    model = Path(model)
    name = pipeline_class_name(model)
    verify_checkpoint(model)
    if name in CAMERA_CONTROL_CLASSES + TRAJECTORY_CONTROL_CLASSES and (model / "base.json").exists():
        # An adapter-only directory: its base loaded as any other model (same device and dtype), then the adapter.
        cls = adapter_pipeline_class(model)
        pipe = cls.from_adapter_dir(model, load_base=lambda p: load_pipeline(p, device, dtype))
        if dtype != "float32":
            from videogen.convert.wan import cast_keeping_fp32

            cast_keeping_fp32(getattr(pipe, cls.adapter_component), getattr(torch, dtype))
        return pipe.to(device)
    if name in IMAGE_TO_VIDEO_CLASSES:
        from pipelines.image_to_video import ImageToVideoPipeline as cls
    elif name in TRAJECTORY_CONTROL_CLASSES:
        from pipelines.trajectory_control import TrajectoryControlPipeline as cls
    elif name in CAMERA_CONTROL_CLASSES:
        from pipelines.camera_control import CameraControlPipeline as cls
    else:
        from pipelines.text_to_video import TextToVideoPipeline as cls
    torch_dtype = getattr(torch, dtype)
    if name in ("WanPipeline", "WanImageToVideoPipeline"):
        pipe = cls.from_wan(model, torch_dtype=None if dtype == "float32" else torch_dtype)
    else:
        pipe = cls.from_pretrained(model, dtype=torch.float32)  # half-stored weights (shipped checkpoints) in fp32
        if dtype != "float32":
            from videogen.convert.wan import cast_keeping_fp32

            cast_keeping_fp32(pipe.transformer, torch_dtype)
            for adapter in ("camera_adapter", "trajectory_adapter"):
                if getattr(pipe, adapter, None) is not None:
                    cast_keeping_fp32(getattr(pipe, adapter), torch_dtype)
            pipe.text_encoder.to(torch_dtype)
    return pipe.to(device)


def camera_arguments(settings: dict, camera, model: Optional[Path] = None) -> dict:
    """The ``CameraControlPipeline`` arguments that generation settings (``generation_defaults``) name: the camera
    read now (a preset or pose file becomes ``(intrinsics, c2w)`` for the settings' size and frame count, so a bad
    file is reported, and a path of another length resampled with its one warning, before any model loads), its
    strength, window, speed and null, and the guidance (CFG, or camera motion guidance at ``camera_scale > 0``,
    then STG). With the pipeline directory ``model``, the size is checked against its transformer's config first
    (multiples of the adapter's downscale x patch)."""
    from videogen.conditioning.camera import camera_poses
    from videogen.guidance import camera_guidance
    from videogen.validation import check_multiple, check_num_frames

    check_num_frames(settings["num_frames"])
    cfg = Path(model) / "transformer" / "config.json" if model is not None else None
    if cfg is not None and cfg.exists():
        dit = json.loads(cfg.read_text())
        factor = dit.get("camera_downscale", 8) * dit.get("patch_size", [1, 2, 2])[1]
        check_multiple("height", settings["height"], factor)
        check_multiple("width", settings["width"], factor)
    if camera is None and settings["camera_scale"] > 0:
        raise ValueError("camera motion guidance (camera_scale > 0) needs a camera")
    window = tuple(float(v) for v in settings["camera_window"])
    if len(window) != 2 or not 0.0 <= window[0] <= window[1] <= 1.0:
        raise ValueError(f"camera_window must be (start, stop) with 0 <= start <= stop <= 1 (fractions of the "
                         f"schedule); got {settings['camera_window']!r}")
    poses = None if camera is None else camera_poses(camera, settings["num_frames"], settings["height"],
                                                      settings["width"], speed=settings["camera_speed"])
    return dict(
        camera=poses, camera_null=settings["camera_null"], camera_strength=settings["camera_strength"],
        camera_window=window,
        guidance=camera_guidance(settings["guidance_scale"], settings["camera_scale"], settings["stg_scale"],
                                 settings["stg_blocks"], settings["stg_mode"], window),
    )


def trajectory_arguments(settings: dict, trajectory) -> dict:
    """The ``TrajectoryControlPipeline`` arguments that generation settings name: the tracks read now (a file or
    the inline ``"x,y x,y"`` form, for the settings' size and frame count, so a bad file fails before any model
    loads), the strength and the guidance (CFG, or trajectory guidance at ``trajectory_scale > 0``, then STG)."""
    from videogen.conditioning.trajectory import tracks_from
    from videogen.guidance import camera_guidance
    from videogen.validation import check_num_frames

    check_num_frames(settings["num_frames"])
    if trajectory is None and settings["trajectory_scale"] > 0:
        raise ValueError("trajectory guidance (trajectory_scale > 0) needs a trajectory")
    tracks = None
    if trajectory is not None:
        tracks = tracks_from(trajectory, settings["num_frames"], settings["height"], settings["width"])
    return dict(
        trajectory=tracks, trajectory_strength=settings["trajectory_strength"],
        guidance=camera_guidance(settings["guidance_scale"], settings["trajectory_scale"] if tracks else 0.0,
                                 settings["stg_scale"], settings["stg_blocks"], settings["stg_mode"]),
    )


def generation_defaults(model: Path, overrides: dict | None = None) -> dict:
    """Settings for ``generate`` (and ``eval``, the UI): ours, overridden by the checkpoint's
    ``generation_config.json`` if it has one, then by the ``overrides`` (e.g. ``vars(args)``) that name a setting
    and are not None."""
    defaults = dict(GENERATION_DEFAULTS)
    cfg = Path(model) / "generation_config.json"
    if cfg.exists():
        defaults.update(json.loads(cfg.read_text()))
    defaults.update({k: v for k, v in (overrides or {}).items() if k in GENERATION_DEFAULTS and v is not None})
    return defaults


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` (the CLI's ``--lora``) -> ``(path, scale)``; the scale defaults to 1."""
    path, sep, tail = spec.rpartition(":")
    if sep:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def apply_loras(pipe, specs, strict: bool = True) -> list:
    """Load each ``PATH[:SCALE]`` of ``specs`` into ``pipe`` as adapters ``lora_0``, ``lora_1``, ... at their
    scales, all active; return the load reports (``videogen.models.lora.LoraReport``)."""
    reports, names, scales = [], [], []
    for i, spec in enumerate(specs or ()):
        path, scale = parse_lora_spec(spec)
        if not Path(path).exists():
            raise FileNotFoundError(f"--lora: no LoRA file at {path}")
        reports.append(pipe.load_lora_weights(path, adapter_name=f"lora_{i}", strict=strict))
        names.append(f"lora_{i}")
        scales.append(scale)
    if names:
        pipe.set_adapters(names, scales)
    return reports


def resolve_model(model=None, *, image: bool = False, last_image: bool = False, camera: bool = False,
                  trajectory: bool = False) -> Path:
    """The pipeline directory for a generation with the conditions named (``image``: a first frame; ``last_image``:
    a last frame; ``camera``: a camera path), checked against its class before anything heavy runs.

    ``model`` None: the embedded default that takes them (``default_model_for``). Each mismatch is a ``ValueError``
    that says what to pass: a camera for a model that is not a camera-control one, an image for a text-to-video
    model, no image for an image-to-video model that needs one, a last frame without a first or for a camera
    model, a trajectory for a model with no trajectory adapter. The CLI's ``generate`` and the web UI both call it."""
    if last_image and not image:
        raise ValueError("--last-image needs --image (the first frame) too")
    model = Path(model) if model else default_model_for(image=image, camera=camera, trajectory=trajectory)
    class_name = pipeline_class_name(model)
    image_to_video = class_name in IMAGE_TO_VIDEO_CLASSES
    camera_control = class_name in CAMERA_CONTROL_CLASSES
    trajectory_control = class_name in TRAJECTORY_CONTROL_CLASSES
    if camera and not camera_control:
        raise ValueError(f"--camera needs a camera-control model (CameraControlPipeline); {model} is a {class_name}")
    if trajectory and not trajectory_control:
        raise ValueError(f"--trajectory needs a trajectory-control model (TrajectoryControlPipeline: a trajectory "
                         f"adapter, or ATI / Wan-Move weights); {model} is a {class_name}, which has no trajectory "
                         "adapter")
    if trajectory_control:
        if last_image:
            raise ValueError("--last-image: trajectory-control models take a start image (--image) only")
        return model
    if image and not (image_to_video or camera_control):
        raise ValueError(f"--image needs an image-to-video model; {model} is a text-to-video pipeline ({class_name})")
    if not image and image_to_video and not generates_from_text(model):
        raise ValueError(f"{model} is an image-to-video model ({class_name}): pass --image FIRST_FRAME.png")
    if camera_control and last_image:
        raise ValueError("--last-image: camera-control models take a start image (--image) only")
    return model


def generation_arguments(model: Path, prompt: str, settings: dict, *, image=None, last_image=None, camera=None,
                         trajectory=None, seed: int = 0) -> dict:
    """The pipeline call's keyword arguments for one generation: the images read (``conditioning.image.load_image``:
    a path, PIL image, array or tensor), the camera read (``camera_arguments``, for a camera-control ``model``)
    or else the guidance (``guidance.cfg_stg``), and the settings (``generation_defaults``) under the pipelines'
    names, with a CPU generator seeded with ``seed``. Nothing here loads a model, so bad inputs fail first."""
    import torch

    from videogen.guidance import cfg_stg
    from videogen.step_cache import step_cache_from_settings

    conditions = {}
    cache = step_cache_from_settings(settings.get("step_cache"), settings.get("speedup"),
                                     settings.get("step_cache_threshold"))
    if cache is not None:
        conditions["step_cache"] = cache
    if image is not None:
        from videogen.conditioning.image import load_image

        conditions["image"] = load_image(image)
        if last_image is not None:
            conditions["last_image"] = load_image(last_image)
    if is_camera_control(model):
        conditions.update(camera_arguments(settings, camera, model))
    elif is_trajectory_control(model):
        conditions.update(trajectory_arguments(settings, trajectory))
    else:
        conditions["guidance"] = cfg_stg(settings["guidance_scale"], settings["stg_scale"], settings["stg_blocks"],
                                         settings["stg_mode"])
    return dict(
        conditions,
        prompt=prompt,
        negative_prompt=settings["negative_prompt"],
        height=settings["height"],
        width=settings["width"],
        num_frames=settings["num_frames"],
        num_inference_steps=settings["steps"],
        max_sequence_length=settings["max_sequence_length"],
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
    )


def use_attention(pipe, name: Optional[str]) -> None:
    """Run ``pipe``'s DiT attention through the named backend of diffusers' attention dispatcher (``native``,
    ``flash``, ``sage``, ...); None: PyTorch's SDPA. A backend that is not installed is a ``ValueError``."""
    pipe.transformer.set_attention_backend(name)


def use_scheduler(pipe, name: Optional[str]) -> None:
    """Replace ``pipe``'s scheduler by ``pipelines.make_scheduler(name)`` (``unipc`` or ``euler``) at the
    checkpoint's own flow shift; ``name`` None keeps the checkpoint's scheduler."""
    if not name:
        return
    from pipelines import make_scheduler

    shift = pipe.scheduler.config.get("flow_shift", pipe.scheduler.config.get("shift", 3.0))
    pipe.scheduler = make_scheduler(name, flow_shift=shift)
