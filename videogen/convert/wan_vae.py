"""Wan2.1 VAE checkpoints -> CausalVideoVAE: key tables for diffusers' ``AutoencoderKLWan`` (both ways) and for
the original ``Wan2.1_VAE.pth``, the config mapping, and ``load_wan_vae`` which detects the format.

Our module tree nests what both public formats keep flat:

    ours                                   diffusers                              original (Wan2.1_VAE.pth)
    encoder.stages.s.resnets.j.*           encoder.down_blocks.<s*(R+1)+j>.*      encoder.downsamples.<s*(R+1)+j>.residual.{0,2,3,6}
    encoder.stages.s.resample.conv         encoder.down_blocks.<s*(R+1)+R>.resample.1   (same flat index)
    decoder.stages.s.resnets.j.*           decoder.up_blocks.s.resnets.j.*        decoder.upsamples.<s*(R+2)+j>.*
    decoder.stages.s.resample.conv         decoder.up_blocks.s.upsamplers.0.resample.1  decoder.upsamples.<s*(R+2)+R+1>.resample.1
    {en,de}coder.mid.{resnets.0,attention,resnets.1}  mid_block.{resnets.0,attentions.0,resnets.1}  middle.{0,1,2}
    {en,de}coder.{norm_out,conv_out}       same                                   head.{0,2}
    quant_conv / post_quant_conv           same                                   conv1 / conv2

R = ``num_res_blocks``; the flat indices are derived from the config, never hard-coded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

from videogen.convert.state_dict import load_state_dict, load_strict, read_config, rename_keys, weight_files

ORIGINAL_FILENAME = "Wan2.1_VAE.pth"

# diffusers AutoencoderKLWan config name -> ours
_CONFIG_NAMES = {
    "base_dim": "base_dim",
    "z_dim": "z_dim",
    "dim_mult": "dim_mult",
    "num_res_blocks": "num_res_blocks",
    "attn_scales": "attn_scales",
    "temperal_downsample": "temporal_downsample",
    "dropout": "dropout",
    "latents_mean": "latents_mean",
    "latents_std": "latents_std",
}
# diffusers options that select Wan2.2 or other variants: the values we support.
_SUPPORTED_ONLY = {"is_residual": (False,), "patch_size": (None, 1), "in_channels": (3,), "out_channels": (3,)}
# diffusers options that are derived from the architecture here.
_DERIVED = {"scale_factor_temporal", "scale_factor_spatial"}


def _layout(config: Mapping) -> tuple[int, int]:
    """(number of stages, residual blocks per encoder stage) of a config (ours or diffusers')."""
    return len(config["dim_mult"]), int(config["num_res_blocks"])


# ------------------------------------------------------------------------------------------ key tables


def diffusers_key_table(num_stages: int, num_res_blocks: int) -> list[tuple[str, str]]:
    """(ours, diffusers) key templates for a VAE with ``num_stages`` stages of ``num_res_blocks`` blocks."""
    r = num_res_blocks
    table = []
    for s in range(num_stages):
        for j in range(r):
            flat = s * (r + 1) + j
            table += [
                (f"encoder.stages.{s}.resnets.{j}.shortcut.", f"encoder.down_blocks.{flat}.conv_shortcut."),
                (f"encoder.stages.{s}.resnets.{j}.", f"encoder.down_blocks.{flat}."),
            ]
        table += [
            (f"encoder.stages.{s}.resample.conv.", f"encoder.down_blocks.{s * (r + 1) + r}.resample.1."),
            (f"encoder.stages.{s}.resample.time_conv.", f"encoder.down_blocks.{s * (r + 1) + r}.time_conv."),
        ]
    table += [
        ("decoder.stages.{s}.resnets.{j}.shortcut.", "decoder.up_blocks.{s}.resnets.{j}.conv_shortcut."),
        ("decoder.stages.{s}.resnets.{j}.", "decoder.up_blocks.{s}.resnets.{j}."),
        ("decoder.stages.{s}.resample.conv.", "decoder.up_blocks.{s}.upsamplers.0.resample.1."),
        ("decoder.stages.{s}.resample.time_conv.", "decoder.up_blocks.{s}.upsamplers.0.time_conv."),
    ]
    for part in ("encoder", "decoder"):
        table += [
            (f"{part}.mid.resnets.", f"{part}.mid_block.resnets."),
            (f"{part}.mid.attention.", f"{part}.mid_block.attentions.0."),
        ]
    return table  # conv_in, norm_out, conv_out, quant_conv, post_quant_conv keep their names


def _original_resblock(ours: str, theirs: str) -> list[tuple[str, str]]:
    inner = [("norm1.", "residual.0."), ("conv1.", "residual.2."), ("norm2.", "residual.3."), ("conv2.", "residual.6.")]
    return [(ours + a, theirs + b) for a, b in inner + [("shortcut.", "shortcut.")]]


def original_key_table(num_stages: int, num_res_blocks: int) -> list[tuple[str, str]]:
    """(ours, original Wan2.1_VAE.pth) key templates; the flat ``downsamples``/``upsamples`` indices follow
    from the layout (R+1 entries per encoder stage, R+2 per decoder stage, the resample last)."""
    r = num_res_blocks
    table = [("quant_conv.", "conv1."), ("post_quant_conv.", "conv2.")]
    for s in range(num_stages):
        for j in range(r):
            table += _original_resblock(f"encoder.stages.{s}.resnets.{j}.", f"encoder.downsamples.{s * (r + 1) + j}.")
        table += [
            (f"encoder.stages.{s}.resample.conv.", f"encoder.downsamples.{s * (r + 1) + r}.resample.1."),
            (f"encoder.stages.{s}.resample.time_conv.", f"encoder.downsamples.{s * (r + 1) + r}.time_conv."),
        ]
        for j in range(r + 1):
            table += _original_resblock(f"decoder.stages.{s}.resnets.{j}.", f"decoder.upsamples.{s * (r + 2) + j}.")
        table += [
            (f"decoder.stages.{s}.resample.conv.", f"decoder.upsamples.{s * (r + 2) + r + 1}.resample.1."),
            (f"decoder.stages.{s}.resample.time_conv.", f"decoder.upsamples.{s * (r + 2) + r + 1}.time_conv."),
        ]
    for part in ("encoder", "decoder"):
        table += [(f"{part}.conv_in.", f"{part}.conv1."), (f"{part}.mid.attention.", f"{part}.middle.1.")]
        table += _original_resblock(f"{part}.mid.resnets.0.", f"{part}.middle.0.")
        table += _original_resblock(f"{part}.mid.resnets.1.", f"{part}.middle.2.")
        table += [(f"{part}.norm_out.", f"{part}.head.0."), (f"{part}.conv_out.", f"{part}.head.2.")]
    return table


# ------------------------------------------------------------------------------------------ state dicts


def _layout_from_diffusers_keys(state: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    stages = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    resnets = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.up_blocks\.0\.resnets\.(\d+)\.", k))}
    if not stages or not resnets:
        raise ValueError("not a diffusers AutoencoderKLWan state dict: no decoder.up_blocks.*.resnets.* keys")
    return max(stages) + 1, max(resnets)  # the decoder has num_res_blocks + 1 resnets per stage


def _layout_from_our_keys(state: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    stages = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.stages\.(\d+)\.", k))}
    resnets = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.stages\.0\.resnets\.(\d+)\.", k))}
    if not stages or not resnets:
        raise ValueError("not a CausalVideoVAE state dict: no encoder.stages.*.resnets.* keys")
    return max(stages) + 1, max(resnets) + 1


def vae_state_dict_from_diffusers(state: Mapping[str, torch.Tensor], config: Optional[Mapping] = None) -> dict:
    """Rename a diffusers ``AutoencoderKLWan`` state dict to ours (layout from ``config`` or from the keys)."""
    layout = _layout(config) if config is not None else _layout_from_diffusers_keys(state)
    return rename_keys(state, diffusers_key_table(*layout), reverse=True)


def vae_state_dict_to_diffusers(state: Mapping[str, torch.Tensor], config: Optional[Mapping] = None) -> dict:
    """Rename our state dict to diffusers ``AutoencoderKLWan`` keys (the exact inverse of the above)."""
    layout = _layout(config) if config is not None else _layout_from_our_keys(state)
    return rename_keys(state, diffusers_key_table(*layout))


def vae_state_dict_from_original(state: Mapping[str, torch.Tensor], config: Mapping) -> dict:
    """Rename an original ``Wan2.1_VAE.pth`` state dict to ours, for the layout in ``config`` (ours)."""
    return rename_keys(state, original_key_table(*_layout(config)), reverse=True)


# ------------------------------------------------------------------------------------------ configs


def vae_config_from_diffusers(config: Mapping) -> dict:
    """Our ``CausalVideoVAE`` kwargs from a diffusers ``AutoencoderKLWan`` config; Wan2.2 options
    (``is_residual=True``, ``patch_size``, a separate ``decoder_base_dim``, other channel counts) are a ValueError."""
    ours, unknown = {}, []
    for key, value in config.items():
        if key.startswith("_") or key in _DERIVED:
            continue
        if key in _CONFIG_NAMES:
            ours[_CONFIG_NAMES[key]] = value
        elif key in _SUPPORTED_ONLY:
            if value not in _SUPPORTED_ONLY[key]:
                raise ValueError(
                    f"unsupported VAE option {key}={value!r}: CausalVideoVAE implements the Wan2.1 VAE only "
                    f"(supported: {', '.join(map(repr, _SUPPORTED_ONLY[key]))}); Wan2.2 VAEs are not supported"
                )
        elif key == "decoder_base_dim":
            if value is not None and value != config.get("base_dim", 96):
                raise ValueError(f"unsupported VAE option decoder_base_dim={value} (must equal base_dim or be None)")
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown AutoencoderKLWan config option(s): {', '.join(sorted(unknown))}")
    return ours


# The architecture of the public Wan2.1 VAE (Wan2.1_VAE.pth): the one whose latent statistics are known without a
# config (the original release keeps them in code, not in the file; CausalVideoVAE's defaults are those values).
WAN21_VAE_ARCHITECTURE = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                              temporal_downsample=[False, True, True])


def vae_config_from_original(
    state: Mapping[str, torch.Tensor], latents_mean: Optional[Sequence[float]] = None,
    latents_std: Optional[Sequence[float]] = None,
) -> dict:
    """Infer our config from the tensor shapes of an original Wan2.1 VAE state dict (base_dim, z_dim, stages,
    blocks, temporal downsampling).

    The latent statistics are not in the weights: they are ``latents_mean``/``latents_std`` if given, else Wan2.1's
    own for the public Wan2.1 VAE architecture; any other architecture without them is a ``ValueError`` (a guess
    would silently mis-scale every latent)."""
    try:
        base_dim = state["encoder.conv1.weight"].shape[0]
        z_dim = state["conv2.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"not an original Wan2.1 VAE state dict: missing {err}") from err
    resamples = sorted(int(m.group(1)) for k in state if (m := re.match(r"encoder\.downsamples\.(\d+)\.resample\.1\.weight$", k)))
    r = resamples[0] if resamples else len({k.split(".")[2] for k in state if k.startswith("encoder.downsamples.")})
    stages = len(resamples) + 1
    dim_mult = [state[f"encoder.downsamples.{s * (r + 1)}.residual.2.weight"].shape[0] // base_dim for s in range(stages)]
    temporal = [f"encoder.downsamples.{i}.time_conv.weight" in state for i in resamples]
    config = dict(base_dim=base_dim, z_dim=z_dim, dim_mult=dim_mult, num_res_blocks=r, temporal_downsample=temporal)
    if (latents_mean is None) != (latents_std is None):
        raise ValueError("give both latents_mean and latents_std, or neither")
    if latents_mean is not None:
        for name, values in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if len(values) != z_dim:
                raise ValueError(f"{name} has {len(values)} values; these weights have z_dim={z_dim} latent channels")
        config.update(latents_mean=list(map(float, latents_mean)), latents_std=list(map(float, latents_std)))
    elif config != WAN21_VAE_ARCHITECTURE:
        raise ValueError(
            f"these VAE weights are not the public Wan2.1 VAE (inferred {config}), so their latent statistics are "
            "unknown: the weights do not hold them. Pass latents_mean= and latents_std= (z_dim values each) to "
            "CausalVideoVAE.from_wan, or load a directory with its config.json"
        )
    return config


# ------------------------------------------------------------------------------------------ loading


def _is_ours(config: Optional[Mapping]) -> bool:
    return config is not None and config.get("_class_name") == "CausalVideoVAE"


def load_wan_vae(
    path: str | os.PathLike,
    model_cls,
    torch_dtype: Optional[torch.dtype] = None,
    config: Optional[Mapping] = None,
    latents_mean: Optional[Sequence[float]] = None,
    latents_std: Optional[Sequence[float]] = None,
):
    """Load a Wan2.1 VAE from ``path`` into ``model_cls`` (``CausalVideoVAE``; the model passes itself, so convert/
    never imports models/), in eval mode, detecting the format:

    * a diffusers ``AutoencoderKLWan`` directory (``config.json`` + safetensors, possibly sharded with an index),
      or a diffusers model root with a ``vae/`` subfolder;
    * an original ``Wan2.1_VAE.pth`` file, or a directory holding one (config inferred from tensor shapes
      unless ``config`` (ours) is given; the latent statistics are ``latents_mean``/``latents_std``, which only
      the public Wan2.1 VAE may omit: see ``vae_config_from_original``);
    * a directory written by ``CausalVideoVAE.save_pretrained``.

    A missing path is a FileNotFoundError; missing, unexpected or mis-shaped keys are a ValueError listing them.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Wan VAE checkpoint path does not exist: {path}")
    if path.is_dir() and not (path / ORIGINAL_FILENAME).exists() and read_config(path) is None:
        if read_config(path / "vae") is not None:
            path = path / "vae"
    if path.is_dir() and (path / ORIGINAL_FILENAME).exists():
        path = path / ORIGINAL_FILENAME
    found = read_config(path)

    if _is_ours(found):
        model = model_cls.from_pretrained(str(path), torch_dtype=torch_dtype)
        return model.eval()
    if found is not None:  # diffusers directory
        our_config = dict(config) if config is not None else vae_config_from_diffusers(found)
        state = vae_state_dict_from_diffusers(load_state_dict(path), our_config)
    else:  # original checkpoint file (or a directory of one)
        files = weight_files(path)
        if len(files) != 1:
            raise ValueError(f"expected one Wan2.1 VAE weights file in {path}; found {[f.name for f in files]}")
        raw = load_state_dict(files[0])
        if "encoder.conv1.weight" not in raw:
            raise ValueError(
                f"{files[0]} is not an original Wan2.1 VAE checkpoint (no 'encoder.conv1.weight'); "
                "for diffusers weights pass the directory that holds config.json"
            )
        our_config = dict(config) if config is not None else vae_config_from_original(raw, latents_mean, latents_std)
        state = vae_state_dict_from_original(raw, our_config)

    model = model_cls(**our_config)
    load_strict(model, state, source=str(path))
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    return model.eval()
