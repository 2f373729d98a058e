"""Training configuration: one YAML file plus ``key.sub=value`` overrides, resolved into plain dicts."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

DEFAULTS: dict[str, Any] = {
    "task": "dit",  # dit | vae | camera | trajectory (an adapter on a frozen model.pretrained; videogen.training.camera,
    # videogen.training.trajectory)
    "seed": 0,
    "output_dir": "runs/default",
    "model": {
        "pretrained": None,  # a pipeline directory (ours or diffusers Wan2.1) to start from
        "transformer": None,  # VideoDiT kwargs when the DiT starts from scratch
        "vae": None,  # a VAE directory / Wan2.1_VAE.pth, or CausalVideoVAE kwargs
        "text_encoder": None,  # transformers T5 encoder config kwargs when it starts from scratch
        "tokenizer": {"vocab_size": 512},  # trained on the dataset captions when not pretrained
        "scheduler": {"name": "unipc", "flow_shift": 3.0},
    },
    "data": {
        "root": None,
        "num_frames": 17,
        "height": 64,
        "width": 64,
        "fps": None,
        "batch_size": 4,  # global batch (split over processes)
        "num_workers": 0,
        "crop": "center",
        "max_sequence_length": 64,
        "cache": None,  # a `videogen cache` folder: train on its latents + text states (needs model.pretrained)
    },
    "train": {
        "max_steps": 1000,
        "learning_rate": 1e-4,
        "lr_scheduler": "constant",  # any diffusers.optimization.get_scheduler name
        "lr_warmup_steps": 0,
        "weight_decay": 0.0,
        "adam_betas": [0.9, 0.999],
        "gradient_accumulation_steps": 1,
        "mixed_precision": "no",  # no | bf16 | fp16
        "gradient_checkpointing": False,
        "max_grad_norm": 1.0,
        "ema_decay": None,
        "caption_dropout": 0.1,
        "logit_mean": 0.0,
        "logit_std": 1.0,
        "flow_shift": 1.0,
        "train_text_encoder": False,
        # DiT task: the fraction of samples whose latent frame 0 is given clean (losses.clean_first_frame; that frame
        # is left out of the loss): makes the motion words decide the later frames, to teach them to the DiT.
        "clean_first_frame_prob": 0.0,
        # DiT task: image-to-video (Wan2.1-I2V layout: noisy latents + 4-channel first-frame mask + latents of
        # [first frame, zeros...]). A text-to-video transformer is widened to 2 z + 4 input channels, the new ones
        # zero-initialised, so training starts from exactly the T2V model. Saves an ImageToVideoPipeline.
        "i2v": False,
        # DiT task with i2v: the fraction of samples whose image condition is dropped (mask and image latents all
        # zero), so one model also generates from text alone (as Wan2.2-TI2V); saved with image_optional=True.
        # 1.0: every sample text-only (a LoRA for the text path of a text-and-image model).
        "image_dropout": 0.0,
        "kl_weight": 1e-6,
        # VAE task: decode a posterior "sample" (a true VAE) or its "mode" (a deterministic autoencoder with the KL
        # term as a weak regulariser). From scratch, the initial posterior noise (std 1) swamps the encoder's
        # signal (std ~0.2) and a sampling VAE can sit at mean-prediction for hundreds of steps; "mode" cannot.
        "vae_posterior": "sample",
        "mse_weight": 0.0,  # VAE task: reconstruction = L1 + mse_weight x MSE
        "foreground_weight": 0.0,  # VAE task: extra weight on pixels unlike their frame's median (losses.py)
        # VAE task: "all", or "decoder" (encoder + quant_conv frozen: the latents, their statistics and so any DiT
        # trained on them stay valid; e.g. teach a decoder longer clips than it was trained on)
        "vae_trainable": "all",
        # VAE task: weight of the latent colour anchor (losses.latent_color_anchor): latent channels 0-2 carry the
        # average RGB of each latent pixel. Breaks the red/green tie a small VAE from scratch falls into.
        "latent_color_weight": 0.0,
        "latent_stats_samples": 256,  # VAE task: samples used to measure the per-channel latent mean/std
        "fsdp": False,
    },
    "lora": {"rank": 0, "alpha": None, "dropout": 0.0,
             "target_modules": ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                                "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o"],
             # start from this LoRA file (its modules, rank and alpha; rank/target_modules above are then ignored)
             "init": None,
             # "both" factors train, or "A" only (B frozen: Set-and-Sequence's motion residual on an identity basis)
             "train_factors": "both"},
    # Task camera: the adapter (CameraControlNet.for_transformer kwargs, or init: an adapter directory to continue
    # from); the static-camera null (identity camera, clip frozen to frame 0), sparse pose dropout (that share of the
    # middle frames' rays zeroed), AC3D's high-noise timesteps (truncated normal), the cameras of validation videos.
    "camera": {"adapter": {"num_layers": 2}, "init": None, "static_prob": 0.05, "sparse_prob": 0.15,
               "sparse_fraction": [0.7, 1.0], "high_noise": False, "high_noise_mean": 0.95, "high_noise_std": 0.1,
               "high_noise_min": 0.6, "validation_cameras": ["pan-left", "zoom-in"]},
    # Task trajectory: the adapter (TrajectoryAdapter.for_transformer kwargs, or init: an adapter directory); each
    # clip's objects' metadata paths are its tracks, in caption order; with drop_prob no tracks (the adapter off, what
    # trajectory guidance's null is); with partial_prob only the first k tracks (fewer tracks than objects); the
    # tracks (inline "x,y x,y" strings or track files) of validation videos.
    "trajectory": {"adapter": {}, "init": None, "drop_prob": 0.05, "partial_prob": 0.1, "high_noise": False,
                   "validation_tracks": ["8,32 56,32"]},
    "checkpoint": {"every": 500, "keep_last": 3},
    "validation": {"every": 0, "prompts": [], "seeds": [0], "num_inference_steps": 20, "guidance_scale": 5.0,
                   "fps": 8},
    "log": {"every": 10, "tensorboard": True},
}


# Sub-dicts that hold a component's own keyword arguments: taken as given, not checked against DEFAULTS.
FREE_FORM = {("model", "transformer"), ("model", "vae"), ("model", "text_encoder"), ("model", "tokenizer"),
             ("model", "scheduler"), ("camera", "adapter"), ("trajectory", "adapter")}


def _free(keys: Sequence[str]) -> bool:
    return any(tuple(keys[: i + 1]) in FREE_FORM for i in range(len(keys)))


def _merge(base: dict, update: dict, path: tuple = ()) -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in out and not _free(path + (key,)):
            raise ValueError(f"unknown config key {'.'.join(path + (key,))!r}; known keys here: {', '.join(sorted(out))}")
        if isinstance(out.get(key), dict) and isinstance(value, dict) and not _free(path + (key,)):
            out[key] = _merge(out[key], value, path + (key,))
        else:
            out[key] = value
    return out


def apply_override(cfg: dict, override: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (numbers, lists, null...)."""
    if "=" not in override:
        raise ValueError(f"override {override!r} must look like key.sub=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.split(".")
    node = cfg
    for i, key in enumerate(keys[:-1]):
        if node.get(key) is None and _free(keys[: i + 1]):
            node[key] = {}
        if not isinstance(node.get(key), dict):
            raise ValueError(f"unknown config key {'.'.join(keys[: i + 1])!r} in override {override!r}")
        node = node[key]
    if keys[-1] not in node and not _free(keys):
        raise ValueError(f"unknown config key {dotted!r}; known keys here: {', '.join(sorted(node))}")
    node[keys[-1]] = _numbers(yaml.safe_load(raw))


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _numbers(value):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; take such strings as the floats they mean, recursively."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """Defaults, updated by the YAML file at ``path``, then by the ``key=value`` overrides; unknown keys raise."""
    user = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        user = _numbers(yaml.safe_load(path.read_text()) or {})
    cfg = _merge(DEFAULTS, user)
    for override in overrides:
        apply_override(cfg, override)
    if cfg["task"] not in ("dit", "vae", "camera", "trajectory"):
        raise ValueError(f"task must be 'dit', 'vae', 'camera' or 'trajectory'; got {cfg['task']!r}")
    return cfg
