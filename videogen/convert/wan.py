"""Wan2.1 DiT checkpoints <-> VideoDiT: key maps for the diffusers and the original layout (plus VideoX-Fun's
Fun-Control-Camera adapter), config mapping, loading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional

import torch

from videogen.convert.state_dict import load_state_dict, load_strict, read_config, rename_keys, strip_prefix

ORIGINAL_PREFIX = "model.diffusion_model."

# VideoX-Fun's Fun-Control-Camera adapter (``control_adapter.*``, original Wan keys otherwise) -> ours. A checkpoint
# with ``control_adapter.conv.weight`` is a camera model. diffusers has no such module; its single-file converter
# passes these keys through unchanged, so the diffusers table uses the same names.
CAMERA_ADAPTER_KEYS: list[tuple[str, str]] = [
    ("camera_adapter.embed.", "control_adapter.conv."),
    ("camera_adapter.refine.", "control_adapter.residual_blocks.0."),
]

# (ours, diffusers WanTransformer3DModel). Templates: see videogen.convert.state_dict.rename_keys.
DIFFUSERS_KEYS: list[tuple[str, str]] = [
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("img_emb.proj.0.", "condition_embedder.image_embedder.norm1."),
    ("img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj."),
    ("img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2."),
    ("img_emb.proj.4.", "condition_embedder.image_embedder.norm2."),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("blocks.{i}.self_attn.q.", "blocks.{i}.attn1.to_q."),
    ("blocks.{i}.self_attn.k.", "blocks.{i}.attn1.to_k."),
    ("blocks.{i}.self_attn.v.", "blocks.{i}.attn1.to_v."),
    ("blocks.{i}.self_attn.o.", "blocks.{i}.attn1.to_out.0."),
    ("blocks.{i}.self_attn.norm_q.", "blocks.{i}.attn1.norm_q."),
    ("blocks.{i}.self_attn.norm_k.", "blocks.{i}.attn1.norm_k."),
    ("blocks.{i}.cross_attn.q.", "blocks.{i}.attn2.to_q."),
    ("blocks.{i}.cross_attn.k.", "blocks.{i}.attn2.to_k."),
    ("blocks.{i}.cross_attn.v.", "blocks.{i}.attn2.to_v."),
    ("blocks.{i}.cross_attn.o.", "blocks.{i}.attn2.to_out.0."),
    ("blocks.{i}.cross_attn.norm_q.", "blocks.{i}.attn2.norm_q."),
    ("blocks.{i}.cross_attn.norm_k.", "blocks.{i}.attn2.norm_k."),
    ("blocks.{i}.cross_attn.k_img.", "blocks.{i}.attn2.add_k_proj."),
    ("blocks.{i}.cross_attn.v_img.", "blocks.{i}.attn2.add_v_proj."),
    ("blocks.{i}.cross_attn.norm_k_img.", "blocks.{i}.attn2.norm_added_k."),
    ("blocks.{i}.norm_cross.", "blocks.{i}.norm2."),  # diffusers swapped norm2/norm3 relative to Wan
    ("blocks.{i}.ffn.0.", "blocks.{i}.ffn.net.0.proj."),
    ("blocks.{i}.ffn.2.", "blocks.{i}.ffn.net.2."),
    ("blocks.{i}.modulation", "blocks.{i}.scale_shift_table"),
    ("head.head.", "proj_out."),
    ("head.modulation", "scale_shift_table"),
    *CAMERA_ADAPTER_KEYS,
]

# (ours, original Wan2.1 `WanModel`). Our names follow the original except the cross-attention norm,
# which Wan calls norm3 although it sits second in the block.
ORIGINAL_KEYS: list[tuple[str, str]] = [
    ("blocks.{i}.norm_cross.", "blocks.{i}.norm3."),
    *CAMERA_ADAPTER_KEYS,
]


def _is_diffusers_layout(keys) -> bool:
    return any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys)


def transformer_state_dict_from_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``WanTransformer3DModel`` state dict to VideoDiT keys (``norm_added_q``, which
    diffusers itself ignores, is dropped)."""
    state = {k: v for k, v in state.items() if ".norm_added_q." not in k}
    return rename_keys(state, DIFFUSERS_KEYS, reverse=True)


