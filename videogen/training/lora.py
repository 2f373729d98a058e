"""LoRA adapters on the DiT through peft: add, save only the adapter weights, load them into a fresh model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

ADAPTER_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


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


def save_lora(model: torch.nn.Module, config: LoraConfig, directory: str | os.PathLike) -> Path:
    """Write only the adapter weights (peft keys, safetensors) and their config into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(state, str(directory / ADAPTER_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2, default=list))
    return directory


def load_lora(model: torch.nn.Module, directory: str | os.PathLike) -> torch.nn.Module:
    """Inject the adapter saved in ``directory`` into ``model`` and load its weights (strictly)."""
    directory = Path(directory)
    if not (directory / ADAPTER_FILE).exists():
        raise FileNotFoundError(f"no LoRA adapter at {directory} (expected {ADAPTER_FILE} and {CONFIG_FILE})")
    raw = json.loads((directory / CONFIG_FILE).read_text())
    config = LoraConfig(r=raw["r"], lora_alpha=raw["lora_alpha"], lora_dropout=raw.get("lora_dropout", 0.0),
                        target_modules=list(raw["target_modules"]))
    inject_adapter_in_model(config, model)
    result = set_peft_model_state_dict(model, load_file(str(directory / ADAPTER_FILE)))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"LoRA weights in {directory} do not fit the model: unexpected keys {unexpected[:10]}")
    return model
