"""Wan LoRA files in every public key scheme, read into one form on VideoDiT's module names, and written back out.

Schemes read (detected from the keys; ``read_lora``):

    diffusers     transformer.blocks.0.attn1.to_q.lora_A.weight        alpha: lora_adapter_metadata, else folded (1)
    comfyui       diffusion_model.blocks.0.self_attn.q.lora_A.weight   (or lora_down/lora_up + .alpha; .diff, .diff_b)
    comfyui-diffusers-names  diffusion_model.blocks.0.attn1.to_q.lora_A.weight
    musubi        lora_unet_blocks_0_self_attn_q.lora_down.weight      per-module .alpha (kohya)
    videox-fun    lora_unet__blocks_0_self_attn_q.lora_down.weight     (double underscore)
    diffsynth     blocks.0.self_attn.q.lora_A.default.weight           alpha = rank
    peft          base_model.model.blocks.0.self_attn.q.lora_A.weight  adapter_config.json (r, lora_alpha, use_rslora)
    original      blocks.0.self_attn.q.lora_down.weight                bare original names

plus full-weight deltas as ComfyUI applies them: ``.diff`` (W += d), ``.diff_b`` (b += d), ``.set_weight`` (W = s),
and ``diff_m`` (a block's modulation table += d). A module's update is ``W + s * (alpha / r) * B @ A`` (``alpha /
sqrt(r)`` for rsLoRA; scale 1 without an alpha, as ComfyUI and diffusers' folded files mean), plus its deltas.

Written (``lora_state_dict``): ``diffusers`` (what diffusers' ``WanPipeline.load_lora_weights`` reads, alpha in
``lora_adapter_metadata``), ``comfyui`` (``diffusion_model.<original name>`` + ``lora_down/up`` + ``.alpha``, deltas
as is) and ``musubi`` (kohya flat names + ``.alpha``). LoKr / LoHa / DoRA files are refused with a clear error.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch

from videogen.convert.state_dict import rename_keys
from videogen.convert.wan import DIFFUSERS_KEYS, ORIGINAL_KEYS

SCHEMES = ("diffusers", "comfyui", "comfyui-diffusers-names", "musubi", "videox-fun", "diffsynth", "peft", "original")
WRITE_SCHEMES = ("diffusers", "comfyui", "musubi")

# Module templates (original Wan names; ours differ only in norm3 -> norm_cross) that a Wan LoRA may address.
ORIGINAL_MODULES = (
    [f"blocks.{{i}}.self_attn.{m}" for m in ("q", "k", "v", "o", "norm_q", "norm_k")]
    + [f"blocks.{{i}}.cross_attn.{m}" for m in ("q", "k", "v", "o", "k_img", "v_img", "norm_q", "norm_k", "norm_k_img")]
    + ["blocks.{i}.ffn.0", "blocks.{i}.ffn.2", "blocks.{i}.norm3", "blocks.{i}.modulation"]
    + ["head.head", "head.modulation", "time_projection.1", "text_embedding.0", "text_embedding.2",
       "time_embedding.0", "time_embedding.2", "img_emb.proj.0", "img_emb.proj.1", "img_emb.proj.3",
       "img_emb.proj.4", "patch_embedding"]
)
# The flat kohya form of every template: dots become underscores (a regex per template, block index captured).
_FLAT = [(re.compile("^" + re.escape(t.replace(".", "_")).replace(r"\{i\}", r"(?P<i>\d+)") + "$"), t)
         for t in ORIGINAL_MODULES]
_DOTTED = [(re.compile("^" + re.escape(t).replace(r"\{i\}", r"(?P<i>\d+)") + "$"), t) for t in ORIGINAL_MODULES]

# Key suffixes -> the part they hold. Longest first, so ".lora_A.default.weight" wins over ".weight".
_SUFFIXES = [
    (".lora_A.default.weight", "down"), (".lora_B.default.weight", "up"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora_B.bias", "diff_b"),
    (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".lora_A", "down"), (".lora_B", "up"),
    (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff", "diff"), (".set_weight", "set_weight"),
]
_UNSUPPORTED = {"lokr_": "LoKr", "hada_": "LoHa", "dora_scale": "DoRA", ".lora_mid.": "LoCon/LoRA mid (Tucker)"}


@dataclass
class ModuleLora:
    """One module's update: LoRA factors ``down`` (A ``[r, in]``) and ``up`` (B ``[out, r]``) with ``alpha``, and the
    full-weight deltas ``diff`` (added to the weight), ``diff_b`` (to the bias), ``set_weight`` (replaces it)."""

    down: Optional[torch.Tensor] = None
    up: Optional[torch.Tensor] = None
    alpha: Optional[float] = None
    diff: Optional[torch.Tensor] = None
    diff_b: Optional[torch.Tensor] = None
    set_weight: Optional[torch.Tensor] = None

    @property
    def rank(self) -> Optional[int]:
        """The LoRA rank (rows of A), or None for a module with deltas only."""
        return None if self.down is None else int(self.down.shape[0])

    def scale(self, rslora: bool = False) -> float:
        """``alpha / r`` (``alpha / sqrt(r)`` for rsLoRA); 1 without an alpha (the factors already carry it)."""
        if self.alpha is None or self.rank is None:
            return 1.0
        return self.alpha / (math.sqrt(self.rank) if rslora else self.rank)

    def lora_delta(self, rslora: bool = False) -> Optional[torch.Tensor]:
        """``scale * B @ A`` in float32 (for a Linear; a conv's factors are flattened), or None without factors."""
        if self.down is None:
            return None
        delta = self.up.float().flatten(1) @ self.down.float().flatten(1)
        return self.scale(rslora) * delta


@dataclass
class LoraFile:
    """A LoRA read from any scheme: ``modules`` keyed by VideoDiT module name, the ``scheme`` it came in, its
    safetensors ``metadata``, whether its scale is rsLoRA's, and the keys that matched nothing (``unmatched``)."""

    modules: dict[str, ModuleLora]
    scheme: str
    metadata: dict = field(default_factory=dict)
    rslora: bool = False
    unmatched: list[str] = field(default_factory=list)

    def ranks(self) -> list[int]:
        """The distinct LoRA ranks, sorted."""
        return sorted({m.rank for m in self.modules.values() if m.rank is not None})

    def has_deltas(self) -> bool:
        """Whether any module carries a full-weight delta (``diff``, ``diff_b``, ``set_weight``)."""
        return any(m.diff is not None or m.diff_b is not None or m.set_weight is not None
                   for m in self.modules.values())


# ------------------------------------------------------------------------------------------ names


def module_from_diffusers(name: str) -> str:
    """A diffusers ``WanTransformer3DModel`` module name -> ours (``blocks.0.attn1.to_q`` -> ``blocks.0.self_attn.q``)."""
    return next(iter(rename_keys({name + ".": None}, DIFFUSERS_KEYS, reverse=True)))[:-1]


def module_to_diffusers(name: str) -> str:
    """Ours -> diffusers' module name (exact inverse of ``module_from_diffusers``)."""
    return next(iter(rename_keys({name + ".": None}, DIFFUSERS_KEYS)))[:-1]


def module_from_original(name: str) -> str:
    """An original Wan module name -> ours (``norm3`` -> ``norm_cross``)."""
    return next(iter(rename_keys({name + ".": None}, ORIGINAL_KEYS, reverse=True)))[:-1]


def module_to_original(name: str) -> str:
    """Ours -> the original Wan module name."""
    return next(iter(rename_keys({name + ".": None}, ORIGINAL_KEYS)))[:-1]


def _is_original_module(name: str) -> bool:
    return any(regex.match(name) for regex, _ in _DOTTED)


def _unflatten(flat: str) -> Optional[str]:
    """A kohya flat module name (``blocks_0_self_attn_q``) -> the original dotted one, or None."""
    for regex, template in _FLAT:
        m = regex.match(flat)
        if m:
            return template.replace("{i}", m.group("i")) if "{i}" in template else template
    return None


def _looks_diffusers(name: str) -> bool:
    return any(part in name for part in (".attn1.", ".attn2.", ".ffn.net.", "condition_embedder.", "proj_out",
                                         "scale_shift_table")) or name.endswith(".norm2")


# ------------------------------------------------------------------------------------------ reading


def detect_scheme(keys) -> str:
    """The key scheme of a LoRA state dict (one of ``SCHEMES``); an unknown one is a ValueError listing them."""
    keys = list(keys)
    if not keys:
        raise ValueError("the LoRA file is empty: no tensors")
    for marker, name in _UNSUPPORTED.items():
        bad = [k for k in keys if marker in k]
        if bad:
            raise ValueError(f"{name} weights are not supported (e.g. {bad[0]!r}); videogen loads LoRA (A/B or "
                             "down/up factors with alpha) and full-weight deltas (.diff, .diff_b, .set_weight)")
    first = keys[0]
    if any(k.startswith("lora_unet__") for k in keys):
        return "videox-fun"
    if any(k.startswith("lora_unet_") for k in keys):
        return "musubi"
    if any(k.startswith("diffusion_model.") for k in keys):
        modules = [k[len("diffusion_model."):] for k in keys if k.startswith("diffusion_model.")]
        return "comfyui-diffusers-names" if any(_looks_diffusers(m) for m in modules) else "comfyui"
    if any(k.startswith("transformer.") for k in keys):
        return "diffusers"
    if any(k.startswith("base_model.model.") for k in keys):
        return "peft"
    if any(".default." in k for k in keys):
        return "diffsynth"
    if any(k.startswith(("blocks.", "head.", "text_embedding.", "time_embedding.", "time_projection.", "img_emb."))
           for k in keys):
        return "diffusers" if any(_looks_diffusers(k) for k in keys) else "original"
    raise ValueError(f"unknown LoRA key scheme (first key {first!r}); known schemes: {', '.join(SCHEMES)}")


_PREFIX = {"diffusers": "transformer.", "comfyui": "diffusion_model.", "comfyui-diffusers-names": "diffusion_model.",
           "musubi": "lora_unet_", "videox-fun": "lora_unet__", "peft": "base_model.model.", "diffsynth": "",
           "original": ""}


def _split(key: str) -> tuple[str, str] | None:
    """``(module, part)`` of one key, or None if its suffix is no LoRA part."""
    if key.endswith(".diff_m"):  # Kijai's modulation delta on a block
        return key[: -len(".diff_m")] + ".modulation", "diff"
    for suffix, part in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], part
    return None


