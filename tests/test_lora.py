"""LoRA files of every public Wan key scheme: reading (against weights merged by hand from the notes' formula),
diffusers' own loader as the oracle where it loads a scheme correctly, deltas, several adapters, per-block
weights, writers and their round trips, and the errors for bad files."""

import json
import math

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from _oracle import perturb_parameters
from videogen.convert.lora import (
    SCHEMES,
    lora_info,
    lora_state_dict,
    read_lora,
    save_lora,
)
from videogen.models import VideoDiT
from videogen.models.lora import add_lora, delete_lora, set_lora_weights, unload_lora

CFG = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
           text_dim=16, freq_dim=32, ffn_dim=32, num_layers=3, rope_max_seq_len=32)
# (original Wan name, diffusers name) of the modules the test LoRA covers in each block (notes, section 0)
MODULES = [("self_attn.q", "attn1.to_q"), ("self_attn.k", "attn1.to_k"), ("self_attn.v", "attn1.to_v"),
           ("self_attn.o", "attn1.to_out.0"), ("cross_attn.q", "attn2.to_q"), ("cross_attn.k", "attn2.to_k"),
           ("cross_attn.v", "attn2.to_v"), ("cross_attn.o", "attn2.to_out.0"), ("ffn.0", "ffn.net.0.proj"),
           ("ffn.2", "ffn.net.2")]


def reference(layers=3, seed=2):
    torch.manual_seed(0)
    return perturb_parameters(WanTransformer3DModel(**dict(CFG, num_layers=layers)), seed=seed).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("dit")
    ref = reference()
    ref.save_pretrained(path)
    return ref, path


def ours(path):
    return VideoDiT.from_wan(path).eval()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 4, 2, 4, 4, generator=g), torch.tensor([500.0]), torch.randn(1, 6, 16, generator=g))


