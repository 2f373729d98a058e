"""LoRA adapters on the DiT through peft: add trainable ones, save them in diffusers' format, load them again."""

from __future__ import annotations

import os
import re
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


def add_lora_from_file(model: torch.nn.Module, source, dropout: float = 0.0, train_factors: str = "both") -> LoraConfig:
    """Freeze ``model`` and add the LoRA in ``source`` (any scheme ``videogen.convert.lora`` reads; factors only)
    as the trainable adapter, at its own rank and alpha: training continues from it. ``train_factors="A"`` keeps
    every B fixed, so what trains is a residual on A over the same basis."""
    from videogen.convert.lora import read_lora

    if train_factors not in ("both", "A"):
        raise ValueError(f"lora.train_factors must be 'both' or 'A'; got {train_factors!r}")
    lora = read_lora(source)
    if lora.has_deltas() or lora.unmatched:
        raise ValueError(f"{source}: only LoRA factors can be trained on (this file has full-weight deltas or "
                         "unmatched keys)")
    ranks, alphas = {n: m.rank for n, m in lora.modules.items()}, {n: m.alpha or float(m.rank) for n, m in lora.modules.items()}
    first = next(iter(ranks))
    config = LoraConfig(r=ranks[first], lora_alpha=alphas[first], lora_dropout=dropout, target_modules=sorted(ranks),
                        rank_pattern={re.escape(n): r for n, r in ranks.items()},
                        alpha_pattern={re.escape(n): a for n, a in alphas.items()}, use_rslora=lora.rslora)
    model.requires_grad_(False)
    inject_adapter_in_model(config, model)
    with torch.no_grad():
        for name, m in lora.modules.items():
            layer = model.get_submodule(name)
            layer.lora_A["default"].weight.copy_(m.down.to(layer.lora_A["default"].weight.dtype))
            layer.lora_B["default"].weight.copy_(m.up.to(layer.lora_B["default"].weight.dtype))
            if train_factors == "A":
                layer.lora_B["default"].weight.requires_grad_(False)
    return config


def trained_lora(model: torch.nn.Module, config: LoraConfig):
    """The adapter of ``model`` (trained by ``add_lora``) as a ``videogen.convert.lora.LoraFile``."""
    from videogen.convert.lora import LoraFile, ModuleLora

    modules: dict[str, ModuleLora] = {}
    for key, value in get_peft_model_state_dict(model).items():
        name, _, part = key.rpartition(".lora_")
        alpha = next((a for k, a in (config.alpha_pattern or {}).items() if re.fullmatch(k, name)), config.lora_alpha)
        module = modules.setdefault(name, ModuleLora(alpha=float(alpha)))
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
