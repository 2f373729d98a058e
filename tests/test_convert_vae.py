"""Wan VAE checkpoint conversion: original Wan2.1_VAE.pth keys, diffusers directories (plain and sharded),
round trips, strict loading errors, config mapping."""

import json
import re

import pytest
import torch
from _oracle import perturb_parameters
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from safetensors.torch import load_file, save_file

from videogen.convert.wan_vae import (
    vae_config_from_diffusers,
    vae_state_dict_from_diffusers,
    vae_state_dict_to_diffusers,
)
from videogen.models.vae import CausalVideoVAE

TINY = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True],
            latents_mean=[0.0] * 4, latents_std=[1.0] * 4)  # fmt: skip


def reference(**overrides):
    torch.manual_seed(0)
    return perturb_parameters(AutoencoderKLWan(**{**TINY, **overrides})).eval()


RESBLOCK = {"norm1.gamma": "residual.0.gamma", "conv1.": "residual.2.", "norm2.gamma": "residual.3.gamma",
            "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}  # fmt: skip


def _resblock(rest):
    for new, old in RESBLOCK.items():
        if rest.startswith(new):
            return old + rest[len(new):]
    raise AssertionError(rest)


def original_from_diffusers(sd, num_res_blocks):
    """The original Wan2.1_VAE.pth key scheme, written from the notes' key map (independently of our converter):
    flat encoder.downsamples.i (index kept), flat decoder.upsamples (R+1 resnets then the resample per stage),
    middle.{0,1,2}, head.{0,2}, top-level conv1/conv2."""
    r, out = num_res_blocks, {}
    for key, value in sd.items():
        if key.startswith(("quant_conv.", "post_quant_conv.")):
            new = key.replace("post_quant_conv.", "conv2.") if key.startswith("post") else key.replace("quant_conv.", "conv1.")
        elif m := re.match(r"(encoder|decoder)\.conv_in\.(.*)", key):
            new = f"{m[1]}.conv1.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", key):
            new = f"{m[1]}.middle.{2 * int(m[2])}.{_resblock(m[3])}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            new = f"{m[1]}.middle.1.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.norm_out\.(.*)", key):
            new = f"{m[1]}.head.0.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.conv_out\.(.*)", key):
            new = f"{m[1]}.head.2.{m[2]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.(resample|time_conv)(.*)", key):
            new = f"encoder.downsamples.{m[1]}.{m[2]}{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.(.*)", key):
            new = f"encoder.downsamples.{m[1]}.{_resblock(m[2])}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.upsamples.{int(m[1]) * (r + 2) + int(m[2])}.{_resblock(m[3])}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
            new = f"decoder.upsamples.{int(m[1]) * (r + 2) + r + 1}.{m[2]}"
        else:
            raise AssertionError(f"unmapped diffusers key {key}")
        assert new not in out
        out[new] = value
    return out


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module")
def diffusers_dir(tmp_path_factory):
    ref = reference()
    path = tmp_path_factory.mktemp("vae_diffusers")
    ref.save_pretrained(path)
    return ref, path


def test_original_checkpoint_loads_like_diffusers(diffusers_dir, tmp_path):
    ref, path = diffusers_dir
    original = original_from_diffusers(ref.state_dict(), num_res_blocks=2)
    assert "decoder.upsamples.14.residual.6.weight" in original and "decoder.upsamples.7.time_conv.weight" in original
    assert "decoder.upsamples.11.resample.1.weight" in original and "decoder.upsamples.11.time_conv.weight" not in original
    # validate the test's builder: diffusers' own converter maps it back exactly
    back = convert_wan_vae_to_diffusers(original)
    assert back.keys() == ref.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())

    torch.save(original, tmp_path / "Wan2.1_VAE.pth")
    from_dir = CausalVideoVAE.from_wan(path)
    stats = dict(latents_mean=TINY["latents_mean"], latents_std=TINY["latents_std"])  # not in the weights
    for source in (tmp_path / "Wan2.1_VAE.pth", tmp_path):  # the file, or a directory holding it
        from_pth = CausalVideoVAE.from_wan(source, **stats)
        assert from_pth.config.base_dim == 8 and from_pth.config.z_dim == 4  # inferred from the tensor shapes
        assert list(from_pth.config.temporal_downsample) == [False, True, True]
        assert_same_weights(from_pth, from_dir)