def _our_module(scheme: str, module: str) -> Optional[str]:
    if scheme in ("musubi", "videox-fun"):
        dotted = _unflatten(module.replace(".", "_"))  # also the mangled "lora_unet_blocks_0.cross_attn.k"
        return None if dotted is None else module_from_original(dotted)
    if scheme in ("diffusers", "comfyui-diffusers-names") or (scheme == "peft" and _looks_diffusers(module)):
        ours = module_from_diffusers(module)
        return ours if _is_original_module(module_to_original(ours)) else None
    return module_from_original(module) if _is_original_module(module) else None


def _metadata_alpha(metadata: Mapping[str, str]) -> tuple[Optional[float], bool, dict]:
    """(alpha, rsLoRA, alpha_pattern) stated by a file's metadata: diffusers' ``lora_adapter_metadata``,
    finetrainers' ``lora_config``, peft's ``adapter_config`` (with per-module ``alpha_pattern``), musubi's
    ``ss_network_alpha``."""
    for key in ("lora_adapter_metadata", "lora_config", "adapter_config"):
        if key in metadata:
            try:
                cfg = json.loads(metadata[key])
            except (TypeError, json.JSONDecodeError):
                continue
            cfg = {k.split(".", 1)[1] if k.startswith("transformer.") else k: v for k, v in cfg.items()}
            if "lora_alpha" in cfg:
                return float(cfg["lora_alpha"]), bool(cfg.get("use_rslora", False)), dict(cfg.get("alpha_pattern") or {})
    if "ss_network_alpha" in metadata:
        try:
            return float(metadata["ss_network_alpha"]), False, {}
        except ValueError:
            pass
    return None, False, {}


