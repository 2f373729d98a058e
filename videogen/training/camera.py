"""The camera-adapter training task: a frozen base DiT, a trained CameraControlNet, the static null and pose dropout.

The trainer (``videogen.training.trainer``) calls ``CameraTask`` at four points: building the trained module,
preparing a batch (camera rays from each clip's metadata; the static-camera null with the clip frozen to its first
frame; sparse pose dropout), the noise levels (optionally AC3D's high-noise sampling), validation and the final save.
Everything random comes from a generator the trainer seeds per micro-batch, so a resumed run is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from videogen.conditioning.camera import pack_camera, plucker_rays, relative_poses

# ----------------------------------------------------------------------------------------------
# Small pure functions
# ----------------------------------------------------------------------------------------------


def high_noise_sigmas(n: int, generator: torch.Generator, mean: float = 0.95, std: float = 0.1, low: float = 0.6,
                      high: float = 1.0) -> torch.Tensor:
    """Noise levels from a normal ``N(mean, std)`` truncated to ``[low, high]`` (AC3D trains its camera branch on
    ``mean 0.95, std 0.1`` over ``[0.6, 1]``: camera motion is settled in the high-noise steps), by the inverse CDF
    of uniform draws; returned in ``[low, min(high, 1 - 1e-6)]`` so that ``sigma = 1`` (no signal at all) is avoided."""
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    a, b = normal.cdf(torch.tensor(low, dtype=torch.float64)), normal.cdf(torch.tensor(high, dtype=torch.float64))
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    sigma = normal.icdf((a + (b - a) * u).clamp(1e-12, 1 - 1e-12))
    return sigma.clamp(low, min(high, 1 - 1e-6)).float()


def clip_plucker(metadata: Optional[dict], num_frames: int, height: int, width: int) -> torch.Tensor:
    """Plücker rays ``[6, F, H, W]`` of a training clip from its (dataset-adapted) metadata: ``camera.intrinsics``
    (pixels at the sample's size) and ``camera.c2w``, made relative to frame 0. A clip without poses gets all-zero
    rays (what VideoX-Fun's trainer gives such clips: "camera unknown")."""
    camera = (metadata or {}).get("camera")
    if not isinstance(camera, dict) or "c2w" not in camera or "intrinsics" not in camera:
        return torch.zeros(6, num_frames, height, width)
    c2w = torch.tensor(camera["c2w"], dtype=torch.float64)
    intrinsics = torch.tensor(camera["intrinsics"], dtype=torch.float64)
    if intrinsics.ndim == 1:
        intrinsics = intrinsics.expand(len(c2w), 4)
    if len(c2w) != num_frames or intrinsics.shape != (num_frames, 4):
        raise ValueError(f"clip camera metadata has {len(c2w)} poses and {tuple(intrinsics.shape)} intrinsics for "
                         f"{num_frames} frames")
    return plucker_rays(intrinsics.float(), relative_poses(c2w).float(), height, width)


def static_plucker(metadata: Optional[dict], num_frames: int, height: int, width: int) -> torch.Tensor:
    """The static-camera null's rays ``[6, F, H, W]``: identity poses with the clip's frame-0 intrinsics (a clip
    without intrinsics: a 53-degree camera centred on the image, the shapes world's)."""
    camera = (metadata or {}).get("camera") or {}
    k = torch.tensor(camera.get("intrinsics", [width, width, width / 2, height / 2]), dtype=torch.float32)
    k = k[0] if k.ndim == 2 else k
    return plucker_rays(k.expand(num_frames, 4), torch.eye(4).repeat(num_frames, 1, 1), height, width)


def high_noise_window(scheduler, num_steps: int, sigma_min: float) -> list[float]:
    """The camera window ``[0, stop]`` (fractions of the schedule) of the steps whose noise level is at least
    ``sigma_min`` under ``scheduler`` at ``num_steps`` steps: where an adapter trained on high noise only was
    trained (``camera.high_noise``); outside it the pipeline does not run the adapter."""
    scheduler.set_timesteps(num_steps)
    sigmas = scheduler.timesteps.float() / scheduler.config.num_train_timesteps
    return [0.0, float((sigmas >= sigma_min).sum().item()) / num_steps]


def frames_to_drop(num_frames: int, generator: torch.Generator, low: float = 0.7, high: float = 1.0) -> list[int]:
    """Sparse camera control (CMG's ``camera_dropout``): a random ``low``-``high`` share of the middle frames
    ``1 .. F-2`` whose poses are dropped (first and last always kept), sorted."""
    middle = num_frames - 2
    if middle <= 0:
        return []
    share = low + (high - low) * torch.rand((), generator=generator).item()
    count = min(middle, max(1, round(share * middle)))
    order = torch.randperm(middle, generator=generator)[:count] + 1
    return sorted(order.tolist())


def freeze_to_first_frame(video: torch.Tensor) -> torch.Tensor:
    """``[3, F, H, W]`` -> every frame equal to frame 0 (the static null's video: nothing moves)."""
    return video[:, :1].expand_as(video).clone()


@torch.no_grad()
def frozen_clip_latents(vae, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The static null's latents from a cached clip's normalised latents ``[B, z, F', h, w]``: frame 0 decoded
    from latent frame 0 alone (the causal VAE encodes frame 0 alone), repeated ``num_frames`` times and encoded
    again: the latents of the clip frozen to (the VAE's round trip of) its first frame."""
    dtype = next(vae.parameters()).dtype
    first = vae.decode(vae.denormalize_latents(latents[:, :, :1].to(dtype))).sample.clamp(-1, 1)
    video = first[:, :, :1].expand(-1, -1, num_frames, -1, -1)
    return vae.normalize_latents(vae.encode(video, streaming=False).latent_dist.mode()).to(latents.dtype)


# ----------------------------------------------------------------------------------------------
# The trained module and the task
# ----------------------------------------------------------------------------------------------


def check_frozen_base(cfg: dict, parts: dict, task: str) -> None:
    """The rules of an adapter task (``camera``, ``trajectory``) on a frozen base: ``model.pretrained`` set, the
    adapter trained alone, and a base DiT in the text-to-video or Wan's I2V layout that ``train.i2v`` names."""
    if not cfg["model"]["pretrained"]:
        raise ValueError(f"task {task} trains an adapter on a frozen base: set model.pretrained to its pipeline")
    t = cfg["train"]
    if t["train_text_encoder"] or cfg["lora"]["rank"] or cfg["lora"]["init"]:
        raise ValueError(f"task {task} trains the adapter alone: train.train_text_encoder and lora must be off")
    dit, vae = parts["transformer"].config, parts["vae"]
    i2v_layout = dit.out_channels + vae.temporal_compression + vae.config.z_dim
    if dit.in_channels not in (dit.out_channels, i2v_layout) or bool(t["i2v"]) != (dit.in_channels == i2v_layout):
        raise ValueError(f"the base DiT takes {dit.in_channels} input channels: task {task} needs a text-to-video "
                         f"base ({dit.out_channels}, train.i2v false) or one in Wan's I2V layout ({i2v_layout}, "
                         "train.i2v true; train.image_dropout for text-only samples)")


class CameraAdapterModel(torch.nn.Module):
    """A frozen ``VideoDiT`` with a trainable ``CameraControlNet``; one forward (the one DDP/FSDP see) runs both."""

    def __init__(self, transformer, adapter):
        super().__init__()
        self.transformer = transformer.requires_grad_(False)
        self.adapter = adapter

    def forward(self, hidden_states, timestep, encoder_hidden_states, camera, **kwargs):
        """The DiT's prediction (``VideoDiTOutput``) with the adapter's residuals after its first blocks."""
        residuals = self.adapter.block_residuals(hidden_states, timestep, camera, self.transformer.config.num_layers)
        return self.transformer(hidden_states, timestep, encoder_hidden_states, block_residuals=residuals, **kwargs)

    def enable_gradient_checkpointing(self) -> None:
        """Checkpoint the adapter's and the DiT's blocks (the gradient flows through the frozen DiT)."""
        self.adapter.enable_gradient_checkpointing()
        self.transformer.enable_gradient_checkpointing()


class CameraTask:
    """What the ``camera`` task adds to the DiT task (config section ``camera``; see ``config.DEFAULTS``)."""

    vae = None  # the frozen base's VAE (set by __init__; only a latent-cache batch needs it)

    def __init__(self, cfg: dict, parts: dict):
        from videogen.models.adapters import CameraControlNet

        self.cfg, c = cfg, cfg["camera"]
        for key in ("static_prob", "sparse_prob"):
            if not 0.0 <= c[key] < 1.0:
                raise ValueError(f"camera.{key} must be in [0, 1); got {c[key]}")
        low, high = c["sparse_fraction"]
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"camera.sparse_fraction must be [low, high] with 0 < low <= high <= 1; got {[low, high]}")
        check_frozen_base(cfg, parts, "camera")
        transformer = parts["transformer"]
        self.vae = parts["vae"]
        if c["init"]:
            adapter = CameraControlNet.from_pretrained(c["init"])
        else:
            torch.manual_seed(cfg["seed"])
            adapter = CameraControlNet.for_transformer(transformer, vae=self.vae, **(c["adapter"] or {}))
        self.model = CameraAdapterModel(transformer, adapter)

    def adapter(self, accelerator) -> "torch.nn.Module":
        """The (unwrapped) adapter being trained."""
        return accelerator.unwrap_model(self.model).adapter

    def prepare(self, batch: dict, generator: torch.Generator, global_batch: int,
                local) -> tuple[torch.Tensor, torch.Tensor]:
        """``(video [B, 3, F, H, W], packed camera [B, 24, F', H, W])`` for a batch of videos with metadata: the
        static null (identity camera, clip frozen to frame 0) with probability ``camera.static_prob``, else the
        clip's own rays with the middle poses dropped (zero rays) with probability ``camera.sparse_prob``. A batch
        from a latent cache (``videogen cache`` keeps each clip's metadata) gives its latents instead of the video,
        the static null's from ``frozen_clip_latents``; its pixel size comes from the latents' shape. Draws are
        made for the ``global_batch`` and sliced with ``local`` (the trainer's per-process slice)."""
        c = self.cfg["camera"]
        video, (b, f, h, w) = batch_clips(batch, self.vae, "camera")
        n = global_batch
        static = local(torch.rand(n, generator=generator) < c["static_prob"])
        sparse = local(torch.rand(n, generator=generator) < c["sparse_prob"])
        drops = local_list([frames_to_drop(f, generator, *c["sparse_fraction"]) for _ in range(n)], local)
        videos, cameras = [], []
        metadata = batch.get("metadata") or [None] * b
        for i in range(b):
            if static[i]:
                frozen = (freeze_to_first_frame(video[i]) if "video" in batch
                          else frozen_clip_latents(self.vae, video[i:i + 1], f)[0])
                videos.append(frozen)
                rays = static_plucker(metadata[i], f, h, w)
            else:
                videos.append(video[i])
                rays = clip_plucker(metadata[i], f, h, w)
                if sparse[i] and drops[i]:
                    rays[:, drops[i]] = 0
            cameras.append(pack_camera(rays))
        return torch.stack(videos), torch.stack(cameras)

    def model_inputs(self, camera: torch.Tensor, device) -> dict:
        """The trained module's extra inputs for ``prepare``'s camera: ``{"camera": ...}`` on ``device``."""
        return {"camera": camera.to(device)}

    def sigmas(self, n: int, generator: torch.Generator) -> Optional[torch.Tensor]:
        """AC3D's high-noise timesteps when ``camera.high_noise`` is set, else None (the DiT task's sampling)."""
        c = self.cfg["camera"]
        if not c["high_noise"]:
            return None
        return high_noise_sigmas(n, generator, c["high_noise_mean"], c["high_noise_std"], c["high_noise_min"])

    def pipeline(self, trainer):
        """A ``CameraControlPipeline`` over the base components and the adapter being trained."""
        from pipelines import CameraControlPipeline

        model = trainer.accelerator.unwrap_model(self.model)
        parts = {k: v for k, v in trainer.parts.items() if k in ("image_encoder", "image_processor")}
        return CameraControlPipeline(tokenizer=trainer.tokenizer, text_encoder=trainer.text_encoder,
                                     transformer=model.transformer, vae=trainer.vae,
                                     scheduler=trainer.parts["scheduler"], camera_adapter=model.adapter, **parts)

    def validate(self, trainer, out_dir: Path) -> list[Path]:
        """One video per validation prompt x ``camera.validation_cameras`` x seed, with the current weights."""
        from videogen.io import save_video

        v, d, c = self.cfg["validation"], self.cfg["data"], self.cfg["camera"]
        pipe = self.pipeline(trainer)
        pipe.set_progress_bar_config(disable=True)
        written = []
        for i, prompt in enumerate(v["prompts"]):
            for camera in c["validation_cameras"]:
                for seed in v["seeds"]:
                    frames = pipe(prompt, camera=camera, height=d["height"], width=d["width"],
                                  num_frames=d["num_frames"], num_inference_steps=v["num_inference_steps"],
                                  guidance_scale=v["guidance_scale"], max_sequence_length=d["max_sequence_length"],
                                  generator=torch.Generator().manual_seed(seed)).frames[0]
                    path = out_dir / f"prompt{i:02d}-{camera}-seed{seed}.mp4"
                    written.append(Path(save_video(frames, path, fps=v["fps"])))
        return written

    def save_final(self, trainer, final: Path) -> Path:
        """The adapter alone (``camera_adapter/``) with a ``base.json`` pointing at ``model.pretrained``
        (``pipelines.adapter_dir``), and the base's generation settings updated to what it was trained at; after
        high-noise training, the camera window of the steps it was trained on (``high_noise_window`` at the base's
        step count)."""
        self.pipeline(trainer).save_adapter(final, base=Path(self.cfg["model"]["pretrained"]))
        base = Path(self.cfg["model"]["pretrained"]) / "generation_config.json"
        settings = json.loads(base.read_text()) if base.exists() else {}
        d, c = self.cfg["data"], self.cfg["camera"]
        settings.update(height=d["height"], width=d["width"], num_frames=d["num_frames"],
                        max_sequence_length=d["max_sequence_length"])
        if c["high_noise"]:
            settings["camera_window"] = high_noise_window(trainer.parts["scheduler"], settings.get("steps", 50),
                                                          c["high_noise_min"])
        (final / "generation_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        return final


def batch_clips(batch: dict, vae, task: str) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """An adapter task's batch: ``(its videos [B, 3, F, H, W], or a latent cache's latents [B, z, F', h, w]; (B, F,
    H, W) in pixels, for latents from the VAE's compression)``; a batch with neither is a ``ValueError``."""
    if "video" in batch:
        b, _, f, h, w = batch["video"].shape
        return batch["video"], (b, f, h, w)
    if "latents" in batch:
        b, _, lf, lh, lw = batch["latents"].shape
        tc, sc = vae.temporal_compression, vae.spatial_compression
        return batch["latents"], (b, 1 + tc * (lf - 1), lh * sc, lw * sc)
    raise ValueError(f"task {task} needs a batch of videos or of cached latents, with their clips' metadata")


def local_list(values: list, local) -> list:
    """``local`` (a per-process slice of a global tensor) applied to a Python list of the same length."""
    index = local(torch.arange(len(values)))
    return [values[i] for i in index.tolist()]