def transformer_state_dict_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a VideoDiT state dict to diffusers ``WanTransformer3DModel`` keys (exact inverse of the above)."""
    return rename_keys(state, DIFFUSERS_KEYS)


def transformer_state_dict_from_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original Wan2.1 DiT state dict (with or without ``model.diffusion_model.``) to VideoDiT keys."""
    return rename_keys(strip_prefix(state, ORIGINAL_PREFIX), ORIGINAL_KEYS, reverse=True)


def transformer_state_dict_to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a VideoDiT state dict to original Wan2.1 keys (VideoX-Fun's for the camera adapter), unprefixed: the
    exact inverse of ``transformer_state_dict_from_original``."""
    return rename_keys(state, ORIGINAL_KEYS)


def camera_adapter_config(state: Mapping[str, torch.Tensor], cfg: Optional[Mapping] = None) -> dict:
    """``camera_channels`` / ``camera_downscale`` of (VideoDiT-keyed) weights; empty without a camera adapter.

    The adapter's first convolution takes ``camera_channels * downscale**2`` channels (VideoX-Fun:
    ``in_dim_control_adapter = shape[1] / ds**2``). The downscale is the VAE's spatial factor, 8 for Wan2.1, unless
    an original ``config.json`` says otherwise (``downscale_factor_control_adapter``); a stated
    ``in_dim_control_adapter`` must agree with the weights."""
    weight = state.get("camera_adapter.embed.weight")
    if weight is None:
        return {}
    cfg = cfg or {}
    downscale = int(cfg.get("downscale_factor_control_adapter", 8))
    folded = weight.shape[1]
    if folded % downscale**2:
        raise ValueError(f"the camera adapter takes {folded} channels, not a multiple of downscale^2 = {downscale**2}")
    channels = folded // downscale**2
    stated = cfg.get("in_dim_control_adapter")
    if stated is not None and cfg.get("add_control_adapter", True) and int(stated) != channels:
        raise ValueError(f"config.json says in_dim_control_adapter={stated} but the camera adapter's weights take "
                         f"{folded} = {channels} x {downscale}^2 channels")
    return dict(camera_channels=channels, camera_downscale=downscale)


def transformer_config_from_diffusers(cfg: Mapping) -> dict:
    """Map a diffusers ``WanTransformer3DModel`` config to VideoDiT arguments; unsupported options raise."""
    heads, head_dim = cfg.get("num_attention_heads", 40), cfg.get("attention_head_dim", 128)
    dim = heads * head_dim
    qk_norm = cfg.get("qk_norm", "rms_norm_across_heads")
    if qk_norm != "rms_norm_across_heads":
        raise ValueError(f"unsupported qk_norm={qk_norm!r}: VideoDiT implements Wan's 'rms_norm_across_heads'")
    image_dim, added_kv = cfg.get("image_dim"), cfg.get("added_kv_proj_dim")
    if (image_dim is None) != (added_kv is None) or added_kv not in (None, dim):
        raise ValueError(
            f"unsupported image conditioning: image_dim={image_dim}, added_kv_proj_dim={added_kv} "
            f"(Wan I2V sets both, with added_kv_proj_dim equal to the width {dim})"
        )
    return dict(
        patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
        num_heads=heads,
        dim=dim,
        in_channels=cfg.get("in_channels", 16),
        out_channels=cfg.get("out_channels") or cfg.get("in_channels", 16),
        text_dim=cfg.get("text_dim", 4096),
        freq_dim=cfg.get("freq_dim", 256),
        ffn_dim=cfg.get("ffn_dim", 13824),
        num_layers=cfg.get("num_layers", 40),
        cross_attn_norm=cfg.get("cross_attn_norm", True),
        eps=cfg.get("eps", 1e-6),
        image_dim=image_dim,
        pos_embed_seq_len=cfg.get("pos_embed_seq_len"),
        rope_max_seq_len=cfg.get("rope_max_seq_len", 1024),
    )


def transformer_config_to_diffusers(cfg: Mapping) -> dict:
    """Map VideoDiT arguments to a diffusers ``WanTransformer3DModel`` config (for export). diffusers has no camera
    adapter, so a camera model (``camera_channels`` set) is a ``ValueError``."""
    if cfg.get("camera_channels"):
        raise ValueError(
            "diffusers has no Fun-Control-Camera transformer (no camera adapter in WanTransformer3DModel); keep this "
            "model in videogen's format (save_pretrained) or write original Wan keys (transformer_state_dict_to_original)"
        )
    return {
        "_class_name": "WanTransformer3DModel",
        "patch_size": list(cfg["patch_size"]),
        "num_attention_heads": cfg["num_heads"],
        "attention_head_dim": cfg["dim"] // cfg["num_heads"],
        "in_channels": cfg["in_channels"],
        "out_channels": cfg["out_channels"],
        "text_dim": cfg["text_dim"],
        "freq_dim": cfg["freq_dim"],
        "ffn_dim": cfg["ffn_dim"],
        "num_layers": cfg["num_layers"],
        "cross_attn_norm": cfg["cross_attn_norm"],
        "qk_norm": "rms_norm_across_heads",
        "eps": cfg["eps"],
        "image_dim": cfg["image_dim"],
        "added_kv_proj_dim": cfg["dim"] if cfg["image_dim"] else None,
        "rope_max_seq_len": cfg["rope_max_seq_len"],
        "pos_embed_seq_len": cfg["pos_embed_seq_len"],
    }


# Every public Wan2.1 DiT uses 128-wide heads: 1.3B (width 1536, 12 heads) and 14B (width 5120, 40 heads). For those
# widths the head count follows from the weights' shapes; for any other it cannot be read from the weights (the q/k
# RMSNorms span all heads), so it must be given.
PUBLIC_WAN_HEADS = {1536: 12, 5120: 40}


def transformer_config_from_state_dict(
    state: Mapping[str, torch.Tensor], num_heads: Optional[int] = None, original_config: Optional[Mapping] = None
) -> dict:
    """Infer VideoDiT arguments from (VideoDiT-keyed) weights.

    Everything but the head count follows from the tensor shapes (the camera adapter's, see
    ``camera_adapter_config``, which reads ``original_config`` for a non-default downscale). The head count is ``num_heads`` if given, else
    that of the public Wan2.1 model of this width (12 at 1536, 40 at 5120); any other width without ``num_heads``
    is a ``ValueError``, because a guessed head count gives wrong outputs without a word."""
    w = state["patch_embedding.weight"]  # [dim, in, pt, ph, pw]
    dim, in_channels, patch = w.shape[0], w.shape[1], tuple(w.shape[2:])
    if num_heads is None:
        if dim not in PUBLIC_WAN_HEADS:
            raise ValueError(
                f"cannot tell num_heads for a DiT of width {dim}: the weights do not determine it, and only the "
                f"public Wan2.1 widths ({', '.join(f'{d}: {h} heads' for d, h in PUBLIC_WAN_HEADS.items())}) have a "
                "known value. Put the release's own config.json (with num_heads, or num_attention_heads for "
                "diffusers) beside the weights, or pass num_heads= (VideoDiT.from_wan(path, num_heads=N))"
            )
        num_heads = PUBLIC_WAN_HEADS[dim]
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide the width {dim} of these weights")
    num_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    img = state.get("img_emb.proj.0.weight")
    pos = state.get("img_emb.emb_pos")
    return dict(
        patch_size=patch,
        num_heads=num_heads,
        dim=dim,
        in_channels=in_channels,
        out_channels=state["head.head.weight"].shape[0] // (patch[0] * patch[1] * patch[2]),
        text_dim=state["text_embedding.0.weight"].shape[1],
        freq_dim=state["time_embedding.0.weight"].shape[1],
        ffn_dim=state["blocks.0.ffn.0.weight"].shape[0],
        num_layers=num_layers,
        cross_attn_norm="blocks.0.norm_cross.weight" in state,
        image_dim=None if img is None else img.shape[0],
        pos_embed_seq_len=None if pos is None else pos.shape[1],
        **camera_adapter_config(state, original_config),
    )


def _original_config_facts(cfg: Optional[Mapping]) -> dict:
    """The facts an original Wan ``config.json`` adds to what the weights' shapes tell (heads, eps)."""
    if not cfg:
        return {}
    facts = {}
    if "num_heads" in cfg:
        facts["num_heads"] = cfg["num_heads"]
    if "eps" in cfg:
        facts["eps"] = cfg["eps"]
    return facts


