"""LoRA adapters on the DiT through peft: add trainable ones, save them in diffusers' format, load them again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' file name (WanPipeline.load_lora_weights(directory))


def add_lora(model: torch.nn.Module, rank: int, alpha: Optional[float] = None, target_modules: Sequence[str] = (),
             dropout: float = 0.0) -> LoraConfig:
    """Freeze ``model`` and inject trainable LoRA layers (rank ``rank``, scale ``alpha/rank``) into the modules
    whose names end with one of ``target_modules``."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive; got {rank}")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, target_modules=list(target_modules),
                        init_lora_weights=True)
    model.requires_grad_(False)
    inject_adapter_in_model(config, model)
    if not any("lora_" in n for n, _ in model.named_parameters()):
        raise ValueError(f"no module of {type(model).__name__} matches LoRA target_modules {list(target_modules)}")
    return config


def trained_lora(model: torch.nn.Module, config: LoraConfig):
    """The adapter of ``model`` (trained by ``add_lora``) as a ``videogen.convert.lora.LoraFile``."""
    from videogen.convert.lora import LoraFile, ModuleLora

    modules: dict[str, ModuleLora] = {}
    for key, value in get_peft_model_state_dict(model).items():
        name, _, part = key.rpartition(".lora_")
        module = modules.setdefault(name, ModuleLora(alpha=float(config.lora_alpha)))
        tensor = value.detach().float().contiguous().cpu()
        if part.startswith("A"):
            module.down = tensor
        else:
            module.up = tensor
    return LoraFile(modules, "diffusers", rslora=bool(config.use_rslora))


def save_lora(model: torch.nn.Module, config: LoraConfig, directory: str | os.PathLike) -> Path:
    """Write the adapter as diffusers does (``transformer.`` keys, rank / alpha / targets in
    ``lora_adapter_metadata``): ``directory/pytorch_lora_weights.safetensors``, which diffusers'
    ``WanPipeline.load_lora_weights`` and our pipelines' ``load_lora_weights`` read; ``videogen lora convert``
    rewrites it for ComfyUI or musubi."""
    from videogen.convert.lora import save_lora as write

    directory = Path(directory)
    return write(trained_lora(model, config), directory / LORA_FILE, "diffusers").parent


def load_lora(model: torch.nn.Module, directory: str | os.PathLike, adapter_name: str = "default") -> torch.nn.Module:
    """Add the LoRA saved in ``directory`` (or any LoRA file) to ``model`` (strictly: ``videogen.models.lora``)."""
    from videogen.convert.lora import read_lora
    from videogen.models.lora import add_lora as add_file

    add_file(model, read_lora(directory), adapter_name)
    return model