def test_original_flat_indexing_follows_the_config(tmp_path):
    """num_res_blocks=1: 2 decoder resnets + 1 resample per stage, so resamples sit at flat 2, 5, 8."""
    ref = reference(num_res_blocks=1, temperal_downsample=[True, False, True])
    original = original_from_diffusers(ref.state_dict(), num_res_blocks=1)
    assert {"decoder.upsamples.2.time_conv.weight", "decoder.upsamples.8.time_conv.weight"} <= original.keys()
    torch.save(original, tmp_path / "vae.pth")
    ours = CausalVideoVAE.from_wan(tmp_path / "vae.pth", latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    assert ours.config.num_res_blocks == 1 and list(ours.config.temporal_downsample) == [True, False, True]
    ref.save_pretrained(tmp_path / "diffusers")
    assert_same_weights(ours, CausalVideoVAE.from_wan(tmp_path / "diffusers"))
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert (ours.encode(x).latent_dist.mode() - ref.encode(x).latent_dist.mode()).abs().max() <= 1e-4


def test_diffusers_round_trip_is_bit_exact(diffusers_dir):
    ref, path = diffusers_dir
    ours = CausalVideoVAE.from_wan(path)
    back = ours.to_diffusers_state_dict()
    assert back.keys() == ref.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
    again = vae_state_dict_from_diffusers(vae_state_dict_to_diffusers(ours.state_dict()))
    assert again.keys() == ours.state_dict().keys()
    assert all(torch.equal(again[k], v) for k, v in ours.state_dict().items())


def test_sharded_diffusers_dir_loads(diffusers_dir, tmp_path):
    ref, path = diffusers_dir
    ref.save_pretrained(tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert_same_weights(CausalVideoVAE.from_wan(tmp_path), CausalVideoVAE.from_wan(path))


def test_torch_dtype(diffusers_dir):
    _, path = diffusers_dir
    assert all(p.dtype == torch.bfloat16 for p in CausalVideoVAE.from_wan(path, torch_dtype=torch.bfloat16).parameters())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
         r"missing keys \[1\]: decoder\.stages\.1\.resnets\.0\.shortcut\.weight"),
        (lambda sd: sd.__setitem__("encoder.extra.weight", torch.zeros(2)), r"unexpected keys \[1\]: encoder\.extra\.weight"),
        (lambda sd: sd.__setitem__("encoder.conv_in.bias", torch.zeros(9)),
         r"mis-shaped keys \[1\]: encoder\.conv_in\.bias \(checkpoint \(9,\), model \(8,\)\)"),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_bad_checkpoint_lists_the_keys(diffusers_dir, tmp_path, edit, message):
    ref, path = diffusers_dir
    sd = load_file(path / "diffusion_pytorch_model.safetensors")
    edit(sd)
    save_file(sd, tmp_path / "diffusion_pytorch_model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(ValueError, match=message):
        CausalVideoVAE.from_wan(tmp_path)


def test_bad_original_checkpoint_lists_the_keys(diffusers_dir, tmp_path):
    ref, _ = diffusers_dir
    original = original_from_diffusers(ref.state_dict(), num_res_blocks=2)
    del original["decoder.middle.1.proj.bias"]
    torch.save(original, tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(ValueError, match=r"missing keys \[1\]: decoder\.mid\.attention\.proj\.bias"):
        CausalVideoVAE.from_wan(tmp_path, latents_mean=[0.0] * 4, latents_std=[1.0] * 4)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CausalVideoVAE.from_wan(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        CausalVideoVAE.from_wan(tmp_path)  # an empty directory: no weights


def test_config_mapping():
    cfg = vae_config_from_diffusers(dict(AutoencoderKLWan(**TINY).config))
    assert cfg["temporal_downsample"] == [False, True, True] and cfg["base_dim"] == 8 and "temperal_downsample" not in cfg
    with pytest.raises(ValueError, match=r"unsupported VAE option is_residual=True.*Wan2\.2"):
        vae_config_from_diffusers({**TINY, "is_residual": True})
    with pytest.raises(ValueError, match=r"unsupported VAE option patch_size=2"):
        vae_config_from_diffusers({**TINY, "patch_size": 2})
    with pytest.raises(ValueError, match=r"decoder_base_dim=16"):
        vae_config_from_diffusers({**TINY, "decoder_base_dim": 16})
    with pytest.raises(ValueError, match=r"unknown AutoencoderKLWan config option\(s\): frobnicate"):
        vae_config_from_diffusers({**TINY, "frobnicate": 1})


def test_pipeline_root_with_vae_subfolder(diffusers_dir, tmp_path):
    ref, path = diffusers_dir
    ref.save_pretrained(tmp_path / "vae")
    (tmp_path / "model_index.json").write_text("{}")
    assert_same_weights(CausalVideoVAE.from_wan(tmp_path), CausalVideoVAE.from_wan(path))


def test_latent_statistics_are_never_guessed(tmp_path):
    """The original Wan2.1_VAE.pth holds no latent statistics: only the public Wan2.1 architecture gets Wan's own,
    any other needs them given (both, z_dim values each)."""
    from accelerate import init_empty_weights

    from videogen.convert.wan_vae import original_key_table, vae_config_from_original
    from videogen.convert.state_dict import rename_keys

    with init_empty_weights():  # the public Wan2.1 VAE's tensor shapes, without allocating them
        wan = CausalVideoVAE()
    config = vae_config_from_original(rename_keys(wan.state_dict(), original_key_table(4, 2)))
    assert config == dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                          temporal_downsample=[False, True, True])  # -> CausalVideoVAE's defaults: Wan's statistics
    assert CausalVideoVAE(**config).config.latents_mean == wan.config.latents_mean

    original = original_from_diffusers(reference().state_dict(), num_res_blocks=2)
    torch.save(original, tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(ValueError, match="not the public Wan2.1 VAE.*latents_mean= and latents_std="):
        CausalVideoVAE.from_wan(tmp_path)
    with pytest.raises(ValueError, match="both"):
        CausalVideoVAE.from_wan(tmp_path, latents_mean=[0.0] * 4)
    with pytest.raises(ValueError, match="latents_std has 3 values.*z_dim=4"):
        CausalVideoVAE.from_wan(tmp_path, latents_mean=[0.0] * 4, latents_std=[1.0] * 3)
    loaded = CausalVideoVAE.from_wan(tmp_path, latents_mean=[0.5] * 4, latents_std=[2.0] * 4)
    assert list(loaded.config.latents_mean) == [0.5] * 4 and list(loaded.config.latents_std) == [2.0] * 4
