"""LoRA adapters on a VideoDiT: a LoraFile (any public scheme) injected through peft as a named adapter, full-weight
deltas applied as ComfyUI applies them, adapter weights (also per block, matched exactly), and a load report."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import torch

Weight = Union[float, Mapping[str, float]]
_WIDTHS = {1536: "Wan2.1-1.3B", 5120: "Wan2.1-14B"}


@dataclass
class LoraReport:
    """What ``add_lora`` did: LoRA factors applied (module, rank, scale), deltas applied, and what was skipped."""

    adapter: str
    scheme: str
    applied: list[tuple[str, int, float]] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    skipped_keys: list[str] = field(default_factory=list)  # file keys naming no Wan module
    skipped_modules: list[str] = field(default_factory=list)  # Wan modules this model does not have

    def __str__(self) -> str:
        ranks = sorted({r for _, r, _ in self.applied})
        scales = sorted({round(s, 6) for _, _, s in self.applied})
        text = (f"LoRA {self.adapter!r} ({self.scheme}): {len(self.applied)} modules, rank {ranks}, scale "
                f"{scales}, {len(self.deltas)} full-weight deltas")
        if self.skipped_keys or self.skipped_modules:
            text += f"; skipped {len(self.skipped_keys)} keys and {len(self.skipped_modules)} modules"
        return text


def _width_name(width: int) -> str:
    return f"width {width}" + (f" ({_WIDTHS[width]})" if width in _WIDTHS else "")


def _resolve(transformer, name: str):
    """``(module, None)`` for a module path (the base layer if peft wrapped it), or ``(parent, param_name)`` for a
    parameter path such as ``blocks.0.modulation``; None if the model has neither."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    try:
        module = transformer.get_submodule(name)
        return (module.get_base_layer() if isinstance(module, BaseTunerLayer) else module), None
    except AttributeError:
        pass
    parent_name, _, param = name.rpartition(".")
    try:
        parent = transformer.get_submodule(parent_name) if parent_name else transformer
    except AttributeError:
        return None
    return (parent, param) if isinstance(getattr(parent, param, None), torch.nn.Parameter) else None


def _target(transformer, name: str, part: str) -> Optional[torch.nn.Parameter]:
    """The parameter a delta of ``part`` (``diff``/``set_weight``: the weight, ``diff_b``: the bias) changes."""
    found = _resolve(transformer, name)
    if found is None:
        return None
    owner, param = found
    if param is not None:
        return getattr(owner, param) if part != "diff_b" else None
    return getattr(owner, "bias" if part == "diff_b" else "weight", None)


def _check_shapes(transformer, name: str, m) -> None:
    """A LoRA module's factors must fit the model's Linear; the error names the layer and the widths."""
    owner, param = _resolve(transformer, name)
    if param is not None or not isinstance(owner, torch.nn.Linear):
        raise ValueError(f"LoRA factors on {name} are not supported: it is not a Linear layer "
                         f"({type(owner).__name__ if param is None else 'a parameter'})")
    want_in, want_out = owner.in_features, owner.out_features
    if m.down.shape[1] != want_in or m.up.shape[0] != want_out:
        lora_width = int(m.down.shape[1]) if ".o" not in name[-2:] else int(m.up.shape[0])
        raise ValueError(
            f"the LoRA does not fit this DiT at {name}: the LoRA has in {m.down.shape[1]} / out {m.up.shape[0]}, the "
            f"model in {want_in} / out {want_out}. A LoRA for a DiT of {_width_name(lora_width)} on one of "
            f"{_width_name(transformer.config.dim)}?"
        )
    for part in ("diff", "set_weight"):
        value = getattr(m, part)
        if value is not None and tuple(value.shape) != tuple(owner.weight.shape):
            raise ValueError(f"the LoRA's {part} for {name} has shape {tuple(value.shape)}; the weight is "
                             f"{tuple(owner.weight.shape)}")