def _pattern_alpha(pattern: Mapping[str, float], local: str) -> Optional[float]:
    """A per-module alpha from peft's ``alpha_pattern`` (regex keys matched at the end of the module name)."""
    for key, value in pattern.items():
        if local == key or re.fullmatch(rf"(.*\.)?({key})", local):
            return float(value)
    return None


def lora_from_state_dict(state: Mapping[str, torch.Tensor], metadata: Optional[Mapping[str, str]] = None) -> LoraFile:
    """Parse a LoRA state dict of any scheme (``detect_scheme``) into a ``LoraFile`` on our module names.

    Alpha: a module's ``.alpha`` key, else the metadata's (diffusers, finetrainers, peft, musubi), else none (scale
    1: the factors carry it, as in diffusers' folded files and DiffSynth's alpha = rank)."""
    metadata = dict(metadata or {})
    scheme = detect_scheme(state.keys())
    prefix = _PREFIX[scheme]
    meta_alpha, rslora, alpha_pattern = _metadata_alpha(metadata)
    local_names: dict[str, str] = {}
    modules: dict[str, ModuleLora] = {}
    unmatched = []
    for key, value in state.items():
        if not key.startswith(prefix):
            unmatched.append(key)
            continue
        split = _split(key[len(prefix):])
        ours = None if split is None else _our_module(scheme, split[0])
        if ours is None:
            unmatched.append(key)
            continue
        module = modules.setdefault(ours, ModuleLora())
        local_names[ours] = split[0]
        part = split[1]
        if getattr(module, part) is not None:
            raise ValueError(f"two keys give {ours}'s {part} (one is {key!r})")
        if part == "alpha":
            module.alpha = float(value.float().item() if isinstance(value, torch.Tensor) else value)
        else:
            if not torch.isfinite(value.float()).all():
                raise ValueError(f"LoRA tensor {key!r} holds non-finite values")
            setattr(module, part, value)
    for name, module in modules.items():
        if (module.down is None) != (module.up is None):
            raise ValueError(f"LoRA module {name} has only one of its two factors (A/down and B/up)")
        if module.down is not None and module.up.shape[1] != module.down.shape[0]:
            raise ValueError(f"LoRA module {name}: B {tuple(module.up.shape)} does not fit A {tuple(module.down.shape)}")
        if module.alpha is None and module.down is not None and meta_alpha is not None:
            from_pattern = _pattern_alpha(alpha_pattern, local_names[name])
            module.alpha = meta_alpha if from_pattern is None else from_pattern
        if module.alpha is not None and module.down is None:
            raise ValueError(f"LoRA module {name} has an alpha but no factors")
    if not modules:
        raise ValueError(f"no key of this {scheme} LoRA names a Wan module (first keys: {sorted(state)[:3]})")
    return LoraFile(modules, scheme, metadata, rslora, unmatched)


