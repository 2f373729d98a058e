"""The trajectory-adapter training task: a frozen base DiT, a trained TrajectoryAdapter, tracks from clip metadata.

The trainer (``videogen.training.trainer``) calls ``TrajectoryTask`` as it calls the camera task: building the
trained module, preparing a batch (each clip's objects' paths from its metadata, in caption order, become Tora's
flow video and then motion latents; some batches drop the tracks or keep only the first ones), the noise levels,
validation and the final save (the adapter alone, pointing at its base). Everything random comes from a generator
the trainer seeds per micro-batch, so a resumed run is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from videogen.training.camera import batch_clips, check_frozen_base, high_noise_sigmas, local_list

MEMO_BYTES = 2 << 30  # the motion latents the task remembers (2 GiB: 26000 clips' at 64x64, 17 frames, z 16)

# ----------------------------------------------------------------------------------------------
# Small pure functions
# ----------------------------------------------------------------------------------------------


def clip_tracks(metadata: Optional[dict], num_frames: int, height: int, width: int):
    """``(tracks [N, F, 2], visible [N, F])`` of a training clip: its objects' per-frame centroids
    (``objects[i].trajectory``, pixels of the sample after the dataset's resize and crop), in the objects' order,
    which is the order the caption names them in; a point outside the frame is not visible. None without objects."""
    objects = [o for o in (metadata or {}).get("objects") or () if o.get("trajectory") is not None]
    if not objects:
        return None
    tracks = torch.tensor([o["trajectory"] for o in objects], dtype=torch.float32)
    if tracks.ndim != 3 or tracks.shape[1:] != (num_frames, 2):
        raise ValueError(f"clip object trajectories have shape {tuple(tracks.shape)}; expected [N, {num_frames}, 2]")
    limit = torch.tensor([float(width), float(height)])
    visible = ((tracks >= 0) & (tracks <= limit)).all(-1)
    return tracks, visible


def keep_first(tracks, visible, count: int):
    """Only the first ``count`` tracks (the later objects get none)."""
    return tracks[:count], visible[:count]


# ----------------------------------------------------------------------------------------------
# The trained module and the task
# ----------------------------------------------------------------------------------------------


class TrajectoryAdapterModel(torch.nn.Module):
    """A frozen ``VideoDiT`` with a trainable ``TrajectoryAdapter``; one forward (the one DDP/FSDP see) runs both."""

    def __init__(self, transformer, adapter):
        super().__init__()
        self.transformer = transformer.requires_grad_(False)
        self.adapter = adapter

    def forward(self, hidden_states, timestep, encoder_hidden_states, motion, motion_scale, **kwargs):
        """The DiT's prediction with the adapter's fusers in its blocks; ``motion_scale [B]`` 0 switches a
        sample's trajectory off (no tracks)."""
        mods = self.adapter.block_modulations(motion, self.transformer.config.num_layers, scale=motion_scale)
        return self.transformer(hidden_states, timestep, encoder_hidden_states, block_modulations=mods, **kwargs)

    def enable_gradient_checkpointing(self) -> None:
        """Checkpoint the DiT's blocks (the gradient flows through the frozen DiT into the fusers)."""
        self.transformer.enable_gradient_checkpointing()


class TrajectoryTask:
    """What the ``trajectory`` task adds to the DiT task (config section ``trajectory``; see ``config.DEFAULTS``)."""

    def __init__(self, cfg: dict, parts: dict):
        from videogen.models.adapters import TrajectoryAdapter

        self.cfg, c = cfg, cfg["trajectory"]
        for key in ("drop_prob", "partial_prob"):
            if not 0.0 <= c[key] < 1.0:
                raise ValueError(f"trajectory.{key} must be in [0, 1); got {c[key]}")
        check_frozen_base(cfg, parts, "trajectory")
        transformer = parts["transformer"]
        self.vae = parts["vae"]
        if c["init"]:
            adapter = TrajectoryAdapter.from_pretrained(c["init"])
        else:
            torch.manual_seed(cfg["seed"])
            adapter = TrajectoryAdapter.for_transformer(transformer, **(c["adapter"] or {}))
        if adapter.config.latent_channels != self.vae.config.z_dim:
            raise ValueError(f"the trajectory adapter reads {adapter.config.latent_channels} latent channels but the "
                             f"VAE has {self.vae.config.z_dim}")
        self.model = TrajectoryAdapterModel(transformer, adapter)

    def adapter(self, accelerator) -> "torch.nn.Module":
        """The (unwrapped) adapter being trained."""
        return accelerator.unwrap_model(self.model).adapter

    def prepare(self, batch: dict, generator: torch.Generator, global_batch: int, local):
        """``(video [B, 3, F, H, W] or None, (motion latents [B, z, F', h, w], scale [B]))``: each clip's tracks
        (all its objects; only the first k of them with probability ``trajectory.partial_prob``; none, scale 0,
        with ``trajectory.drop_prob`` or for a clip without objects) as Tora's flow video through the frozen VAE
        (``motion_latents``).
        A batch from a latent cache (``videogen cache``, which keeps each clip's metadata) gives no video (None):
        its pixel size comes from the latents' shape. Draws are made for the ``global_batch`` and sliced with
        ``local``."""
        c = self.cfg["trajectory"]
        clips, (b, f, h, w) = batch_clips(batch, self.vae, "trajectory")
        video = clips if "video" in batch else None
        n = global_batch
        drop = local(torch.rand(n, generator=generator) < c["drop_prob"])
        partial = local(torch.rand(n, generator=generator) < c["partial_prob"])
        fraction = local_list(torch.rand(n, generator=generator).tolist(), local)
        metadata = batch.get("metadata") or [None] * b
        motion, scales = [], []
        for i in range(b):
            tracks = clip_tracks(metadata[i], f, h, w)
            if tracks is not None and partial[i] and tracks[0].shape[0] > 1:
                tracks = keep_first(*tracks, 1 + int(fraction[i] * (tracks[0].shape[0] - 1)))
            if tracks is None or drop[i]:
                tracks = (torch.zeros(1, f, 2), torch.zeros(1, f, dtype=torch.bool))  # an all-zero flow
                scales.append(0.0)
            else:
                scales.append(1.0)
            motion.append(self.motion_latents(*tracks, h, w))
        return video, (torch.stack(motion), torch.tensor(scales))

    def motion_latents(self, tracks: torch.Tensor, visible: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``[z, F', h, w]``: one sample's tracks as Tora's flow video through the frozen VAE, encoded alone (so the
        value never depends on the rest of the batch, and a resumed run is exact) and remembered by the tracks
        (a clip's tracks come back every epoch; encoding them was most of a step), up to ``MEMO_BYTES``."""
        from pipelines.trajectory_control import motion_latents

        key = (height, width, tracks.numpy().tobytes(), visible.numpy().tobytes())
        memo = self.__dict__.setdefault("_memo", {})
        if key in memo:
            return memo[key]
        with torch.no_grad():
            latents = motion_latents(self.vae, tracks, visible, height, width)[0].cpu()
        used = self.__dict__.get("_memo_bytes", 0)
        if used + latents.numel() * latents.element_size() <= MEMO_BYTES:
            memo[key] = latents
            self._memo_bytes = used + latents.numel() * latents.element_size()
        return latents

    def model_inputs(self, prepared, device) -> dict:
        """The trained module's extra inputs for ``prepare``'s motion latents and scales, on ``device``."""
        motion, scale = prepared
        return {"motion": motion.to(device), "motion_scale": scale.to(device)}

    def sigmas(self, n: int, generator: torch.Generator) -> Optional[torch.Tensor]:
        """AC3D-style high-noise timesteps when ``trajectory.high_noise`` is set, else None (the DiT task's)."""
        return high_noise_sigmas(n, generator) if self.cfg["trajectory"]["high_noise"] else None

    def pipeline(self, trainer):
        """A ``TrajectoryControlPipeline`` over the base components and the adapter being trained."""
        from pipelines import TrajectoryControlPipeline

        model = trainer.accelerator.unwrap_model(self.model)
        parts = {k: v for k, v in trainer.parts.items() if k in ("image_encoder", "image_processor")}
        return TrajectoryControlPipeline(
            tokenizer=trainer.tokenizer, text_encoder=trainer.text_encoder, transformer=model.transformer,
            vae=trainer.vae, scheduler=trainer.parts["scheduler"], trajectory_adapter=model.adapter,
            image_optional=bool(self.cfg["train"]["i2v"]), **parts)

    def validate(self, trainer, out_dir: Path) -> list[Path]:
        """One video per validation prompt x ``trajectory.validation_tracks`` x seed, with the current weights."""
        from videogen.io import save_video

        v, d, c = self.cfg["validation"], self.cfg["data"], self.cfg["trajectory"]
        pipe = self.pipeline(trainer)
        pipe.set_progress_bar_config(disable=True)
        written = []
        for i, prompt in enumerate(v["prompts"]):
            for k, tracks in enumerate(c["validation_tracks"]):
                for seed in v["seeds"]:
                    frames = pipe(prompt, trajectory=tracks, height=d["height"], width=d["width"],
                                  num_frames=d["num_frames"], num_inference_steps=v["num_inference_steps"],
                                  guidance_scale=v["guidance_scale"], max_sequence_length=d["max_sequence_length"],
                                  generator=torch.Generator().manual_seed(seed)).frames[0]
                    path = out_dir / f"prompt{i:02d}-tracks{k}-seed{seed}.mp4"
                    written.append(Path(save_video(frames, path, fps=v["fps"])))
        return written

    def save_final(self, trainer, final: Path) -> Path:
        """The adapter alone (``trajectory_adapter/``) with a ``base.json`` pointing at ``model.pretrained``, and the
        base's generation settings updated to the size it was trained at."""
        base = Path(self.cfg["model"]["pretrained"])
        self.pipeline(trainer).save_adapter(final, base=base)
        settings_file = base / "generation_config.json"
        settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
        d = self.cfg["data"]
        settings.update(height=d["height"], width=d["width"], num_frames=d["num_frames"],
                        max_sequence_length=d["max_sequence_length"])
        (final / "generation_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        return final
