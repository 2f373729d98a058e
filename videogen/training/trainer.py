"""The training loop (accelerate): DiT flow matching (full or LoRA) and VAE reconstruction, with EMA, atomic
checkpoints, exact resume, signal-safe stops, validation videos, tensorboard and a progress bar."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
from pathlib import Path
from typing import Optional

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from videogen.conditioning.text import encode_prompts
from videogen.training.components import build_components
from videogen.training.losses import (
    clean_first_frame, flow_interpolate, flow_matching_loss, latent_color_anchor, sample_sigmas, vae_loss,
)

CHECKPOINT_PREFIX = "step-"


class TrainState:
    """Counters that make a resume exact: optimizer steps done, epoch, and batches consumed in that epoch."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]


class VAEReconstruction(torch.nn.Module):
    """Wraps the VAE so one forward (the one DDP/FSDP see) returns the reconstruction and the posterior."""

    def __init__(self, vae, sample_posterior: bool = True, train_encoder: bool = True):
        super().__init__()
        self.vae = vae
        self.sample_posterior = sample_posterior
        self.train_encoder = train_encoder

    def forward(self, video: torch.Tensor, generator: torch.Generator):
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_encoder):  # decoder-only: no encoder graph
            posterior = self.vae.encode(video, streaming=False).latent_dist
        z = posterior.sample(generator=generator) if self.sample_posterior else posterior.mode()
        return self.vae.decode(z, streaming=False, clamp=False).sample, posterior


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.exists():
        return []
    return sorted((p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir()),
                  key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, else the resident-set high-water mark."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    """One training run, configured by a resolved config dict (see ``videogen.training.config``)."""

    def __init__(self, cfg: dict):
        from videogen.data.buckets import BucketBatchSampler, collate_videos
        from videogen.data.video_dataset import VideoFolderDataset

        self.cfg = cfg
        t, d = cfg["train"], cfg["data"]
        self.output_dir = Path(cfg["output_dir"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        fsdp = None
        if t["fsdp"]:
            from accelerate import FullyShardedDataParallelPlugin

            fsdp = FullyShardedDataParallelPlugin()
        self.accelerator = Accelerator(
            gradient_accumulation_steps=t["gradient_accumulation_steps"],
            mixed_precision=t["mixed_precision"],
            split_batches=True,  # data.batch_size is the global batch, identical for any process count
            log_with="tensorboard" if cfg["log"]["tensorboard"] else None,
            project_dir=str(self.output_dir),
            fsdp_plugin=fsdp,
        )
        set_seed(cfg["seed"])
        if d["cache"]:
            from videogen.data.cache import CachedDataset

            if cfg["task"] not in ("dit", "camera", "trajectory") or not cfg["model"]["pretrained"]:
                raise ValueError("data.cache needs task=dit, camera or trajectory and model.pretrained (the pipeline the "
                                 "cache was built with); with train.train_text_encoder the cached captions are "
                                 "encoded every step")
            self.dataset = CachedDataset(d["cache"])
        elif d["root"] is None:
            raise ValueError("data.root is not set: point it at a video folder or a `videogen synth` output")
        else:
            self.dataset = VideoFolderDataset(d["root"], num_frames=d["num_frames"], size=(d["height"], d["width"]),
                                              fps=d["fps"], crop=d["crop"], seed=cfg["seed"],
                                              warn=self.accelerator.is_main_process)
            self.dataset.scan()
        parts = build_components(cfg, captions=self.dataset.captions())
        self.parts = parts
        self.tokenizer, self.text_encoder, self.vae = parts["tokenizer"], parts["text_encoder"], parts["vae"]
        self.lora_config = None
        if t["i2v"] and cfg["task"] not in ("dit", "camera", "trajectory"):
            raise ValueError("train.i2v needs task: dit (or camera / trajectory, on a base in the I2V layout)")
        if not 0.0 <= t["image_dropout"] <= 1.0 or (t["image_dropout"] and not t["i2v"]):
            raise ValueError(f"train.image_dropout must be in [0, 1] and needs train.i2v; got {t['image_dropout']}")
        # An adapter task (a CameraControlNet or a TrajectoryAdapter on the frozen base; videogen.training.camera,
        # videogen.training.trajectory): what it adds to the DiT task goes through this one object.
        self.adapter_task = None
        if cfg["task"] in ("camera", "trajectory"):
            if cfg["task"] == "camera":
                from videogen.training.camera import CameraTask as task_class
            else:
                from videogen.training.trajectory import TrajectoryTask as task_class

            self.adapter_task = task_class(cfg, parts)
            self.model = self.adapter_task.model
            self.vae.requires_grad_(False).eval()
            self.text_encoder.requires_grad_(False).eval()
            trained = [self.model]
        elif cfg["task"] == "dit":
            self.model = parts["transformer"]
            if t["i2v"]:
                from videogen.training.components import widen_input_channels

                widen_input_channels(self.model, 2 * self.vae.config.z_dim + self.vae.temporal_compression)
            self.vae.requires_grad_(False).eval()
            self.text_encoder.requires_grad_(bool(t["train_text_encoder"]))
            self.text_encoder.train(bool(t["train_text_encoder"]))  # frozen: eval mode, no dropout
            lc = cfg["lora"]
            if lc["init"]:
                from videogen.training.lora import add_lora_from_file

                self.lora_config = add_lora_from_file(self.model, lc["init"], lc["dropout"], lc["train_factors"])
            elif lc["rank"] > 0:
                from videogen.training.lora import add_lora

                if lc["train_factors"] != "both":
                    raise ValueError("lora.train_factors 'A' needs lora.init (the basis B comes from that file)")
                self.lora_config = add_lora(self.model, lc["rank"], lc["alpha"], lc["target_modules"], lc["dropout"])
            trained = [self.model] + ([self.text_encoder] if t["train_text_encoder"] else [])
        else:
            if t["vae_posterior"] not in ("sample", "mode"):
                raise ValueError(f"train.vae_posterior must be 'sample' or 'mode'; got {t['vae_posterior']!r}")
            if t["vae_trainable"] not in ("all", "decoder"):
                raise ValueError(f"train.vae_trainable must be 'all' or 'decoder'; got {t['vae_trainable']!r}")
            if t["vae_trainable"] == "decoder":  # the latents stay exactly those of the given VAE
                self.vae.encoder.requires_grad_(False)
                self.vae.quant_conv.requires_grad_(False)
            self.model = VAEReconstruction(self.vae, sample_posterior=t["vae_posterior"] == "sample",
                                           train_encoder=t["vae_trainable"] == "all")
            trained = [self.model]
        if t["gradient_checkpointing"]:
            (self.model.vae if cfg["task"] == "vae" else self.model).enable_gradient_checkpointing()
        # Trainable weights in float32 whatever the checkpoint stored (an fp16 text encoder under AdamW turns the
        # loss NaN on the first update), as diffusers' training scripts do; frozen parts keep their dtype.
        from diffusers.training_utils import cast_training_params

        cast_training_params(trained, dtype=torch.float32)
        params = [p for m in trained for p in m.parameters() if p.requires_grad]
        self._trained_params = params
        self.num_trainable = sum(p.numel() for p in params)
        self.optimizer = torch.optim.AdamW(params, lr=t["learning_rate"], betas=tuple(t["adam_betas"]),
                                           weight_decay=t["weight_decay"])
        from diffusers.optimization import get_scheduler

        self.lr_scheduler = get_scheduler(t["lr_scheduler"], self.optimizer, num_warmup_steps=t["lr_warmup_steps"],
                                          num_training_steps=t["max_steps"])
        self.sampler = BucketBatchSampler(self.dataset, d["batch_size"], shuffle=True, seed=cfg["seed"], drop_last=True)
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=collate_videos,
                            num_workers=d["num_workers"])
        prepared = self.accelerator.prepare(self.model, self.optimizer, loader, self.lr_scheduler,
                                            *([self.text_encoder] if t["train_text_encoder"] else []))
        self.model, self.optimizer, self.loader, self.lr_scheduler = prepared[:4]
        if t["train_text_encoder"]:
            self.text_encoder = prepared[4]
        device = self.accelerator.device
        for frozen in (self.vae, self.text_encoder):
            if frozen is not None:
                frozen.to(device)
        self.ema = None
        if t["ema_decay"]:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(params, decay=t["ema_decay"])
            self.ema.to(device)
            self.accelerator.register_for_checkpointing(self.ema)
        self.state = TrainState()
        self.accelerator.register_for_checkpointing(self.state)
        self._stop_signal = None

    # ------------------------------------------------------------------------------------------

    def describe(self) -> str:
        """Resolved config, dataset summary and parameter counts (what ``--dry-run`` prints)."""
        lines = ["# resolved config", yaml.safe_dump(self.cfg, sort_keys=False).rstrip(), "", "# dataset"]
        summary = self.dataset.summary() if hasattr(self.dataset, "summary") else {"cached_samples": len(self.dataset)}
        lines.append(json.dumps(summary, indent=2, default=str))
        lines.append("\n# parameters")
        for name in ("transformer", "vae", "text_encoder"):
            module = self.parts.get(name)
            if module is not None:
                total = sum(p.numel() for p in module.parameters())
                lines.append(f"{name:13s} {total:>12,d} total")
        lines.append(f"{'trainable':13s} {self.num_trainable:>12,d}")
        return "\n".join(lines)

    def _batch_randomness(self) -> torch.Generator:
        """A generator for this micro-batch's noise, timesteps and caption dropout, seeded by the run seed and
        the number of batches consumed: a resumed run draws exactly what an uninterrupted one would. The global
        RNG (dropout) is reseeded from it too, so nothing else that consumed random numbers in between (a new
        DataLoader iteration does) can make the two runs differ."""
        micro = self.state.step * self.cfg["train"]["gradient_accumulation_steps"] + self._accum_index
        seed = self.cfg["seed"] * 1_000_003 + micro
        torch.manual_seed(seed + 7919 * (1 + self.accelerator.process_index))
        return torch.Generator().manual_seed(seed)

    def _local(self, tensor: torch.Tensor, local: int) -> torch.Tensor:
        start = self.accelerator.process_index * local
        return tensor[start: start + local]

    def dit_loss(self, batch: dict) -> torch.Tensor:
        """Flow-matching loss on a batch of videos (VAE and text encoding inside, frozen unless configured)."""
        t, d = self.cfg["train"], self.cfg["data"]
        device = self.accelerator.device
        cached = "latents" in batch
        local = (batch["latents"] if cached else batch["video"]).shape[0]
        global_batch = local * self.accelerator.num_processes
        gen = self._batch_randomness()
        if self.adapter_task is not None:  # nulls and dropout, decided before the videos are encoded
            task_gen = torch.Generator().manual_seed(gen.initial_seed() + 1)
            video, adapter_input = self.adapter_task.prepare(batch, task_gen, global_batch,
                                                             lambda x: self._local(x, local))
            if video is not None:  # the task's videos, or a cached batch's latents (None: used as they are)
                batch = {**batch, ("latents" if cached else "video"): video}
        if cached:  # `videogen cache` output: normalised latents and text states, computed once
            latents = batch["latents"].to(device).float()
        else:
            with torch.no_grad():
                video = batch["video"].to(device)
                latents = self.vae.normalize_latents(self.vae.encode(video, streaming=False).latent_dist.mode()).float()
        drop = self._local(torch.rand(global_batch, generator=gen) < t["caption_dropout"], local)
        sigma = self._local(sample_sigmas(global_batch, gen, t["logit_mean"], t["logit_std"], t["flow_shift"]), local)
        high_noise = None if self.adapter_task is None else self.adapter_task.sigmas(global_batch, task_gen)
        if high_noise is not None:  # camera.high_noise (trajectory.high_noise): AC3D's timesteps instead
            sigma = self._local(high_noise, local)
        noise = self._local(torch.randn((global_batch, *latents.shape[1:]), generator=gen), local).to(device)
        if cached and not t["train_text_encoder"]:
            text = batch["prompt_embeds"].to(device)
            if drop.any():
                empty = self._empty_prompt_embeds(text.shape[1])
                text = torch.where(drop.to(device)[:, None, None], empty.to(text.dtype), text)
        else:
            captions = ["" if dropped else c for dropped, c in zip(drop.tolist(), batch["caption"])]
            with torch.set_grad_enabled(bool(t["train_text_encoder"])):
                text = encode_prompts(self.tokenizer, self.text_encoder, captions, d["max_sequence_length"], device)
        x_t, target = flow_interpolate(latents, noise, sigma.to(device))
        weights = None
        if t["clean_first_frame_prob"]:
            keep = self._local(torch.rand(global_batch, generator=gen) < t["clean_first_frame_prob"], local)
            x_t, weights = clean_first_frame(x_t, latents, keep)
        if t["i2v"]:
            condition = self.image_condition(batch, d["num_frames"]).to(device)
            if t["image_dropout"]:  # text-to-video samples: the all-zero condition (no mask, no image latents)
                dropped = self._local(torch.rand(global_batch, generator=gen) < t["image_dropout"], local).to(device)
                condition = torch.where(dropped[:, None, None, None, None], torch.zeros_like(condition), condition)
            x_t = torch.cat([x_t, condition], dim=1)
        extra = {} if self.adapter_task is None else self.adapter_task.model_inputs(adapter_input, device)
        pred = self.model(x_t, (sigma * 1000).to(device), text, **extra).sample
        return flow_matching_loss(pred, target, weights)

    def image_condition(self, batch: dict, num_frames: int) -> torch.Tensor:
        """The I2V channels for a batch: the first-frame mask + the latents of [first frame, zeros...], from the
        cache (``image_latents``) or encoded here from the videos (as ``videogen.conditioning.image``)."""
        from videogen.conditioning.image import frame_mask, image_condition

        if "image_latents" in batch:
            cond = batch["image_latents"].float()
            b, _, f, h, w = cond.shape
            mask = frame_mask(1 + (f - 1) * self.vae.temporal_compression, self.vae.temporal_compression)
            return torch.cat([mask[None, :, :, None, None].expand(b, -1, -1, h, w), cond], dim=1)
        if "video" not in batch:
            raise ValueError("train.i2v on a cache needs one built with `videogen cache --image-latents`")
        with torch.no_grad():
            return image_condition(self.vae, batch["video"][:, :, 0].to(self.accelerator.device), num_frames)

    def _empty_prompt_embeds(self, length: int) -> torch.Tensor:
        """Text states of the empty caption (what caption dropout trains), encoded once."""
        if getattr(self, "_empty", None) is None or self._empty.shape[1] != length:
            self._empty = encode_prompts(self.tokenizer, self.text_encoder, [""], length, self.accelerator.device)
        return self._empty

    def vae_loss(self, batch: dict) -> torch.Tensor:
        """Reconstruction + KL loss on a batch of videos."""
        video = batch["video"].to(self.accelerator.device)
        gen = self._batch_randomness()
        gen = torch.Generator().manual_seed(gen.initial_seed() + self.accelerator.process_index)
        recon, posterior = self.model(video, gen)
        t = self.cfg["train"]
        loss, _ = vae_loss(recon, video, posterior, t["kl_weight"], t["mse_weight"], t["foreground_weight"])
        if t["latent_color_weight"]:
            loss = loss + t["latent_color_weight"] * latent_color_anchor(
                posterior.mode(), video, foreground_weight=t["foreground_weight"],
                temporal=self.vae.temporal_compression, spatial=self.vae.spatial_compression)
        return loss

    # ------------------------------------------------------------------------------------------

    def trained_parameters(self) -> list:
        """The parameters the optimizer and the EMA hold, in their order: the model's, then the text encoder's when
        it trains too (the EMA averages both, and both are swapped in for validation and the final save)."""
        return self._trained_params

    def save_checkpoint(self) -> Path:
        """Write the full training state to ``checkpoints/step-N`` atomically (temp dir, then rename), keep the
        last ``checkpoint.keep_last``."""
        root = self.output_dir / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{self.state.step:08d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{self.state.step:08d}"
        acc = self.accelerator
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "train_state.json").write_text(json.dumps(self.state.state_dict()))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in list_checkpoints(self.output_dir)[: -self.cfg["checkpoint"]["keep_last"]]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, resume: str) -> Optional[Path]:
        """Restore model, optimizer, lr schedule, EMA, RNG states and counters from ``latest`` or a path."""
        if resume == "latest":
            found = list_checkpoints(self.output_dir)
            if not found:
                self.accelerator.print(f"--resume latest: no checkpoint in {self.output_dir / 'checkpoints'}; starting fresh")
                return None
            path = found[-1]
        else:
            path = Path(resume)
            if not path.exists():
                raise FileNotFoundError(f"checkpoint to resume from does not exist: {path}")
        self.accelerator.load_state(str(path))
        return path

    def validate(self) -> list[Path]:
        """Generate the validation prompts (fixed seeds) with the current (EMA) weights; save mp4s."""
        from pipelines import TextToVideoPipeline
        from videogen.io import save_video

        v, d = self.cfg["validation"], self.cfg["data"]
        if self.cfg["task"] == "vae" or not v["prompts"] or (self.cfg["train"]["i2v"] and self.adapter_task is None):
            return []  # image-to-video is measured by `videogen eval --task i2v`
        model = self.accelerator.unwrap_model(self.model)
        if self.ema is not None:
            self.ema.store(self.trained_parameters())
            self.ema.copy_to(self.trained_parameters())
        pipe = None if self.adapter_task is not None else TextToVideoPipeline(
            tokenizer=self.tokenizer, text_encoder=self.accelerator.unwrap_model(self.text_encoder),
            transformer=model, vae=self.vae, scheduler=self.parts["scheduler"])
        if pipe is not None:
            pipe.set_progress_bar_config(disable=True)
        out_dir = self.output_dir / "validation" / f"{CHECKPOINT_PREFIX}{self.state.step:08d}"
        written = []
        try:
            model.eval()
            if self.adapter_task is not None:  # one video per prompt x camera (trajectory) x seed
                written = self.adapter_task.validate(self, out_dir)
            for i, prompt in enumerate(v["prompts"] if pipe is not None else []):
                for seed in v["seeds"]:
                    frames = pipe(prompt, height=d["height"], width=d["width"], num_frames=d["num_frames"],
                                  num_inference_steps=v["num_inference_steps"], guidance_scale=v["guidance_scale"],
                                  max_sequence_length=d["max_sequence_length"],
                                  generator=torch.Generator().manual_seed(seed)).frames[0]
                    written.append(Path(save_video(frames, out_dir / f"prompt{i:02d}-seed{seed}.mp4", fps=v["fps"])))
        finally:
            model.train()
            if self.ema is not None:
                self.ema.restore(self.trained_parameters())
        return written

    def save_final(self) -> Path:
        """Write the trained result: the pipeline (DiT task; EMA weights if any), the LoRA adapter alone, or the VAE."""
        final = self.output_dir / "final"
        model = self.accelerator.unwrap_model(self.model)
        if self.ema is not None:
            self.ema.copy_to(self.trained_parameters())
        if self.cfg["task"] == "vae":
            from videogen.training.latent_stats import latent_statistics, store_latent_statistics

            # The DiT stage trains on (z - mean) / std: measure them on the data this VAE was trained on (a
            # decoder-only run keeps the encoder, so the statistics in its config stay the ones in use).
            model.vae.eval()
            if self.cfg["train"]["vae_trainable"] == "all":
                store_latent_statistics(model.vae, *latent_statistics(model.vae, self.dataset,
                                                                      self.cfg["train"]["latent_stats_samples"]))
            model.vae.save_pretrained(final / "vae")
        elif self.adapter_task is not None:
            self.adapter_task.save_final(self, final)
        elif self.lora_config is not None:
            from videogen.training.lora import save_lora

            save_lora(model, self.lora_config, final / "lora")
        else:
            from pipelines import ImageToVideoPipeline, TextToVideoPipeline

            parts = dict(tokenizer=self.tokenizer, text_encoder=self.accelerator.unwrap_model(self.text_encoder),
                         transformer=model, vae=self.vae, scheduler=self.parts["scheduler"])
            if self.cfg["train"]["i2v"]:  # trained with the image dropped: it also generates from text alone
                pipe = ImageToVideoPipeline(**parts, image_optional=self.cfg["train"]["image_dropout"] > 0)
            else:
                pipe = TextToVideoPipeline(**parts)
            pipe.save_pretrained(final)
            # What it was trained at, for `videogen generate` / `eval` / `export`: the text length matters most (a
            # model trained on 40 padded tokens sees its prompt diluted among 512 at Wan's default).
            d = self.cfg["data"]
            (final / "generation_config.json").write_text(json.dumps(dict(
                height=d["height"], width=d["width"], num_frames=d["num_frames"],
                max_sequence_length=d["max_sequence_length"]), indent=2) + "\n")
        return final

    # ------------------------------------------------------------------------------------------

    def _epoch_loader(self):
        """The data loader for the current epoch, positioned after the batches already consumed in it.

        accelerate's prepared loader re-applies its own pass counter to the sampler when iterated, so the epoch is
        set on the loader too; a skipping loader does not forward it, so the sampler gets it directly as well."""
        epoch = self.state.epoch
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.loader.set_epoch(epoch)
        if not self.state.batch_in_epoch:
            return self.loader
        loader = self.accelerator.skip_first_batches(self.loader, self.state.batch_in_epoch)
        loader.set_epoch(epoch)
        return loader

    def _on_signal(self, signum, frame):
        self._stop_signal = signum

    def train(self, resume: Optional[str] = None) -> dict:
        """Run until ``train.max_steps`` (or a SIGINT/SIGTERM, which saves a checkpoint first); returns a summary."""
        cfg, acc = self.cfg, self.accelerator
        if resume:
            self.load_checkpoint(resume)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        if acc.is_main_process:  # the run's resolved config beside its log: what trained it, overrides included
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        if cfg["log"]["tensorboard"]:
            acc.init_trackers("train", config={"task": cfg["task"], "seed": cfg["seed"]})
        self.model.train()
        max_steps = cfg["train"]["max_steps"]
        bar = tqdm(total=max_steps, initial=self.state.step, disable=not acc.is_local_main_process, desc="train")
        log_path = self.output_dir / "log.jsonl"
        losses, self._accum_index = [], 0
        try:
            while self.state.step < max_steps and self._stop_signal is None:
                loader = self._epoch_loader()
                for batch in loader:
                    with acc.accumulate(self.model):
                        loss = self.vae_loss(batch) if cfg["task"] == "vae" else self.dit_loss(batch)
                        acc.backward(loss)
                        if acc.sync_gradients and cfg["train"]["max_grad_norm"]:
                            acc.clip_grad_norm_(self.model.parameters(), cfg["train"]["max_grad_norm"])
                        self.optimizer.step()
                        self.lr_scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    self.state.batch_in_epoch += 1
                    losses.append(acc.reduce(loss.detach(), reduction="mean").item())
                    self._accum_index += 1
                    if not acc.sync_gradients:
                        continue
                    self._accum_index = 0
                    self.state.step += 1
                    if self.ema is not None:
                        self.ema.step(self.trained_parameters())
                    record = {"step": self.state.step, "loss": sum(losses) / len(losses),
                              "lr": self.lr_scheduler.get_last_lr()[0], "peak_mem_mb": round(peak_memory_mb(), 1)}
                    losses = []
                    if acc.is_main_process:
                        with open(log_path, "a") as f:
                            f.write(json.dumps(record) + "\n")
                    if self.state.step % cfg["log"]["every"] == 0 or self.state.step == 1:
                        acc.log({"loss": record["loss"], "lr": record["lr"]}, step=self.state.step)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                    mem=f"{record['peak_mem_mb']:.0f}MB")
                    bar.update(1)
                    every = cfg["checkpoint"]["every"]
                    if every and self.state.step % every == 0:
                        self.save_checkpoint()
                    val_every = cfg["validation"]["every"]
                    if val_every and self.state.step % val_every == 0 and acc.is_main_process:
                        self.validate()
                    if self.state.step >= max_steps or self._stop_signal is not None:
                        break
                else:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
            if self._stop_signal is not None:
                path = self.save_checkpoint()
                acc.print(f"stopped by signal {self._stop_signal}: checkpoint saved to {path}")
            else:
                self.save_final()
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if cfg["log"]["tensorboard"]:
                acc.end_training()
        summary = self.dataset.summary() if hasattr(self.dataset, "summary") else {"total": len(self.dataset)}
        return {"step": self.state.step, "stopped_by_signal": self._stop_signal, "skipped": summary}