def cast_keeping_fp32(model: torch.nn.Module, dtype: Optional[torch.dtype]) -> torch.nn.Module:
    """Cast a model to ``dtype`` but keep the modules listed in ``_keep_in_fp32_modules`` in fp32."""
    if dtype is None:
        return model
    model.to(dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, param in model.named_parameters():
        if any(part in keep for part in name.split(".")):
            param.data = param.data.float()
    return model


def load_wan_transformer(
    path: str | os.PathLike, model_cls, torch_dtype: Optional[torch.dtype] = None, num_heads: Optional[int] = None
):
    """Load a Wan2.1 DiT into ``model_cls`` (``VideoDiT``; the model passes itself, so convert/ never imports
    models/), detecting the layout.

    ``path`` may be: a videogen model directory (``save_pretrained``), a diffusers ``WanTransformer3DModel``
    directory (config.json + safetensors, sharded or not), or an original Wan2.1 checkpoint (a safetensors/pth
    file or a directory of shards, keys with or without ``model.diffusion_model.``, original ``config.json``
    optional). VideoX-Fun's Fun-Control-Camera checkpoints (original keys plus ``control_adapter.*``) are told
    from the keys and load with the camera adapter (``camera_channels`` from its weights). Without a config the head count comes from ``num_heads`` or, for the public Wan2.1 widths only,
    from the width (see ``transformer_config_from_state_dict``). A ``num_heads`` that contradicts the config is
    an error. Loading is strict: a missing, unexpected or mis-shaped key raises ``ValueError``.
    """
    from accelerate import init_empty_weights

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no Wan transformer checkpoint at {path}")
    cfg = read_config(path)
    if cfg is not None and cfg.get("_class_name") == model_cls.__name__:
        model = model_cls.from_pretrained(path)
        _check_heads(model.config.num_heads, num_heads, path)
        return cast_keeping_fp32(model, torch_dtype)

    raw = strip_prefix(load_state_dict(path), ORIGINAL_PREFIX)
    if _is_diffusers_layout(raw):
        state = transformer_state_dict_from_diffusers(raw)
        if cfg is not None and "num_attention_heads" in cfg:
            config = {**transformer_config_from_diffusers(cfg), **camera_adapter_config(state)}
            _check_heads(config["num_heads"], num_heads, path)
        else:
            config = transformer_config_from_state_dict(state, num_heads)
    else:
        state = transformer_state_dict_from_original(raw)
        if "patch_embedding.weight" not in state:
            raise ValueError(f"{path} holds no Wan DiT weights (no patch_embedding.weight)")
        facts = _original_config_facts(cfg)
        if "num_heads" in facts:
            _check_heads(facts["num_heads"], num_heads, path)
        config = {**transformer_config_from_state_dict(state, facts.get("num_heads", num_heads), cfg), **facts}
    with init_empty_weights():
        model = model_cls(**config)
    load_strict(model, state, source=str(path), assign=True)
    return cast_keeping_fp32(model.eval(), torch_dtype)


def _check_heads(found: int, given: Optional[int], path) -> None:
    """A ``num_heads`` argument must agree with the head count a checkpoint's config states."""
    if given is not None and given != found:
        raise ValueError(f"num_heads={given} contradicts the config beside {path}, which says {found}")


def save_diffusers_transformer(model, directory: str | os.PathLike) -> None:
    """Write ``model`` as a diffusers ``WanTransformer3DModel`` directory (config.json + safetensors)."""
    from safetensors.torch import save_file

    config = transformer_config_to_diffusers(model.config)  # refuses what diffusers cannot load, before writing
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in transformer_state_dict_to_diffusers(model.state_dict()).items()}
    save_file(state, str(directory / "diffusion_pytorch_model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config, indent=2))