def add_lora(transformer, lora, adapter_name: str, strict: bool = True) -> LoraReport:
    """Add ``lora`` (a ``videogen.convert.lora.LoraFile``) to ``transformer`` as adapter ``adapter_name``.

    The factors go into peft LoRA layers (per-module rank and alpha, rsLoRA if the file says so); the deltas change
    the base parameters, kept with their originals so weights, unloading and deleting undo them exactly. Keys that
    name no Wan module and modules this model lacks (e.g. ``k_img`` on a text-to-video DiT, blocks beyond its depth)
    are an error listing them, or with ``strict=False`` a warning naming them. Wrong sizes are always an error."""
    from peft import LoraConfig

    if adapter_name in getattr(transformer, "peft_config", {}) or adapter_name in _deltas(transformer):
        raise ValueError(f"an adapter named {adapter_name!r} is already loaded; pick another adapter_name")
    report = LoraReport(adapter_name, lora.scheme, skipped_keys=list(lora.unmatched))
    present = {}
    for name, m in lora.modules.items():
        if _resolve(transformer, name) is None:
            report.skipped_modules.append(name)
        else:
            present[name] = m
    problems = report.skipped_keys + report.skipped_modules
    if problems:
        listing = ", ".join(problems[:10]) + (f" ... ({len(problems) - 10} more)" if len(problems) > 10 else "")
        message = f"{len(problems)} LoRA keys/modules match nothing in this DiT: {listing}"
        if strict:
            raise ValueError(message + "; pass strict=False (CLI: --lora-nonstrict) to load the rest")
        warnings.warn(message + "; loading the rest")
    if not present:
        raise ValueError("the LoRA matches no module of this DiT")
    for name, m in present.items():
        if m.down is not None:
            _check_shapes(transformer, name, m)
        else:
            for part in ("diff", "diff_b", "set_weight"):
                value, target = getattr(m, part), _target(transformer, name, part)
                if value is not None and (target is None or tuple(value.shape) != tuple(target.shape)):
                    raise ValueError(f"the LoRA's {part} for {name} has shape {tuple(value.shape)}; the model's "
                                     f"parameter is {None if target is None else tuple(target.shape)}")
    factors = {n: m for n, m in present.items() if m.down is not None}
    if factors:
        ranks = {n: m.rank for n, m in factors.items()}
        # peft's scaling is lora_alpha / r: alpha None (scale 1) is alpha = r
        alphas = {n: (m.alpha if m.alpha is not None else float(m.rank)) for n, m in factors.items()}
        first = next(iter(factors))
        config = LoraConfig(r=ranks[first], lora_alpha=alphas[first], target_modules=sorted(factors),
                            rank_pattern={re.escape(n): r for n, r in ranks.items()},
                            alpha_pattern={re.escape(n): a for n, a in alphas.items()}, use_rslora=lora.rslora,
                            init_lora_weights=False)
        transformer.add_adapter(config, adapter_name=adapter_name)
        with torch.no_grad():
            for name, m in factors.items():
                layer = transformer.get_submodule(name)
                dtype = layer.get_base_layer().weight.dtype
                layer.lora_A[adapter_name].weight.copy_(m.down.to(dtype).reshape(layer.lora_A[adapter_name].weight.shape))
                layer.lora_B[adapter_name].weight.copy_(m.up.to(dtype).reshape(layer.lora_B[adapter_name].weight.shape))
                report.applied.append((name, m.rank, m.scale(lora.rslora)))
    deltas = {}
    for name, m in present.items():
        for part in ("diff", "diff_b", "set_weight"):
            if getattr(m, part) is not None:
                deltas[(name, part)] = getattr(m, part)
                report.deltas.append(f"{name}.{part}")
    _deltas(transformer)[adapter_name] = deltas
    _weights(transformer)[adapter_name] = 1.0
    set_lora_weights(transformer, list(_weights(transformer)), [_weights(transformer)[a] for a in _weights(transformer)])
    return report


def _deltas(transformer) -> dict:
    return transformer.__dict__.setdefault("_lora_deltas", {})


def _weights(transformer) -> dict:
    return transformer.__dict__.setdefault("_lora_weights", {})


def lora_adapters(transformer) -> list[str]:
    """Names of the adapters loaded, in loading order."""
    return list(_weights(transformer))


def active_lora_adapters(transformer) -> list[str]:
    """Names of the adapters in use (weight set by the last ``set_lora_weights``)."""
    return list(transformer.__dict__.get("_lora_active", []))


def weight_for(weight: Weight, name: str) -> float:
    """An adapter's weight for module ``name``: a float, or a dict of module-path prefixes (``"blocks.1"``,
    ``"blocks.1.self_attn"``) matched exactly at dot boundaries, the longest winning; unlisted modules get 1."""
    if not isinstance(weight, Mapping):
        return float(weight)
    best, value = -1, 1.0
    for prefix, w in weight.items():
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, value = len(prefix), float(w)
    return value