def read_lora(source) -> LoraFile:
    """Read a LoRA from a path (a ``.safetensors``/``.pt``/``.bin`` file, or a directory holding one, with peft's
    ``adapter_config.json`` beside it if any) or from a state dict. Corrupt, empty or unknown files are errors."""
    if isinstance(source, Mapping):
        return lora_from_state_dict(source)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no LoRA file at {path}")
    config = None
    if path.is_dir():
        config = path / "adapter_config.json"
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")) or sorted(path.glob("*.pt"))
        if len(files) != 1:
            raise ValueError(f"expected one LoRA weights file in {path}; found {[f.name for f in files]}")
        path = files[0]
    metadata: dict = {}
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"cannot read LoRA file {path}: corrupt or truncated ({err})") from err
    else:
        from videogen.convert.state_dict import load_state_dict

        state = load_state_dict(path)
    if config is not None and config.exists():
        metadata.setdefault("adapter_config", config.read_text())
    if not state:
        raise ValueError(f"the LoRA file {path} is empty: no tensors")
    return lora_from_state_dict(state, metadata)


# ------------------------------------------------------------------------------------------ writing


def _uniform(lora: LoraFile) -> tuple[Optional[int], Optional[float]]:
    ranks = {m.rank for m in lora.modules.values() if m.rank is not None}
    alphas = {m.alpha for m in lora.modules.values() if m.rank is not None}
    return (ranks.pop() if len(ranks) == 1 else None), (alphas.pop() if len(alphas) == 1 else None)


