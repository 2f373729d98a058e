"""diffusers' LoRA API on our pipelines: load any Wan LoRA file, several named adapters with weights, fuse, unload."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Mapping, Optional, Sequence, Union

from videogen.convert.lora import read_lora
from videogen.models.lora import (
    LoraReport,
    active_lora_adapters,
    add_lora,
    delete_lora,
    lora_adapters,
    set_lora_weights,
    unload_lora,
)

AdapterWeight = Union[float, Mapping[str, float]]


class LoraLoaderMixin:
    """``load_lora_weights``, ``set_adapters``, ``fuse_lora``, ``unfuse_lora``, ``unload_lora_weights``,
    ``delete_adapters``, ``get_active_adapters``, ``get_list_adapters``, with diffusers' names and meanings, on the
    pipeline's ``transformer``. Files of every public Wan key scheme load (``videogen.convert.lora``)."""

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict: Union[str, os.PathLike, dict],
                          adapter_name: Optional[str] = None, strict: bool = True) -> LoraReport:
        """Add a LoRA (a file, a directory holding one, or a state dict) as adapter ``adapter_name`` (default
        ``default_0``, ``default_1``, ...), active beside those already loaded at weight 1. Returns the load report
        (what was applied, at which rank and scale). Keys matching nothing in this DiT are an error listing them;
        ``strict=False`` loads the rest with a warning that names them."""
        lora = read_lora(pretrained_model_name_or_path_or_dict)
        if adapter_name is None:
            taken = set(lora_adapters(self.transformer))
            adapter_name = next(f"default_{i}" for i in range(len(taken) + 1) if f"default_{i}" not in taken)
        active = active_lora_adapters(self.transformer)
        weights = dict(self.transformer.__dict__.get("_lora_weights", {}))
        report = add_lora(self.transformer, lora, adapter_name, strict=strict)
        names = [n for n in active if n in weights] + [adapter_name]
        set_lora_weights(self.transformer, names, [weights.get(n, 1.0) for n in names[:-1]] + [1.0])
        return report

    def set_adapters(self, adapter_names: Union[str, Sequence[str]],
                     adapter_weights: Union[AdapterWeight, Sequence[AdapterWeight], None] = None) -> None:
        """Use exactly ``adapter_names``, each at its weight: a float, or a dict of module-path prefixes to weights
        (``{"blocks.1": 0.0}`` is block 1 only: matched at dot boundaries, unlike diffusers' substring match)."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if adapter_weights is None:
            weights = [1.0] * len(names)
        elif isinstance(adapter_weights, (int, float, Mapping)):
            weights = [adapter_weights] * len(names)
        else:
            weights = list(adapter_weights)
        set_lora_weights(self.transformer, names, weights)

    def get_active_adapters(self) -> list[str]:
        """The adapters in use."""
        return active_lora_adapters(self.transformer)

    def get_list_adapters(self) -> dict[str, list[str]]:
        """Every loaded adapter, by component (diffusers' shape: ``{"transformer": [...]}``)."""
        return {"transformer": lora_adapters(self.transformer)}

    def fuse_lora(self, lora_scale: float = 1.0, adapter_names: Optional[Sequence[str]] = None) -> None:
        """Merge the active LoRA factors (times ``lora_scale``) into the weights: the same output, no LoRA cost
        per step. Full-weight deltas are in the weights already."""
        if not lora_adapters(self.transformer):
            raise ValueError("no LoRA is loaded: nothing to fuse")
        if getattr(self.transformer, "peft_config", None):
            self.transformer.fuse_lora(lora_scale=lora_scale, adapter_names=adapter_names)

    def unfuse_lora(self) -> None:
        """Undo ``fuse_lora``."""
        if getattr(self.transformer, "peft_config", None):
            self.transformer.unfuse_lora()

    def delete_adapters(self, adapter_names: Union[str, Sequence[str]]) -> None:
        """Remove the named adapters; the others keep their weights."""
        delete_lora(self.transformer, adapter_names)

    def unload_lora_weights(self) -> None:
        """Remove every adapter: the transformer is exactly the base again."""
        unload_lora(self.transformer)

    @contextmanager
    def lora_scale(self, scale: float = 1.0):
        """Within the block, every active adapter's weight times ``scale`` (the per-call ``attention_kwargs``
        ``{"scale": s}`` of diffusers); the weights are restored after, also on an error."""
        active = active_lora_adapters(self.transformer)
        if scale == 1.0 or not active:
            yield
            return
        weights = [self.transformer.__dict__["_lora_weights"][n] for n in active]
        set_lora_weights(self.transformer, active, weights, scale=scale)
        try:
            yield
        finally:
            set_lora_weights(self.transformer, active, weights)