def set_lora_weights(transformer, names: Sequence[str], weights: Optional[Sequence[Weight]] = None,
                     scale: float = 1.0) -> None:
    """Use exactly the adapters ``names``, each at its weight (a float, or per-block dict: ``weight_for``), times
    ``scale``; the others are off. Deltas follow: parameter = original + sum of weight x delta (``set_weight``:
    original + weight x (value - original))."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names = list(names)
    weights = [1.0] * len(names) if weights is None else list(weights)
    if len(weights) != len(names):
        raise ValueError(f"got {len(weights)} adapter weights for {len(names)} adapters")
    unknown = [n for n in names if n not in _weights(transformer)]
    if unknown:
        raise ValueError(f"no adapter named {unknown}; loaded: {lora_adapters(transformer)}")
    for n, w in zip(names, weights):
        _weights(transformer)[n] = w
    transformer.__dict__["_lora_active"] = names
    for module_name, module in transformer.named_modules():
        if isinstance(module, BaseTunerLayer):
            mine = [n for n in names if n in module.scaling]
            module.set_adapter(mine)  # also turns off adapters not listed (peft keeps at least the names given)
            for n, w in zip(names, weights):
                module.set_scale(n, scale * weight_for(w, module_name))
            if not mine:  # no listed adapter here: peft's set_adapter([]) keeps the layer as it was, so zero them
                for other in module.scaling:
                    module.set_scale(other, 0.0)
    _apply_deltas(transformer, {n: w for n, w in zip(names, weights)}, scale)


def _apply_deltas(transformer, weights: Mapping[str, Weight], scale: float) -> None:
    """Recompute every parameter a delta touches from its stored original."""
    originals = transformer.__dict__.setdefault("_lora_originals", {})
    touched = {key for deltas in _deltas(transformer).values() for key in deltas}
    with torch.no_grad():
        for name, part in touched:
            param = _target(transformer, name, part)
            key = (name, "bias" if part == "diff_b" else "weight")
            if key not in originals:
                originals[key] = param.detach().clone()
            value = originals[key].float().clone()
            for adapter, deltas in _deltas(transformer).items():
                w = scale * weight_for(weights[adapter], name) if adapter in weights else 0.0
                for (dname, dpart), delta in deltas.items():
                    if dname != name or ("bias" if dpart == "diff_b" else "weight") != key[1] or w == 0:
                        continue
                    delta = delta.float().reshape(value.shape)
                    value += w * (delta - originals[key].float()) if dpart == "set_weight" else w * delta
            param.copy_(value.to(param.dtype))
        for key in [k for k in originals if (k[0], "diff_b" if k[1] == "bias" else "diff") not in touched
                    and (k[0], "set_weight") not in touched]:
            param = _target(transformer, key[0], "diff_b" if key[1] == "bias" else "diff")
            param.copy_(originals.pop(key).to(param.dtype))  # no adapter changes it any more: restore it


def delete_lora(transformer, names: Sequence[str]) -> None:
    """Remove adapters (their peft layers and deltas); the rest stay at their weights."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in _weights(transformer)]
    if unknown:
        raise ValueError(f"no adapter named {unknown}; loaded: {lora_adapters(transformer)}")
    peft_names = [n for n in names if n in getattr(transformer, "peft_config", {})]
    if peft_names:
        transformer.delete_adapters(peft_names)
    for n in names:
        _deltas(transformer).pop(n, None)
        _weights(transformer).pop(n, None)
    rest = [n for n in active_lora_adapters(transformer) if n not in names]
    if not getattr(transformer, "peft_config", None) and hasattr(transformer, "_hf_peft_config_loaded"):
        transformer.unload_lora()
    set_lora_weights(transformer, rest, [_weights(transformer)[n] for n in rest])


def unload_lora(transformer) -> None:
    """Remove every adapter: the model is again exactly the base."""
    if getattr(transformer, "peft_config", None):
        transformer.unload_lora()
    _deltas(transformer).clear()
    _weights(transformer).clear()
    transformer.__dict__["_lora_active"] = []
    _apply_deltas(transformer, {}, 1.0)