def _flat(name: str) -> str:
    return module_to_original(name).replace(".", "_")


def lora_state_dict(lora: LoraFile, scheme: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, safetensors metadata)`` of ``lora`` in a written scheme (``WRITE_SCHEMES``).

    diffusers: ``transformer.<diffusers name>.lora_A/B.weight``; one rank and alpha for all modules go into
    ``lora_adapter_metadata`` (r, lora_alpha, target_modules, use_rslora), else each module's scale is folded into
    its B. comfyui: ``diffusion_model.<original name>.lora_down/up.weight`` + ``.alpha`` and the deltas as they are.
    musubi: ``lora_unet_<original name, dots as underscores>.lora_down/up.weight`` + ``.alpha``.
    Deltas (``.diff``...) exist only in the comfyui scheme: asking another for them is a ValueError naming them."""
    if scheme not in WRITE_SCHEMES:
        raise ValueError(f"cannot write scheme {scheme!r}; choose one of {', '.join(WRITE_SCHEMES)}")
    deltas = [n for n, m in lora.modules.items() if m.diff is not None or m.diff_b is not None or m.set_weight is not None]
    if deltas and scheme != "comfyui":
        raise ValueError(f"the {scheme} scheme has no place for full-weight deltas (.diff/.diff_b/.set_weight) of "
                         f"{', '.join(sorted(deltas)[:5])}{' ...' if len(deltas) > 5 else ''}; write --to comfyui")
    out: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {"format": "pt"}
    if scheme == "diffusers":
        rank, alpha = _uniform(lora)
        fold = rank is None or alpha is None  # no one alpha for all: each module's scale goes into its B
        for name, m in sorted(lora.modules.items()):
            base = f"transformer.{module_to_diffusers(name)}"
            up = m.up * m.scale(lora.rslora) if fold else m.up
            out[f"{base}.lora_A.weight"], out[f"{base}.lora_B.weight"] = m.down.contiguous(), up.contiguous()
        config = {"r": rank or max(lora.ranks()), "lora_alpha": alpha if not fold else (rank or max(lora.ranks())),
                  "target_modules": sorted(module_to_diffusers(n) for n in lora.modules), "use_rslora": lora.rslora
                  and not fold}
        if fold and rank is None:  # mixed ranks: a per-module pattern keeps peft's shapes right, scales are folded
            config["rank_pattern"] = {module_to_diffusers(n): m.rank for n, m in lora.modules.items()}
            config["alpha_pattern"] = {module_to_diffusers(n): m.rank for n, m in lora.modules.items()}
        metadata["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in config.items()}, sort_keys=True)
        return out, metadata
    for name, m in sorted(lora.modules.items()):
        base = f"diffusion_model.{module_to_original(name)}" if scheme == "comfyui" else f"lora_unet_{_flat(name)}"
        if m.down is not None:
            out[f"{base}.lora_down.weight"], out[f"{base}.lora_up.weight"] = m.down.contiguous(), m.up.contiguous()
            alpha = m.alpha if m.alpha is not None else float(m.rank)  # no alpha meant scale 1: alpha = r
            if lora.rslora:  # kohya and ComfyUI scale by alpha / r: restate rsLoRA's alpha / sqrt(r) that way
                alpha = m.scale(True) * m.rank
            out[f"{base}.alpha"] = torch.tensor(float(alpha))
        for part in ("diff", "diff_b", "set_weight"):
            if getattr(m, part) is not None:
                out[f"{base}.{part}"] = getattr(m, part).contiguous()
    rank, alpha = _uniform(lora)
    if scheme == "musubi" and rank is not None:
        metadata.update(ss_network_module="networks.lora_wan", ss_network_dim=str(rank),
                        ss_network_alpha=str(out[next(k for k in out if k.endswith(".alpha"))].item()))
    return out, metadata


def save_lora(lora: LoraFile, path: str | os.PathLike, scheme: str = "diffusers") -> Path:
    """Write ``lora`` as one safetensors file in ``scheme`` (``lora_state_dict``); return the path."""
    from safetensors.torch import save_file

    tensors, metadata = lora_state_dict(lora, scheme)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def lora_info(lora: LoraFile) -> dict:
    """What a user asks of a LoRA file: its scheme, ranks, alphas, targeted module kinds, blocks, deltas, and the
    base it fits (the width the factors imply: 1536 is Wan2.1-1.3B, 5120 Wan2.1-14B)."""
    kinds, blocks, widths = set(), set(), set()
    for name, m in lora.modules.items():
        match = re.match(r"blocks\.(\d+)\.(.+)$", name)
        kinds.add(match.group(2) if match else name)
        if match:
            blocks.add(int(match.group(1)))
        if m.down is not None and re.search(r"(self_attn|cross_attn)\.(q|o)$", name):
            widths.add(int(m.down.shape[1]))
    base = {1536: "Wan2.1-1.3B (width 1536)", 5120: "Wan2.1-14B (width 5120)"}
    return dict(scheme=lora.scheme, modules=len(lora.modules), ranks=lora.ranks(),
                alphas=sorted({m.alpha for m in lora.modules.values() if m.alpha is not None}),
                rslora=lora.rslora, targets=sorted(kinds), blocks=sorted(blocks),
                deltas=lora.has_deltas(), width=sorted(widths),
                base=[base.get(w, f"a DiT of width {w}") for w in sorted(widths)], unmatched=lora.unmatched[:20])


# ------------------------------------------------------------------------------------------ command line


def add_cli(subparsers):
    """Register ``videogen lora info FILE`` and ``videogen lora convert IN OUT --to SCHEME``."""
    p = subparsers.add_parser("lora", help="inspect or convert Wan LoRA files (every public key scheme)")
    sub = p.add_subparsers(dest="lora_command", required=True)
    info = sub.add_parser("info", help="scheme, rank, alpha, targets, blocks, deltas and the base a LoRA fits")
    info.add_argument("file")
    info.set_defaults(func=run_lora_info)
    conv = sub.add_parser("convert", help="rewrite a LoRA for diffusers, ComfyUI or musubi-tuner")
    conv.add_argument("src")
    conv.add_argument("dst", help="output .safetensors file")
    conv.add_argument("--to", choices=WRITE_SCHEMES, required=True)
    conv.set_defaults(func=run_lora_convert)
    return p


def run_lora_info(args) -> int:
    """Print ``lora_info`` of a file as JSON."""
    print(json.dumps(lora_info(read_lora(args.file)), indent=2))
    return 0


def run_lora_convert(args) -> int:
    """Read any scheme, write ``--to``; print what was written."""
    lora = read_lora(args.src)
    if lora.unmatched:
        raise ValueError(f"{len(lora.unmatched)} keys of {args.src} name no Wan module and would be lost: "
                         f"{', '.join(lora.unmatched[:10])}")
    out = save_lora(lora, args.dst, args.to)
    print(f"{args.src} ({lora.scheme}, {len(lora.modules)} modules) -> {out} ({args.to})")
    return 0
