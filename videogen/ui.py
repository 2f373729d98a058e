"""The web UI (`videogen ui`): a Gradio page over ``videogen.loading`` and the pipelines, every feature in one place."""

import hashlib
import html
import json
import os
import queue
import random
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

# Gradio is imported inside ``build_app`` / ``launch`` only: `videogen` registers this module's command on every
# run, and the other commands must not pay for Gradio's import. (No ``from __future__ import annotations``: Gradio
# finds its ``gr.Request`` / ``gr.SelectData`` parameters by evaluated annotations.)

MODES = ("text-to-video", "image-to-video", "camera", "trajectory")
SCHEDULERS = ("checkpoint", "unipc", "euler")  # "checkpoint": the pipeline directory's own scheduler
STG_MODES = ("block", "attention")
STEP_CACHES = ("none", "teacache", "magcache", "first-block")  # videogen.step_cache.POLICIES, and off
CAMERA_NULLS = ("identity", "zeros", "off")
DEFAULT_OUTPUTS = "videogen-ui-outputs"
SIDECAR_VERSION = 1

# Every control of the page, in the order the generate event takes them; a sidecar stores these keys.
CONTROLS = (
    "model", "mode", "prompt", "negative_prompt",
    "image", "last_image",
    "camera_image", "camera_preset", "camera_file", "camera_strength", "camera_scale", "camera_null",
    "camera_window_start", "camera_window_stop", "camera_speed",
    "trajectory_image", "tracks_text", "tracks_file", "trajectory_strength", "trajectory_scale",
    "loras", "lora_strengths", "lora_nonstrict",
    "guidance_scale", "stg_scale", "stg_mode", "stg_blocks", "scheduler", "step_cache", "speedup",
    "seed", "steps", "height", "width", "num_frames", "fps", "max_sequence_length", "preview_every",
)
FILE_CONTROLS = ("image", "last_image", "camera_image", "camera_file", "trajectory_image", "tracks_file")

NO_CAMERA_MODEL = ("Camera control needs a camera-control model, and the **Model directory** holds none: leave it "
                   "empty for the embedded one (`checkpoints/shapes-camera`), or enter a CameraControlPipeline "
                   "directory (one "
                   "trained with `videogen train --config configs/shapes-camera/adapter.yaml`, or one written by "
                   "`CameraControlPipeline.from_wan(WAN_I2V_DIR, transformer=FUN_CAMERA_DIT).save_pretrained(DIR)` "
                   "from the Wan2.1-Fun Control-Camera weights; see the README's Camera control section).")
NO_TRAJECTORY_MODEL = ("Trajectory control needs a trajectory model, and the **Model directory** holds none: "
                       "leave it empty for the embedded one (`checkpoints/shapes-trajectory`), or enter a "
                       "TrajectoryControlPipeline directory (one trained with `videogen "
                       "train --config configs/shapes-trajectory/adapter.yaml`, or ATI / Wan-Move weights loaded with "
                       "`TrajectoryControlPipeline.from_wan(WAN_I2V_DIR, 'ati').save_pretrained(DIR)`; see the README's "
                       "Trajectory control section). The tracks were read and checked. Nothing was generated.")


# ----------------------------------------------------------------------------------------------
# Settings: defaults, parsing, sidecars
# ----------------------------------------------------------------------------------------------


def default_settings(model: Optional[str] = None) -> dict:
    """The page's initial settings: the generation defaults of ``model`` (or, with none, of the embedded
    text-to-video default) from ``videogen.loading.generation_defaults``, plus the page's own controls."""
    from videogen.loading import default_model, generation_defaults

    d = generation_defaults(Path(model) if model else default_model("text"))
    window = list(d["camera_window"])
    return dict(
        model=str(model or ""), mode=MODES[0], prompt="", negative_prompt=d["negative_prompt"] or "",
        image=None, last_image=None,
        camera_image=None, camera_preset="pan-left", camera_file=None, camera_strength=float(d["camera_strength"]),
        camera_scale=float(d["camera_scale"]), camera_null=d["camera_null"], camera_window_start=float(window[0]),
        camera_window_stop=float(window[1]), camera_speed=float(d["camera_speed"]),
        trajectory_image=None, tracks_text="", tracks_file=None,
        trajectory_strength=float(d["trajectory_strength"]), trajectory_scale=float(d["trajectory_scale"]),
        loras=[], lora_strengths="", lora_nonstrict=False,
        guidance_scale=float(d["guidance_scale"]), stg_scale=float(d["stg_scale"]), stg_mode=d["stg_mode"],
        stg_blocks=",".join(str(b) for b in d["stg_blocks"]), scheduler=d["scheduler"] or "checkpoint",
        step_cache=d["step_cache"] or "none", speedup=float(d["speedup"] or 2.0),
        seed=0, steps=int(d["steps"]), height=int(d["height"]), width=int(d["width"]),
        num_frames=int(d["num_frames"]), fps=float(d["fps"]), max_sequence_length=int(d["max_sequence_length"]),
        preview_every=1,
    )