def factors(model, rank=3, seed=0, blocks=(0, 1, 2), modules=MODULES):
    """Random LoRA factors {original name: (A [r, in], B [out, r], alpha)} sized for ``model`` (ours)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in blocks:
        for k, (orig, _) in enumerate(modules):
            layer = model.get_submodule(f"blocks.{i}.{orig}")
            r = rank + (k % 2)  # mixed ranks
            out[f"blocks.{i}.{orig}"] = (torch.randn(r, layer.in_features, generator=g) * 0.3,
                                         torch.randn(layer.out_features, r, generator=g) * 0.3,
                                         float(1 + (i + k) % 4))
    return out


def merged_by_hand(path, lora, scale=1.0, rslora=False):
    """The base model with W + scale * (alpha / r) * B @ A in every LoRA module: the published formula."""
    model = ours(path)
    with torch.no_grad():
        for name, (a, b, alpha) in lora.items():
            r = a.shape[0]
            layer = model.get_submodule(name)
            layer.weight += scale * (alpha / (math.sqrt(r) if rslora else r)) * (b @ a)
    return model


def diffusers_name(orig):
    block, rest = orig.split(".", 2)[1], orig.split(".", 2)[2]
    return f"blocks.{block}.{dict(MODULES)[rest]}"


# Every scheme written by the test from the notes' key tables, independently of videogen.convert.lora.
def write_scheme(scheme, lora):
    sd, meta = {}, {}
    for name, (a, b, alpha) in lora.items():
        r = a.shape[0]
        s = alpha / r
        flat = name.replace(".", "_")
        if scheme == "diffusers":  # alpha folded into B (diffusers writes scale 1 without metadata)
            sd[f"transformer.{diffusers_name(name)}.lora_A.weight"] = a
            sd[f"transformer.{diffusers_name(name)}.lora_B.weight"] = b * s
        elif scheme == "comfyui":
            sd[f"diffusion_model.{name}.lora_down.weight"], sd[f"diffusion_model.{name}.lora_up.weight"] = a, b
            sd[f"diffusion_model.{name}.alpha"] = torch.tensor(alpha)
        elif scheme == "comfyui-diffusers-names":
            sd[f"diffusion_model.{diffusers_name(name)}.lora_A.weight"] = a
            sd[f"diffusion_model.{diffusers_name(name)}.lora_B.weight"] = b * s
        elif scheme == "musubi":
            sd[f"lora_unet_{flat}.lora_down.weight"], sd[f"lora_unet_{flat}.lora_up.weight"] = a, b
            sd[f"lora_unet_{flat}.alpha"] = torch.tensor(alpha)
        elif scheme == "videox-fun":
            sd[f"lora_unet__{flat}.lora_down.weight"], sd[f"lora_unet__{flat}.lora_up.weight"] = a, b
            sd[f"lora_unet__{flat}.alpha"] = torch.tensor(alpha)
        elif scheme == "diffsynth":  # peft on native names, alpha = rank
            sd[f"{name}.lora_A.default.weight"], sd[f"{name}.lora_B.default.weight"] = a, b * s
        elif scheme == "peft":
            sd[f"base_model.model.{name}.lora_A.weight"], sd[f"base_model.model.{name}.lora_B.weight"] = a, b * s
        elif scheme == "original":
            sd[f"{name}.lora_down.weight"], sd[f"{name}.lora_up.weight"] = a, b
            sd[f"{name}.alpha"] = torch.tensor(alpha)
    return sd, meta


def forward(model, seed=0):
    with torch.no_grad():
        return model(*inputs(seed)).sample


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_equals_the_weights_merged_by_hand(models, tmp_path, scheme):
    _, path = models
    model = ours(path)
    lora = factors(model)
    sd, meta = write_scheme(scheme, lora)
    file = tmp_path / "lora.safetensors"
    save_file(sd, str(file), metadata=meta or None)
    parsed = read_lora(file)
    assert parsed.scheme == scheme and parsed.unmatched == []
    report = add_lora(model, parsed, "a")
    assert len(report.applied) == len(lora)
    expected = forward(merged_by_hand(path, lora))
    assert (forward(model) - expected).abs().max() <= 1e-5
    assert (forward(model) - forward(ours(path))).abs().max() > 1e-3  # the LoRA changes the output


def test_partial_files_metadata_alpha_and_rslora(models, tmp_path):
    """Attention-only, some blocks only (musubi include patterns; diffusers' converter crashes on them), alpha from
    diffusers' lora_adapter_metadata and from peft's adapter_config (rsLoRA: alpha / sqrt(r))."""
    _, path = models
    attn_only = factors(ours(path), rank=4, blocks=(1,), modules=MODULES[:4])
    attn_only = {k: (a[:4].contiguous(), b[:, :4].contiguous(), 2.0) for k, (a, b, _) in attn_only.items()}  # one rank for the metadata
    sd, _ = write_scheme("musubi", attn_only)
    model = ours(path)
    add_lora(model, read_lora(sd), "m")
    assert (forward(model) - forward(merged_by_hand(path, attn_only))).abs().max() <= 1e-5
    # diffusers' metadata: r 4, lora_alpha 2 -> scale 0.5 on unfolded factors
    sd = {f"transformer.{diffusers_name(n)}.lora_{p}.weight": t for n, (a, b, _) in attn_only.items()
          for p, t in (("A", a), ("B", b))}
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": 4, "transformer.lora_alpha": 2.0})}
    save_file(sd, str(tmp_path / "d.safetensors"), metadata=meta)
    model = ours(path)
    add_lora(model, read_lora(tmp_path / "d.safetensors"), "d")
    assert (forward(model) - forward(merged_by_hand(path, attn_only))).abs().max() <= 1e-5
    # peft save_pretrained: adapter_model.safetensors + adapter_config.json with use_rslora
    peft_dir = tmp_path / "peft"
    peft_dir.mkdir()
    save_file({f"base_model.model.{n}.lora_{p}.weight": t for n, (a, b, _) in attn_only.items()
               for p, t in (("A", a), ("B", b))}, str(peft_dir / "adapter_model.safetensors"))
    (peft_dir / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 2.0, "use_rslora": True}))
    model = ours(path)
    parsed = read_lora(peft_dir)
    assert parsed.rslora and parsed.scheme == "peft"
    add_lora(model, parsed, "p")
    assert (forward(model) - forward(merged_by_hand(path, attn_only, rslora=True))).abs().max() <= 1e-5


@pytest.mark.parametrize("scheme", ["diffusers", "comfyui", "musubi"])
def test_equals_diffusers_loader_where_it_loads(models, scheme):
    """The oracle: diffusers' WanPipeline.lora_state_dict + load_lora_adapter on the reference transformer."""
    from diffusers import WanPipeline

    ref_base, path = models
    model = ours(path)
    lora = factors(model)
    sd, _ = write_scheme(scheme, lora)
    ref = reference()
    converted = WanPipeline.lora_state_dict({k: v.clone() for k, v in sd.items()})
    ref.load_lora_adapter(converted, prefix="transformer", adapter_name="x")
    add_lora(model, read_lora(sd), "x")
    x, t, ctx = inputs()
    with torch.no_grad():
        expected = ref(x, t, ctx).sample
    assert (forward(model) - expected).abs().max() <= 1e-5


def test_full_weight_deltas_as_comfyui_applies_them(models):
    _, path = models
    model = ours(path)
    g = torch.Generator().manual_seed(5)
    q = model.blocks[0].self_attn.q
    d_w, d_b = torch.randn(q.weight.shape, generator=g) * 0.1, torch.randn(q.bias.shape, generator=g) * 0.1
    d_norm = torch.randn(model.blocks[1].norm_cross.weight.shape, generator=g) * 0.1
    d_mod = torch.randn(model.blocks[2].modulation.shape, generator=g) * 0.1
    new_o = torch.randn(model.blocks[0].cross_attn.o.weight.shape, generator=g) * 0.1
    sd = {"diffusion_model.blocks.0.self_attn.q.diff": d_w, "diffusion_model.blocks.0.self_attn.q.diff_b": d_b,
          "diffusion_model.blocks.1.norm3.diff": d_norm, "diffusion_model.blocks.2.diff_m": d_mod,
          "diffusion_model.blocks.0.cross_attn.o.set_weight": new_o}
    parsed = read_lora(sd)
    assert parsed.has_deltas() and lora_info(parsed)["deltas"]
    report = add_lora(model, parsed, "d")
    assert len(report.deltas) == 5
    by_hand = ours(path)
    with torch.no_grad():
        by_hand.blocks[0].self_attn.q.weight += d_w
        by_hand.blocks[0].self_attn.q.bias += d_b
        by_hand.blocks[1].norm_cross.weight += d_norm
        by_hand.blocks[2].modulation += d_mod
        by_hand.blocks[0].cross_attn.o.weight.copy_(new_o)
    assert (forward(model) - forward(by_hand)).abs().max() <= 1e-6
    set_lora_weights(model, ["d"], [0.5])  # deltas follow the adapter weight
    with torch.no_grad():
        assert torch.allclose(model.blocks[0].self_attn.q.weight, ours(path).blocks[0].self_attn.q.weight + 0.5 * d_w)
    unload_lora(model)
    assert (forward(model) - forward(ours(path))).abs().max() == 0  # exactly the base again


def test_two_adapters_weighted_fuse_unfuse_and_exact_per_block_weights(tmp_path):
    """Two adapters at 0.5 / 1.5 equal the weighted sum; fused equals unfused; a per-block weight for blocks.1 of
    a 12-block model leaves blocks 10 and 11 alone (diffusers' substring match zeroes them too)."""
    ref = reference(layers=12)
    ref.save_pretrained(tmp_path / "dit")
    path = tmp_path / "dit"
    model = ours(path)
    la, lb = factors(model, seed=1, blocks=range(12)), factors(model, seed=2, blocks=range(12))
    add_lora(model, read_lora(write_scheme("comfyui", la)[0]), "a")
    add_lora(model, read_lora(write_scheme("musubi", lb)[0]), "b")
    set_lora_weights(model, ["a", "b"], [0.5, 1.5])
    expected = merged_by_hand(path, la, 0.5)
    with torch.no_grad():
        for name, (a, b, alpha) in lb.items():
            expected.get_submodule(name).weight += 1.5 * alpha / a.shape[0] * (b @ a)
    out = forward(model)
    assert (out - forward(expected)).abs().max() <= 1e-5
    model.fuse_lora()
    assert (forward(model) - out).abs().max() <= 1e-5
    model.unfuse_lora()
    assert (forward(model) - out).abs().max() <= 1e-5
    # per-block: blocks.1 off, everything else at 1
    set_lora_weights(model, ["a"], [{"blocks.1": 0.0}])
    only = {k: v for k, v in la.items() if not k.startswith("blocks.1.")}
    assert (forward(model) - forward(merged_by_hand(path, only))).abs().max() <= 1e-5
    delete_lora(model, ["a"])
    assert model.__dict__["_lora_active"] == [] or "a" not in model.__dict__["_lora_active"]
    set_lora_weights(model, ["b"], [1.0])
    assert (forward(model) - forward(merged_by_hand(path, lb))).abs().max() <= 1e-5


@pytest.mark.parametrize("scheme", ["diffusers", "comfyui", "musubi"])
def test_writers_round_trip_and_diffusers_reads_ours(models, tmp_path, scheme):
    from diffusers import WanPipeline

    _, path = models
    model = ours(path)
    lora = factors(model)
    parsed = read_lora(write_scheme("comfyui", lora)[0])
    file = save_lora(parsed, tmp_path / f"{scheme}.safetensors", scheme)
    again = read_lora(file)
    assert again.scheme == scheme and set(again.modules) == set(parsed.modules)
    for name, m in parsed.modules.items():
        assert torch.allclose(again.modules[name].lora_delta(), m.lora_delta(), atol=1e-6), name
    add_lora(model, again, "r")
    assert (forward(model) - forward(merged_by_hand(path, lora))).abs().max() <= 1e-5
    state, meta = lora_state_dict(parsed, scheme)
    ref = reference()
    converted, metadata = WanPipeline.lora_state_dict(state, return_lora_metadata=True) if scheme == "diffusers" \
        else (WanPipeline.lora_state_dict(state), None)
    if scheme == "diffusers":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            converted, metadata = WanPipeline.lora_state_dict(str(file), return_lora_metadata=True)
    ref.load_lora_adapter(converted, prefix="transformer", adapter_name="r", metadata=metadata)
    x, t, ctx = inputs()
    with torch.no_grad():
        assert (ref(x, t, ctx).sample - forward(model)).abs().max() <= 1e-5


def test_bad_files_are_clear_errors(models, tmp_path):
    _, path = models
    with pytest.raises(ValueError, match="known schemes: diffusers, comfyui"):
        read_lora({"something.weird": torch.zeros(2)})
    with pytest.raises(ValueError, match="LoKr weights are not supported"):
        read_lora({"diffusion_model.blocks.0.self_attn.q.lokr_w1": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="empty"):
        read_lora({})
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="corrupt"):
        read_lora(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        read_lora(tmp_path / "missing.safetensors")
    # width mismatch: a LoRA made for a DiT of width 48 on one of width 24
    big = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(2, 48),
           "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(48, 2)}
    with pytest.raises(ValueError, match=r"does not fit this DiT at blocks\.0\.self_attn\.q.*width 48"):
        add_lora(ours(path), read_lora(big), "big")
    # keys that match nothing: an error listing them, or with strict=False a warning naming them
    lora = factors(ours(path), blocks=(0,), modules=MODULES[:1])
    sd, _ = write_scheme("comfyui", lora)
    sd["diffusion_model.blocks.7.self_attn.q.lora_down.weight"] = torch.zeros(2, 24)  # deeper than the model
    sd["diffusion_model.blocks.7.self_attn.q.lora_up.weight"] = torch.zeros(24, 2)
    sd["diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight"] = torch.zeros(2, 24)  # an I2V module on T2V
    sd["diffusion_model.blocks.0.cross_attn.k_img.lora_up.weight"] = torch.zeros(24, 2)
    sd["diffusion_model.blocks.0.frobnicate.lora_A.weight"] = torch.zeros(2, 2)
    parsed = read_lora(sd)
    assert parsed.unmatched == ["diffusion_model.blocks.0.frobnicate.lora_A.weight"]
    with pytest.raises(ValueError, match=r"3 LoRA keys/modules match nothing.*frobnicate.*blocks\.7.*k_img"):
        add_lora(ours(path), parsed, "x")
    model = ours(path)
    with pytest.warns(UserWarning, match="blocks.7.self_attn.q"):
        report = add_lora(model, parsed, "x", strict=False)
    assert len(report.applied) == 1 and len(report.skipped_modules) == 2
    with pytest.raises(ValueError, match="already loaded"):
        add_lora(model, read_lora(write_scheme("comfyui", lora)[0]), "x")
    with pytest.raises(ValueError, match="the diffusers scheme has no place for full-weight deltas"):
        lora_state_dict(read_lora({"diffusion_model.blocks.0.self_attn.q.diff": torch.zeros(24, 24)}), "diffusers")


def test_lora_info_names_the_base():
    sd = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(8, 1536),
          "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(1536, 8),
          "diffusion_model.blocks.0.self_attn.q.alpha": torch.tensor(4.0),
          "diffusion_model.blocks.3.ffn.0.lora_down.weight": torch.zeros(8, 1536),
          "diffusion_model.blocks.3.ffn.0.lora_up.weight": torch.zeros(8960, 8)}
    info = lora_info(read_lora(sd))
    assert info["scheme"] == "comfyui" and info["ranks"] == [8] and info["alphas"] == [4.0]
    assert info["targets"] == ["ffn.0", "self_attn.q"] and info["blocks"] == [0, 3]
    assert info["base"] == ["Wan2.1-1.3B (width 1536)"]


def test_cli_info_and_convert_round_trip(models, tmp_path, capsys):
    from videogen.cli import main

    _, path = models
    lora = factors(ours(path))
    sd, _ = write_scheme("musubi", lora)
    save_file(sd, str(tmp_path / "in.safetensors"))
    assert main(["lora", "info", str(tmp_path / "in.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scheme"] == "musubi" and info["ranks"] == [3, 4] and info["blocks"] == [0, 1, 2]
    for scheme in ("comfyui", "diffusers", "musubi"):
        out = tmp_path / f"{scheme}.safetensors"
        assert main(["lora", "convert", str(tmp_path / "in.safetensors"), str(out), "--to", scheme]) == 0
        model = ours(path)
        add_lora(model, read_lora(out), scheme)
        assert read_lora(out).scheme == scheme
        assert (forward(model) - forward(merged_by_hand(path, lora))).abs().max() <= 1e-5
    assert main(["lora", "convert", str(tmp_path / "missing.safetensors"), str(tmp_path / "x"), "--to", "comfyui"]) == 2