def parse_blocks(text) -> list[int]:
    """``"1,2"`` (or a list) -> ``[1, 2]``: the blocks STG perturbs; anything else is a ``ValueError``."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    try:
        blocks = [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"STG blocks must be block indices separated by commas, e.g. 2 or 1,2; got {text!r}") from None
    if not blocks:
        raise ValueError("STG blocks: give at least one block index, e.g. 2")
    return blocks


def parse_strengths(text, count: int) -> list[float]:
    """One strength per LoRA from ``"0.8, 1"`` (missing ones are 1; one value serves every LoRA)."""
    values = [v for v in str(text or "").replace(";", ",").split(",") if v.strip()]
    try:
        strengths = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"LoRA strengths must be numbers separated by commas, e.g. 0.8, 1; got {text!r}") from None
    if len(strengths) > count:
        raise ValueError(f"{len(strengths)} LoRA strengths for {count} LoRA file(s)")
    if len(strengths) == 1 and count > 1:
        return strengths * count
    return strengths + [1.0] * (count - len(strengths))


def lora_specs(paths, strengths_text) -> list[str]:
    """``PATH:SCALE`` strings (what ``videogen.loading.apply_loras`` and the CLI's ``--lora`` take)."""
    paths = [file_path(p) for p in (paths or []) if file_path(p)]
    return [f"{p}:{s}" for p, s in zip(paths, parse_strengths(strengths_text, len(paths)))]


def generation_overrides(settings: dict) -> dict:
    """The page's settings under ``videogen.loading.GENERATION_DEFAULTS``' names (the CLI's flags)."""
    return dict(
        height=int(settings["height"]), width=int(settings["width"]), num_frames=int(settings["num_frames"]),
        steps=int(settings["steps"]), guidance_scale=float(settings["guidance_scale"]),
        stg_scale=float(settings["stg_scale"]), stg_blocks=parse_blocks(settings["stg_blocks"]),
        stg_mode=settings["stg_mode"], negative_prompt=settings["negative_prompt"] or "",
        fps=float(settings["fps"]),
        scheduler=None if settings["scheduler"] in (None, "", "checkpoint") else settings["scheduler"],
        max_sequence_length=int(settings["max_sequence_length"]), camera_scale=float(settings["camera_scale"]),
        camera_null=settings["camera_null"], camera_strength=float(settings["camera_strength"]),
        camera_window=[float(settings["camera_window_start"]), float(settings["camera_window_stop"])],
        camera_speed=float(settings["camera_speed"]),
        trajectory_strength=float(settings["trajectory_strength"]),
        trajectory_scale=float(settings["trajectory_scale"]),
        **step_cache_overrides(settings),
    )


def step_cache_overrides(settings: dict) -> dict:
    """The step-cache settings of the page (a policy or ``none``, and a target speed-up) under the CLI's names;
    the threshold and the attention backend are left to the model's defaults."""
    policy = settings.get("step_cache")
    on = policy not in (None, "", "none")
    return dict(step_cache=policy if on else None, speedup=float(settings["speedup"]) if on else None,
                step_cache_threshold=None, attention=None)


def file_path(value) -> Optional[str]:
    """A path from a Gradio file value (a path string, a dict with ``path``, an object with ``.name``) or None."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = value.get("path") or value.get("name")
    elif hasattr(value, "name") and not isinstance(value, (str, os.PathLike)):
        value = value.name
    return os.fspath(value) if value else None


def file_sha256(path) -> str:
    """The SHA256 of a file (LoRAs are recorded by path and content)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(path, settings: dict, run: dict) -> Path:
    """Write a generation's settings (every control, with the seed actually used) and what happened (``run``:
    model, status, timings, files) as the JSON file beside its video."""
    path = Path(path)
    data = {"videogen_ui": SIDECAR_VERSION, "settings": {k: settings.get(k) for k in CONTROLS}, "run": run}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def read_sidecar(path) -> dict:
    """The settings in a sidecar JSON, with relative file names resolved beside it (a file that no longer exists
    becomes None); a file that is not one of our sidecars is a ``ValueError`` saying so."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read settings from {path.name}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise ValueError(f"{path.name} is not a videogen UI settings file (no \"settings\" object)")
    settings = dict(data["settings"])
    for key in FILE_CONTROLS:
        name = settings.get(key)
        if name:
            full = Path(name) if Path(name).is_absolute() else path.parent / name
            settings[key] = str(full) if full.exists() else None
    settings["loras"] = [p for p in settings.get("loras") or [] if p and Path(p).exists()]
    return settings


def values_from_settings(settings: dict, defaults: dict) -> list:
    """The controls' values in ``CONTROLS`` order: ``settings`` where it has them, else ``defaults``."""
    return [settings[k] if k in settings and settings[k] is not None else defaults.get(k) for k in CONTROLS]


def duration_text(num_frames, fps) -> str:
    """``"17 frames at 8 fps: 2.1 s"`` (frames are 1 + 4k)."""
    try:
        return f"{int(num_frames)} frames at {float(fps):g} fps: {int(num_frames) / float(fps):.1f} s"
    except (TypeError, ValueError, ZeroDivisionError):
        return ""


# ----------------------------------------------------------------------------------------------
# Progress and previews
# ----------------------------------------------------------------------------------------------


def eta_seconds(done: int, total: int, elapsed: float) -> Optional[float]:
    """Seconds left after ``done`` of ``total`` steps took ``elapsed`` seconds (None before the first step)."""
    if done <= 0 or total <= 0:
        return None
    return elapsed / done * max(total - done, 0)


def progress_html(phase: str, done: int = 0, total: int = 0, elapsed: float = 0.0, message: str = "") -> str:
    """The status box: the phase, a step bar with ``done / total`` steps, the elapsed time and the ETA."""
    parts = [f"<b>{html.escape(phase)}</b>"]
    if total:
        eta = eta_seconds(done, total, elapsed)
        parts.append(f"step {done}/{total}")
        parts.append(f"{elapsed:.1f} s elapsed")
        parts.append("ETA " + (f"{eta:.1f} s" if eta is not None else "…"))
    bar = f'<progress max="{max(total, 1)}" value="{done}" style="width:100%"></progress>' if total else ""
    note = f"<div>{html.escape(message)}</div>" if message else ""
    return f'<div class="vg-status">{" · ".join(parts)}{bar}{note}</div>'


def error_html(message: str) -> str:
    """The status box for a failed request: the message as the page shows it."""
    return (f'<div class="vg-status vg-error" style="color:#b91c1c"><b>error</b>: '
            f"{html.escape(str(message))}</div>")


def denoised_estimate(pipe, latents):
    """The current estimate of the clean latents: the x0 prediction a multistep scheduler keeps
    (``UniPCMultistepScheduler`` with ``predict_x0``: ``model_outputs[-1]``), else the latents themselves."""
    outputs = getattr(pipe.scheduler, "model_outputs", None)
    if outputs and outputs[-1] is not None and getattr(pipe.scheduler.config, "predict_x0", False):
        if tuple(outputs[-1].shape) == tuple(latents.shape):
            return outputs[-1]
    return latents


def preview_frames(pipe, latents, max_frames: int = 4, max_side: int = 16, min_height: int = 128):
    """A cheap look at latents: pooled to at most ``max_side`` latent pixels a side, decoded with the pipeline's VAE,
    and ``max_frames`` evenly spaced frames side by side as one ``uint8 [H, W, 3]`` image."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    z = latents[:1].float()
    b, c, t, h, w = z.shape
    factor = max(1, -(-max(h, w) // max_side))
    if factor > 1:
        z = F.avg_pool2d(z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), factor, ceil_mode=True)
        z = z.reshape(b, t, c, *z.shape[-2:]).permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        video = pipe.decode_latents(z, "np")[0]  # [F, H, W, 3] in [0, 1]
    picks = np.unique(np.linspace(0, len(video) - 1, min(max_frames, len(video))).round().astype(int))
    strip = np.concatenate([video[i] for i in picks], axis=1)
    strip = (strip.clip(0, 1) * 255).round().astype(np.uint8)
    repeat = max(1, -(-min_height // strip.shape[0]))
    return strip.repeat(repeat, axis=0).repeat(repeat, axis=1)


# ----------------------------------------------------------------------------------------------
# Trajectory and camera helpers (drawing and checking; no model)
# ----------------------------------------------------------------------------------------------


def add_track_point(text: str, x: float, y: float) -> str:
    """Append point ``(x, y)`` to the last track of the inline form (one track per line, ``"x0,y0 x1,y1 ..."``)."""
    lines = (text or "").split("\n") if (text or "").strip() else [""]
    lines[-1] = (lines[-1] + f" {round(float(x))},{round(float(y))}").strip()
    return "\n".join(lines)


def new_track(text: str) -> str:
    """Start a new track (an empty last line) unless the last one is empty already."""
    text = (text or "").rstrip("\n")
    return text + "\n" if text.strip() else ""


def undo_track_point(text: str) -> str:
    """Remove the last point of the last track (an empty last track is removed)."""
    lines = (text or "").split("\n")
    points = lines[-1].split()
    if points:
        lines[-1] = " ".join(points[:-1])
    else:
        lines = lines[:-1]
    return "\n".join(lines)


def parse_tracks(text: str, tracks_file, num_frames: int, height: int, width: int):
    """``(tracks [N, F, 2], visible [N, F])`` from a track file (ours, ATI, Wan-Move or Tora; read with
    ``videogen.conditioning.trajectory.read_tracks``) or, without one, the inline lines (``parse_inline_track``,
    one track a line); None when there are none."""
    import torch

    from videogen.conditioning import trajectory

    path = file_path(tracks_file)
    if path:
        return trajectory.read_tracks(path, int(num_frames), int(height), int(width))
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    parsed = []
    for n, line in enumerate(lines):
        try:
            parsed.append(trajectory.parse_inline_track(line, int(num_frames), int(height), int(width)))
        except ValueError as err:
            raise ValueError(f"track {n + 1}: {err}") from None
    return torch.cat([t for t, _ in parsed]), torch.cat([v for _, v in parsed])


TRACK_COLOURS = ((255, 80, 80), (80, 200, 255), (255, 210, 60), (120, 255, 120), (230, 120, 255), (255, 160, 60))


def fitted_frame(image, height: int, width: int):
    """The first frame as the model sees it (``fit_image``: resize to cover, centre crop) as ``uint8 [H, W, 3]``;
    a black frame without an image."""
    import numpy as np

    from videogen.conditioning.image import fit_image, load_image

    path = file_path(image)
    if path is None:
        return np.zeros((int(height), int(width), 3), dtype=np.uint8)
    frame = fit_image(load_image(path), int(height), int(width))
    return (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def draw_tracks(frame, tracks=None, visible=None, scale: int = 0):
    """``frame`` (``uint8 [H, W, 3]``) with each track drawn as a coloured line from a ring (its first frame) to
    a dot (its last); small frames are enlarged (``scale``, 0: to about 256 pixels) so the lines can be seen."""
    import numpy as np
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    scale = scale or max(1, 256 // max(h, w))
    image = Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST)
    if tracks is not None:
        draw = ImageDraw.Draw(image)
        for n, track in enumerate(tracks.tolist()):
            colour = TRACK_COLOURS[n % len(TRACK_COLOURS)]
            pts = [(x * scale, y * scale) for (x, y), v in zip(track, visible[n].tolist()) if v]
            if not pts:
                continue
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            draw.ellipse((x0 - 4, y0 - 4, x0 + 4, y0 + 4), outline=colour, width=2)
            draw.ellipse((x1 - 3, y1 - 3, x1 + 3, y1 + 3), fill=colour)
    return np.asarray(image)


def camera_path_image(camera, num_frames: int, height: int, width: int, speed: float = 1.0, size: int = 160):
    """The camera's path, read as a generation reads it (``camera_poses``: a preset or a pose file), drawn from
    above (x right, z forward) and from behind (x right, y down), the first pose as a ring and the last as a dot,
    each view's viewing direction as short ticks; ``uint8 [size, 2 * size, 3]``."""
    import numpy as np
    from PIL import Image, ImageDraw

    from videogen.conditioning.camera import camera_poses

    _, c2w = camera_poses(camera, int(num_frames), int(height), int(width), speed=float(speed))
    centres = c2w[:, :3, 3].numpy()
    forward = c2w[:, :3, 2].numpy()
    image = Image.new("RGB", (2 * size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    extent = max(float(np.abs(centres).max()), 0.5) * 1.3
    for view, (a, b, label) in enumerate(((0, 2, "top: x right, z up-screen"), (0, 1, "back: x right, y down"))):
        ox = view * size

        def at(p, a=a, b=b, ox=ox):
            u = ox + size / 2 + p[a] / extent * size / 2 * 0.9
            v = size / 2 + (p[b] if b == 1 else -p[b]) / extent * size / 2 * 0.9
            return u, v

        draw.rectangle((ox, 0, ox + size - 1, size - 1), outline=(200, 200, 200))
        draw.text((ox + 4, 2), label, fill=(90, 90, 90))
        pts = [at(p) for p in centres]
        for k in range(0, len(pts), max(1, len(pts) // 8)):
            tip = at(centres[k] + forward[k] * extent * 0.15)
            draw.line((pts[k], tip), fill=(150, 150, 220), width=1)
        if len(pts) > 1:
            draw.line(pts, fill=(220, 60, 60), width=2)
        (x0, y0), (x1, y1) = pts[0], pts[-1]
        draw.ellipse((x0 - 4, y0 - 4, x0 + 4, y0 + 4), outline=(30, 30, 30), width=2)
        draw.ellipse((x1 - 3, y1 - 3, x1 + 3, y1 + 3), fill=(220, 60, 60))
    return np.asarray(image)


def model_status(model: Optional[str]) -> str:
    """What the Model directory field holds, in words (its pipeline class, or what loads when it is empty)."""
    from videogen.loading import DEFAULT_MODELS, pipeline_class_name

    if not model:
        kinds = {"camera": "camera control", "trajectory": "trajectory control"}
        extra = "; ".join(f"`{DEFAULT_MODELS[k]}` ({what})" if DEFAULT_MODELS[k] else f"no embedded {what} model"
                          for k, what in kinds.items())
        return (f"Embedded defaults: `{DEFAULT_MODELS['text']}` (text-to-video) and `{DEFAULT_MODELS['image']}` "
                f"(image-to-video); {extra}.")
    try:
        return f"`{model}`: {pipeline_class_name(Path(model))}"
    except (OSError, ValueError) as err:
        return f"`{model}`: {err}"


def trajectory_status(model: Optional[str]) -> str:
    """Which trajectory model the Trajectory tab uses (the Model directory's, else the embedded one); the message
    saying what to do when there is none."""
    from videogen.loading import DEFAULT_MODELS, default_model, is_trajectory_control

    try:
        if model and is_trajectory_control(Path(model)):
            return f"Trajectory model: `{model}`."
        if not model and DEFAULT_MODELS["trajectory"]:
            return f"Trajectory model: the embedded `{default_model('trajectory').name}`."
    except (OSError, ValueError):
        pass
    return NO_TRAJECTORY_MODEL


def camera_status(model: Optional[str]) -> str:
    """Whether the Model directory holds a camera-control pipeline; the message saying what to do when not."""
    from videogen.loading import DEFAULT_MODELS, default_model, is_camera_control

    try:
        if model and is_camera_control(Path(model)):
            return f"Camera model: `{model}`."
        if not model and DEFAULT_MODELS["camera"]:
            return f"Camera model: the embedded `{default_model('camera').name}`."
    except (OSError, ValueError):
        pass
    return NO_CAMERA_MODEL


# ----------------------------------------------------------------------------------------------
# The app: requests, runs, outputs (no Gradio here)
# ----------------------------------------------------------------------------------------------


class App:
    """The state behind the page: the pipelines loaded (one at a time), the outputs made since start, the stop
    flags of running requests. Every generation goes through ``videogen.loading`` (``resolve_model``,
    ``generation_defaults``, ``generation_arguments``, ``load_pipeline``, ``apply_loras``, ``use_scheduler``)
    exactly as ``videogen generate`` does."""

    def __init__(self, model: Optional[str] = None, device: str = "cpu", dtype: str = "float32",
                 outputs=DEFAULT_OUTPUTS):
        self.model = str(model) if model else ""
        self.device, self.dtype = device, dtype
        self.outputs = Path(outputs).resolve()
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.defaults = default_settings(self.model or None)
        self._pipes: dict = {}  # resolved model path -> pipeline (the last one used)
        self._lock = threading.Lock()
        self._stops: dict = {}  # session -> threading.Event of its running request
        self.gallery: list = []  # (video path, caption, sidecar path), oldest first

    # -- pipelines -------------------------------------------------------------------------------

    def pipeline(self, model: Path):
        """The pipeline at ``model`` (``loading.load_pipeline``), kept loaded until another model is asked for."""
        from videogen.loading import load_pipeline

        key = str(Path(model).resolve())
        with self._lock:
            if key not in self._pipes:
                self._pipes.clear()  # one model in memory at a time
                pipe = load_pipeline(Path(model), self.device, self.dtype)
                pipe.set_progress_bar_config(disable=True)
                self._pipes[key] = pipe
            return self._pipes[key]

    # -- requests --------------------------------------------------------------------------------

    def plan(self, settings: dict) -> dict:
        """Check one request and build its pipeline arguments without loading a model: the model directory
        (``resolve_model``: the embedded default for the mode when the field is empty), the generation settings
        (``generation_defaults`` with the page's values on top), the pipeline call's arguments
        (``generation_arguments``: images and the camera read here), the LoRA specs and the seed. Bad input is a
        ``ValueError`` (or ``FileNotFoundError``) with a message for the page."""
        from videogen.loading import generation_arguments, generation_defaults, resolve_model

        mode = settings.get("mode") or MODES[0]
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if not str(settings.get("prompt") or "").strip():
            raise ValueError("write a prompt first")
        model = (settings.get("model") or "").strip() or None
        overrides = generation_overrides(settings)
        seed = int(settings.get("seed") if settings.get("seed") is not None else 0)
        if seed < 0:
            seed = random.randrange(2**31)
        image = last_image = camera = tracks = None
        if mode == "trajectory":
            from videogen.loading import DEFAULT_MODELS, is_trajectory_control, takes_start_image

            tracks = parse_tracks(settings.get("tracks_text"), settings.get("tracks_file"), overrides["num_frames"],
                                  overrides["height"], overrides["width"])
            if tracks is None:
                raise ValueError("trajectory mode: click points on the first frame or upload a track file")
            if (model is None and not DEFAULT_MODELS["trajectory"]) or (
                    model is not None and not is_trajectory_control(Path(model))):
                raise ValueError(NO_TRAJECTORY_MODEL)
            first = file_path(settings.get("trajectory_image"))
            target = Path(model) if model else None
            # The first frame is where the tracks are drawn; it is the start image only for a model that takes one.
            if first is not None and takes_start_image(target):
                image = first
        if mode == "image-to-video":
            image, last_image = file_path(settings.get("image")), file_path(settings.get("last_image"))
            if image is None:
                raise ValueError("image-to-video: upload a first frame")
        if mode == "camera":
            from videogen.loading import DEFAULT_MODELS

            if model is None and not DEFAULT_MODELS["camera"]:
                raise ValueError(NO_CAMERA_MODEL)
            camera = file_path(settings.get("camera_file")) or settings.get("camera_preset")
            if not camera:
                raise ValueError("camera mode: pick a preset or upload a pose file")
            image = file_path(settings.get("camera_image"))
        path = resolve_model(model, image=image is not None, last_image=last_image is not None,
                             camera=camera is not None, trajectory=tracks is not None)
        d = generation_defaults(path, overrides)
        kwargs = generation_arguments(path, settings["prompt"], d, image=image, last_image=last_image,
                                      camera=camera, trajectory=tracks, seed=seed)
        loras = lora_specs(settings.get("loras"), settings.get("lora_strengths"))
        for spec in loras:  # before any model loads, as the CLI does
            from videogen.loading import parse_lora_spec

            if not Path(parse_lora_spec(spec)[0]).is_file():
                raise FileNotFoundError(f"no LoRA file at {parse_lora_spec(spec)[0]}")
        return dict(model=path, mode=mode, settings=d, kwargs=kwargs, loras=loras, seed=seed,
                    strict=not settings.get("lora_nonstrict"))

    def run(self, settings: dict, stop: Optional[threading.Event] = None,
            on_event: Optional[Callable[[dict], None]] = None) -> dict:
        """One generation: ``plan``, the pipeline (LoRAs loaded afresh, the scheduler chosen), the denoising with a
        step callback that reports progress and a preview every ``preview_every`` steps to ``on_event``, and stops
        cleanly when ``stop`` is set (the current denoised estimate is decoded and saved, marked stopped). Writes
        the video, its sidecar JSON and copies of the input files into the outputs folder; returns
        ``{"video", "sidecar", "status", "settings", "frames"}``."""
        from videogen.io import save_video
        from videogen.loading import apply_loras, use_attention, use_scheduler

        emit = on_event or (lambda event: None)
        stop = stop or threading.Event()
        started = time.monotonic()
        emit({"phase": "reading inputs"})
        plan = self.plan(settings)
        emit({"phase": f"loading {plan['model'].name}"})
        pipe = self.pipeline(plan["model"])
        if pipe.get_list_adapters()["transformer"]:
            pipe.unload_lora_weights()
        try:
            reports = apply_loras(pipe, plan["loras"], strict=plan["strict"])
        except Exception:
            try:
                pipe.unload_lora_weights()
            except Exception:  # the adapter state is unknown: load the model afresh next time
                self._pipes.clear()
            raise
        use_scheduler(pipe, plan["settings"]["scheduler"])
        use_attention(pipe, plan["settings"].get("attention"))
        total = plan["kwargs"]["num_inference_steps"]
        every = int(settings.get("preview_every") or 0)
        state = {"stopped_at": None}
        t0 = time.monotonic()

        def on_step(p, i, t, tensors):
            latents = tensors["latents"]
            done = i + 1
            event = {"phase": "denoising", "done": done, "total": total, "elapsed": time.monotonic() - t0}
            result = {}
            if stop.is_set() and done < total:
                state["stopped_at"] = done
                p._interrupt = True  # diffusers' pattern: the remaining steps are skipped
                result["latents"] = denoised_estimate(p, latents)  # decode the clean estimate, not the noise
                event["phase"] = f"stopped at step {done}/{total}; decoding the current estimate"
            elif done == total:
                event["phase"] = "decoding"
            if every and (done % every == 0 or done == total) and not state["stopped_at"]:
                event["preview"] = preview_frames(p, denoised_estimate(p, latents))
            emit(event)
            return result

        out = pipe(**plan["kwargs"], output_type="np", callback_on_step_end=on_step,
                   callback_on_step_end_tensor_inputs=["latents"])
        frames = out.frames[0]
        status = "done" if state["stopped_at"] is None else f"stopped at step {state['stopped_at']}/{total}"
        emit({"phase": "saving"})
        stem = self._next_stem(plan["seed"])
        video = Path(save_video(frames, self.outputs / f"{stem}.mp4", fps=plan["settings"]["fps"]))
        saved = dict(settings, seed=plan["seed"])
        for key in FILE_CONTROLS:  # copies beside the output, so the sidecar still reproduces it later
            src = file_path(settings.get(key))
            if src and (key != "camera_file" or plan["mode"] == "camera") and Path(src).is_file():
                dst = self.outputs / f"{stem}.{key}{Path(src).suffix}"
                shutil.copyfile(src, dst)
                saved[key] = dst.name
            else:
                saved[key] = None
        saved["loras"] = [str(Path(p)) for p in (file_path(v) for v in settings.get("loras") or []) if p]
        run = dict(
            model=str(plan["model"]), status=status, seed=plan["seed"], frames=int(frames.shape[0]),
            size=[int(frames.shape[1]), int(frames.shape[2])], seconds=round(time.monotonic() - started, 2),
            video=video.name, created=time.strftime("%Y-%m-%d %H:%M:%S"),
            loras=[dict(path=spec.rpartition(":")[0], scale=float(spec.rpartition(":")[2]),
                        sha256=file_sha256(spec.rpartition(":")[0]), report=str(r))
                   for spec, r in zip(plan["loras"], reports)],
        )
        sidecar = write_sidecar(self.outputs / f"{stem}.json", saved, run)
        caption = f"seed {plan['seed']} · {str(settings['prompt'])[:40]}" + ("" if status == "done" else " (stopped)")
        self.gallery.append((str(video), caption, str(sidecar)))
        return dict(video=str(video), sidecar=str(sidecar), status=status, settings=saved, run=run,
                    frames=int(frames.shape[0]))

    def _next_stem(self, seed: int) -> str:
        """A new output name: a running number, the time and the seed."""
        n = len(list(self.outputs.glob("*.json"))) + 1
        while True:
            stem = f"{n:04d}-{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
            if not (self.outputs / f"{stem}.mp4").exists():
                return stem
            n += 1

    # -- the page's requests ---------------------------------------------------------------------

    def stop(self, session: str) -> str:
        """Ask the running request of ``session`` to stop; returns what happened, in words."""
        event = self._stops.get(session)
        if event is None:
            return "nothing is running"
        event.set()
        return "stopping after the current step"

    def stream(self, session: str, values) -> "iter":
        """Run one request of the page (``values`` in ``CONTROLS`` order) in a worker thread and yield the page's
        outputs as it goes: ``(status html, preview image, video, files, run json)``; errors end as a message."""
        settings = dict(zip(CONTROLS, values))
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        self._stops[session] = stop
        box: dict = {}

        def work():
            try:
                box["result"] = self.run(settings, stop, events.put)
            except Exception as err:  # every failure is a message in the page; the server keeps serving
                if not isinstance(err, (ValueError, FileNotFoundError)):
                    traceback.print_exc(file=sys.stderr)
                box["error"] = err
            finally:
                events.put(None)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        preview = None
        try:
            while True:
                event = events.get()
                if event is None:
                    break
                preview = event.get("preview", preview)
                yield (progress_html(event["phase"], event.get("done", 0), event.get("total", 0),
                                     event.get("elapsed", 0.0)), preview, None, None, None)
            worker.join()
        finally:
            self._stops.pop(session, None)
        if "error" in box:
            err = box["error"]
            message = str(err) if isinstance(err, (ValueError, FileNotFoundError)) else f"{type(err).__name__}: {err}"
            yield error_html(message), preview, None, None, None
            return
        result = box["result"]
        run = result["run"]
        yield (progress_html(result["status"], message=f"{run['frames']} frames, {run['seconds']} s, seed "
                             f"{run['seed']}: {result['video']}"),
               preview, result["video"], [result["video"], result["sidecar"]], {"settings": result["settings"],
                                                                               "run": run})


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------

CSS = ".vg-status{padding:6px 2px} .vg-error{font-weight:500}"


def build_app(app: App):
    """The Gradio page over ``app``: inputs by mode in tabs, shared settings, Generate / Stop, progress, preview,
    the video, the settings it was made with, a gallery of this session's outputs, and loading settings back."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from videogen.conditioning.camera import CAMERA_PRESETS

    d = app.defaults
    comps: dict = {}
    with gr.Blocks(title="videogen", analytics_enabled=False) as page:
        gr.Markdown("# videogen\nLatent video diffusion: text, image, camera and trajectory conditioning, LoRAs "
                    "and guidance, on the embedded default model or any pipeline directory.")
        with gr.Row():
            with gr.Column(scale=3):
                comps["prompt"] = gr.Textbox(label="Prompt", lines=2, value=d["prompt"], elem_id="prompt",
                                             placeholder="a red circle moving to the right on a black background")
                comps["negative_prompt"] = gr.Textbox(label="Negative prompt", value=d["negative_prompt"])
                comps["mode"] = gr.Textbox(value=d["mode"], visible=False, label="mode")
                with gr.Tabs() as tabs:
                    with gr.Tab("Text to video", id=MODES[0]) as tab_text:
                        gr.Markdown("From the prompt alone.")
                    with gr.Tab("Image to video", id=MODES[1]) as tab_image:
                        with gr.Row():
                            comps["image"] = gr.File(label="First frame", file_types=["image"], type="filepath")
                            comps["last_image"] = gr.File(label="Last frame (first-last-frame models)",
                                                          file_types=["image"], type="filepath")
                        image_view = gr.Image(label="First frame as the model sees it (cover, centre crop)",
                                              interactive=False, height=200)
                    with gr.Tab("Camera", id=MODES[2]) as tab_camera:
                        camera_note = gr.Markdown(camera_status(app.model))
                        with gr.Row():
                            comps["camera_preset"] = gr.Dropdown(list(CAMERA_PRESETS), value=d["camera_preset"],
                                                                 label="Preset")
                            comps["camera_file"] = gr.File(label="Pose file (replaces the preset)", type="filepath")
                            comps["camera_image"] = gr.File(label="Start image (optional)", file_types=["image"],
                                                            type="filepath")
                        with gr.Row():
                            comps["camera_strength"] = gr.Slider(0, 2, value=d["camera_strength"], step=0.05,
                                                                 label="Strength")
                            comps["camera_scale"] = gr.Slider(0, 10, value=d["camera_scale"], step=0.5,
                                                              label="CMG scale (0: off)")
                            comps["camera_null"] = gr.Radio(list(CAMERA_NULLS), value=d["camera_null"],
                                                            label="CMG null camera")
                        with gr.Row():
                            comps["camera_window_start"] = gr.Slider(0, 1, value=d["camera_window_start"], step=0.05,
                                                                     label="Window start")
                            comps["camera_window_stop"] = gr.Slider(0, 1, value=d["camera_window_stop"], step=0.05,
                                                                    label="Window stop")
                            comps["camera_speed"] = gr.Slider(0, 3, value=d["camera_speed"], step=0.1,
                                                              label="Preset speed")
                        camera_view = gr.Image(label="Camera path", interactive=False, height=180)
                        camera_msg = gr.Markdown()
                    with gr.Tab("Trajectory", id=MODES[3]) as tab_traj:
                        gr.Markdown("Click on the frame to add points to the current track; **New track** starts "
                                    "another. Or upload a track file (our JSON, ATI .pth, Wan-Move .npy, Tora "
                                    ".txt). Track i moves the i-th object the prompt names.")
                        trajectory_note = gr.Markdown(trajectory_status(app.model))
                        with gr.Row():
                            comps["trajectory_image"] = gr.File(label="First frame", file_types=["image"],
                                                                type="filepath")
                            comps["tracks_file"] = gr.File(label="Track file", type="filepath")
                        canvas = gr.Image(label="Tracks (click to add a point)", interactive=False, height=280)
                        comps["tracks_text"] = gr.Textbox(label="Tracks (one per line: x0,y0 x1,y1 ... in output "
                                                          "pixels)", lines=2, value=d["tracks_text"])
                        with gr.Row():
                            comps["trajectory_strength"] = gr.Slider(0, 2, value=d["trajectory_strength"],
                                                                     step=0.05, label="Trajectory strength")
                            comps["trajectory_scale"] = gr.Slider(0, 8, value=d["trajectory_scale"], step=0.5,
                                                                  label="Trajectory guidance (0: off)")
                        with gr.Row():
                            new_btn = gr.Button("New track", size="sm")
                            undo_btn = gr.Button("Undo point", size="sm")
                            clear_btn = gr.Button("Clear", size="sm")
                            export_btn = gr.Button("Download tracks", size="sm")
                        tracks_out = gr.File(label="Track file (JSON)", interactive=False)
                        traj_msg = gr.Markdown()
                with gr.Accordion("LoRA", open=False):
                    with gr.Row():
                        comps["loras"] = gr.File(label="LoRA files (.safetensors, any Wan scheme)",
                                                 file_count="multiple", type="filepath")
                        with gr.Column():
                            comps["lora_strengths"] = gr.Textbox(label="Strengths (one per file, comma-separated; "
                                                                 "default 1)", value=d["lora_strengths"])
                            comps["lora_nonstrict"] = gr.Checkbox(label="Load the matching keys of a partly fitting "
                                                                  "LoRA (warn about the rest)",
                                                                  value=d["lora_nonstrict"])
                with gr.Accordion("Guidance", open=True):
                    with gr.Row():
                        comps["guidance_scale"] = gr.Slider(0, 20, value=d["guidance_scale"], step=0.5,
                                                            label="CFG scale", info="1 or less: no CFG")
                        comps["stg_scale"] = gr.Slider(0, 5, value=d["stg_scale"], step=0.1, label="STG scale",
                                                       info="0: no STG")
                    with gr.Row():
                        comps["stg_mode"] = gr.Radio(list(STG_MODES), value=d["stg_mode"], label="STG mode",
                                                     info="block: skip whole blocks; attention: self-attention "
                                                     "returns V")
                        comps["stg_blocks"] = gr.Textbox(value=d["stg_blocks"], label="STG blocks",
                                                         info="block indices, e.g. 2 or 1,2")
                with gr.Accordion("Size, length, sampling", open=True):
                    with gr.Row():
                        comps["seed"] = gr.Number(value=d["seed"], precision=0, label="Seed", info="-1: random")
                        comps["steps"] = gr.Slider(1, 100, value=d["steps"], step=1, label="Steps")
                        comps["scheduler"] = gr.Dropdown(list(SCHEDULERS), value=d["scheduler"], label="Scheduler",
                                                         info="checkpoint: the model's own")
                    with gr.Row():
                        comps["step_cache"] = gr.Dropdown(list(STEP_CACHES), value=d["step_cache"],
                                                          label="Step cache", info="skip steps, reusing the DiT's "
                                                          "residual (magcache: calibrated models)")
                        comps["speedup"] = gr.Slider(1, 4, value=d["speedup"], step=0.1, label="Target speed-up",
                                                     info="x: steps computed = steps / x")
                    with gr.Row():
                        comps["height"] = gr.Slider(16, 1280, value=d["height"], step=16, label="Height")
                        comps["width"] = gr.Slider(16, 1280, value=d["width"], step=16, label="Width")
                    with gr.Row():
                        comps["num_frames"] = gr.Slider(1, 161, value=d["num_frames"], step=4, label="Frames",
                                                        info="1 + 4k")
                        comps["fps"] = gr.Number(value=d["fps"], label="fps", info="of the saved video")
                    length = gr.Markdown(duration_text(d["num_frames"], d["fps"]))
                with gr.Accordion("Model and advanced", open=False):
                    comps["model"] = gr.Textbox(value=d["model"], label="Model directory (empty: the embedded "
                                                "default for the mode)")
                    model_note = gr.Markdown(model_status(app.model))
                    defaults_btn = gr.Button("Use this model's defaults", size="sm")
                    with gr.Row():
                        comps["max_sequence_length"] = gr.Number(value=d["max_sequence_length"], precision=0,
                                                                 label="Text tokens")
                        comps["preview_every"] = gr.Number(value=d["preview_every"], precision=0,
                                                           label="Preview every N steps (0: off)")
            with gr.Column(scale=2):
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                status = gr.HTML(progress_html("ready"), elem_id="status")
                preview = gr.Image(label="Preview (current denoised estimate)", interactive=False, height=160)
                video = gr.Video(label="Video", interactive=False, autoplay=True, loop=True)
                files = gr.File(label="Download (video and settings)", file_count="multiple", interactive=False)
                run_info = gr.JSON(label="Settings of this video")
                gallery = gr.Gallery(label="Outputs since start", columns=4, height=220, allow_preview=True)
                with gr.Row():
                    settings_file = gr.File(label="Load settings (a sidecar .json)", type="filepath")
                    load_selected = gr.Button("Load the selected output's settings", size="sm")
                picked = gr.State(None)

        inputs = [comps[k] for k in CONTROLS]

        def current_gallery():
            return [(v, c) for v, c, _ in app.gallery]

        def on_generate(request: gr.Request, *values):
            session = getattr(request, "session_hash", None) or "default"
            last = None
            for last in app.stream(session, values):
                yield (*last, gr.skip())
            yield (*last, current_gallery())

        def on_stop(request: gr.Request):
            session = getattr(request, "session_hash", None) or "default"
            return progress_html(app.stop(session))

        generate_btn.click(on_generate, inputs, [status, preview, video, files, run_info, gallery],
                           api_name="generate", concurrency_limit=1, concurrency_id="generate",
                           show_progress="minimal")
        stop_btn.click(on_stop, None, [status], api_name="stop", queue=False)

        for tab, mode in ((tab_text, MODES[0]), (tab_image, MODES[1]), (tab_camera, MODES[2]), (tab_traj, MODES[3])):
            tab.select(lambda mode=mode: mode, None, comps["mode"], queue=False)

        def on_image(image, height, width):
            try:
                return None if file_path(image) is None else fitted_frame(image, height, width), ""
            except ValueError as err:
                return None, error_html(err)

        comps["image"].change(on_image, [comps["image"], comps["height"], comps["width"]], [image_view, status],
                              queue=False)

        def on_camera(preset, pose_file, frames, height, width, speed):
            camera = file_path(pose_file) or preset
            if not camera:
                return None, ""
            try:
                return camera_path_image(camera, frames, height, width, speed), ""
            except (ValueError, OSError) as err:
                return None, f"**Pose file problem:** {err}"

        camera_inputs = [comps[k] for k in ("camera_preset", "camera_file", "num_frames", "height", "width",
                                            "camera_speed")]
        for key in ("camera_preset", "camera_file", "camera_speed"):
            comps[key].change(on_camera, camera_inputs, [camera_view, camera_msg], queue=False)
        tab_camera.select(on_camera, camera_inputs, [camera_view, camera_msg], queue=False)

        def on_tracks(image, text, tracks_file, frames, height, width):
            try:
                frame = fitted_frame(image, height, width)
            except ValueError as err:
                return None, f"**First frame problem:** {err}"
            try:
                tracks = parse_tracks(text, tracks_file, frames, height, width)
            except (ValueError, OSError) as err:
                return draw_tracks(frame), f"**Track problem:** {err}"
            if tracks is None:
                return draw_tracks(frame), ""
            return draw_tracks(frame, *tracks), f"{len(tracks[0])} track(s) of {int(frames)} frames"

        track_inputs = [comps[k] for k in ("trajectory_image", "tracks_text", "tracks_file", "num_frames", "height",
                                           "width")]
        for key in ("trajectory_image", "tracks_text", "tracks_file"):
            comps[key].change(on_tracks, track_inputs, [canvas, traj_msg], queue=False)
        tab_traj.select(on_tracks, track_inputs, [canvas, traj_msg], queue=False)

        def on_click(text, height, width, evt: gr.SelectData):
            x, y = evt.index
            h, w = int(height), int(width)
            scale = max(1, 256 // max(h, w))  # the canvas is drawn enlarged (draw_tracks)
            return add_track_point(text, min(x / scale, w), min(y / scale, h))

        canvas.select(on_click, [comps["tracks_text"], comps["height"], comps["width"]], comps["tracks_text"],
                      queue=False)
        new_btn.click(new_track, comps["tracks_text"], comps["tracks_text"], queue=False)
        undo_btn.click(undo_track_point, comps["tracks_text"], comps["tracks_text"], queue=False)
        clear_btn.click(lambda: ("", None), None, [comps["tracks_text"], comps["tracks_file"]], queue=False)

        def on_export(text, tracks_file, frames, height, width):
            from videogen.conditioning.trajectory import write_tracks

            try:
                tracks = parse_tracks(text, tracks_file, frames, height, width)
            except (ValueError, OSError) as err:
                return None, f"**Track problem:** {err}"
            if tracks is None:
                return None, "no tracks yet"
            path = app.outputs / f"tracks-{time.strftime('%Y%m%d-%H%M%S')}.json"
            write_tracks(path, *tracks)
            return str(path), f"wrote {path.name}"

        export_btn.click(on_export, track_inputs[1:], [tracks_out, traj_msg], queue=False)

        for key in ("num_frames", "fps"):
            comps[key].change(duration_text, [comps["num_frames"], comps["fps"]], length, queue=False)

        def on_model(model):
            return model_status(model), camera_status(model), trajectory_status(model)

        comps["model"].change(on_model, comps["model"], [model_note, camera_note, trajectory_note], queue=False)

        keep = ("model", "mode", "prompt", "image", "last_image", "camera_image", "camera_file", "trajectory_image",
                "tracks_text", "tracks_file", "loras", "lora_strengths", "lora_nonstrict", "seed")

        def on_defaults(model):
            try:
                fresh = default_settings(model or None)
            except (OSError, ValueError) as err:
                return [gr.skip()] * len(CONTROLS) + [error_html(err)]
            return [gr.skip() if k in keep else fresh[k] for k in CONTROLS] + [progress_html("defaults loaded")]

        defaults_btn.click(on_defaults, comps["model"], [*inputs, status], queue=False)

        def load_settings(path):
            if not path:
                return [gr.skip()] * len(CONTROLS) + [gr.skip(), gr.skip()]
            try:
                settings = read_sidecar(path)
            except ValueError as err:
                return [gr.skip()] * len(CONTROLS) + [gr.skip(), error_html(err)]
            values = values_from_settings(settings, app.defaults)
            mode = settings.get("mode") if settings.get("mode") in MODES else MODES[0]
            selected = mode
            return values + [gr.Tabs(selected=selected), progress_html("settings loaded", message=Path(path).name)]

        settings_file.upload(load_settings, settings_file, [*inputs, tabs, status], queue=False,
                             api_name="load_settings")

        def on_pick(evt: gr.SelectData):
            return evt.index

        gallery.select(on_pick, None, picked, queue=False)

        def on_load_selected(index):
            if index is None or not 0 <= int(index) < len(app.gallery):
                return [gr.skip()] * len(CONTROLS) + [gr.skip(), progress_html("select an output in the gallery")]
            return load_settings(app.gallery[int(index)][2])

        load_selected.click(on_load_selected, picked, [*inputs, tabs, status], queue=False)
    return page


def launch(model: Optional[str] = None, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
           dtype: str = "float32", outputs=DEFAULT_OUTPUTS, block: bool = True, max_queue: int = 32):
    """Serve the page at ``http://host:port`` (local only, no share link, no analytics: nothing is fetched from
    the internet), with Gradio's queue running the generations one after another. ``block=False`` returns
    ``(page, app)`` with the server running in the background (tests)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    app = App(model, device, dtype, outputs)
    page = build_app(app)
    page.queue(default_concurrency_limit=1, max_size=max_queue)
    page.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                allowed_paths=[str(app.outputs)], prevent_thread_lock=not block, ssr_mode=False, quiet=not block,
                css=CSS)
    return page, app


def run_ui(args) -> int:
    """``videogen ui``: serve the page until interrupted."""
    if args.model is not None:
        from videogen.loading import pipeline_class_name

        pipeline_class_name(Path(args.model))  # a wrong directory is an error before the server starts
    print(f"videogen ui: http://{args.host}:{args.port} (outputs in {Path(args.outputs).resolve()})")
    launch(args.model, args.host, args.port, args.device, args.dtype, args.outputs)
    return 0


def add_cli(subparsers):
    """Register ``videogen ui`` on an argparse subparsers object; return its parser."""
    p = subparsers.add_parser("ui", help="serve the web UI (Gradio) on this machine")
    p.add_argument("--model", default=None, help="pipeline directory whose generation defaults the page starts "
                   "with and that every mode uses (default: the embedded model, checkpoints/shapes-t2v, which "
                   "does text- and image-to-video)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--outputs", default=DEFAULT_OUTPUTS, help=f"folder for videos and their settings (default "
                   f"./{DEFAULT_OUTPUTS})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.set_defaults(func=run_ui)
    return p
