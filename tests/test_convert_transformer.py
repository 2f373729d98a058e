"""Loading Wan2.1 DiT checkpoints in the diffusers and the original layout, strictly, and exporting back."""

import json

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import save_file

from _oracle import perturb_parameters
from test_transformer import TINY, TINY_I2V, inputs
from videogen.convert.wan import save_diffusers_transformer
from videogen.models.transformer import VideoDiT


def reference(cfg):
    torch.manual_seed(0)
    return perturb_parameters(WanTransformer3DModel(**cfg)).eval()


# The documented original<-diffusers key map (Wan2.1 `WanModel`), written out independently of videogen's table.
ORIGINAL_FROM_DIFFUSERS = [
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("attn1.to_q", "self_attn.q"), ("attn1.to_k", "self_attn.k"), ("attn1.to_v", "self_attn.v"),
    ("attn1.to_out.0", "self_attn.o"), ("attn1.norm_q", "self_attn.norm_q"), ("attn1.norm_k", "self_attn.norm_k"),
    ("attn2.to_q", "cross_attn.q"), ("attn2.to_k", "cross_attn.k"), ("attn2.to_v", "cross_attn.v"),
    ("attn2.to_out.0", "cross_attn.o"), ("attn2.norm_q", "cross_attn.norm_q"), ("attn2.norm_k", "cross_attn.norm_k"),
    ("attn2.add_k_proj", "cross_attn.k_img"), ("attn2.add_v_proj", "cross_attn.v_img"),
    ("attn2.norm_added_k", "cross_attn.norm_k_img"),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"),
]


def to_original(diffusers_sd):
    """Build an original-format state dict: renames above, the norm2->norm3 swap, modulation tables."""
    out = {}
    for key, value in diffusers_sd.items():
        new = key
        for src, dst in ORIGINAL_FROM_DIFFUSERS:
            new = new.replace(src, dst)
        if new.endswith("scale_shift_table"):
            new = "head.modulation" if new == "scale_shift_table" else new.replace("scale_shift_table", "modulation")
        new = new.replace(".norm2.", ".norm3.")  # diffusers norm2 (cross-attn, affine) is Wan's norm3
        out[new] = value.clone()
    return out


def our_tensors(model):
    return {k: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cfg", [TINY, TINY_I2V], ids=["t2v", "i2v"])
def test_original_layout_loads_to_identical_tensors(cfg, tmp_path):
    ref = reference(cfg)
    diffusers_sd = ref.state_dict()
    original = to_original(diffusers_sd)
    # Our test-side builder is right iff diffusers' own converter maps it back exactly.
    back = convert_wan_transformer_to_diffusers({k: v.clone() for k, v in original.items()})
    assert back.keys() == diffusers_sd.keys()
    assert all(torch.equal(back[k], diffusers_sd[k]) for k in back)

    ref.save_pretrained(tmp_path / "diffusers")
    from_diffusers = VideoDiT.from_wan(tmp_path / "diffusers")

    # (a) two prefixed safetensors shards + the original config.json (heads come from it).
    shard_dir = tmp_path / "original_shards"
    shard_dir.mkdir()
    keys = sorted(original)
    half = len(keys) // 2
    for i, part in enumerate((keys[:half], keys[half:])):
        save_file({f"model.diffusion_model.{k}": original[k] for k in part},
                  str(shard_dir / f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"))
    (shard_dir / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": 24, "num_heads": 2,
                                                       "eps": 1e-6, "model_type": "i2v" if "image_dim" in cfg else "t2v"}))
    # (b) one unprefixed .pth file, no config: width 24 is no public Wan2.1 width, so the heads must be given.
    torch.save(original, tmp_path / "original.pth")

    from_shards = VideoDiT.from_wan(shard_dir)
    assert from_shards.config.num_heads == 2
    expected = our_tensors(from_diffusers)
    for model in (from_shards,):
        got = our_tensors(model)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got)
    with pytest.raises(ValueError, match=r"cannot tell num_heads for a DiT of width 24.*num_heads="):
        VideoDiT.from_wan(tmp_path / "original.pth")
    from_pth = VideoDiT.from_wan(tmp_path / "original.pth", num_heads=2)
    got = our_tensors(from_pth)
    assert all(torch.equal(got[k], expected[k]) for k in got)

    x, t, ctx, img = inputs(cfg)
    with torch.no_grad():
        assert torch.equal(from_shards(x, t, ctx, img).sample, from_diffusers(x, t, ctx, img).sample)


def test_diffusers_round_trip_and_export(tmp_path):
    ref = reference(TINY_I2V)
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert list((tmp_path / "sharded").glob("*.index.json")), "the reference save should be sharded"
    ours = VideoDiT.from_wan(tmp_path / "sharded")
    exported = ours.to_diffusers_state_dict()
    original = ref.state_dict()
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) for k in exported)

    save_diffusers_transformer(ours, tmp_path / "export")
    reloaded = WanTransformer3DModel.from_pretrained(tmp_path / "export").eval()
    x, t, ctx, img = inputs(TINY_I2V)
    with torch.no_grad():
        a = reloaded(x, t, ctx, encoder_hidden_states_image=img).sample
        b = ref(x, t, ctx, encoder_hidden_states_image=img).sample
    assert torch.equal(a, b)


def test_bf16_load_keeps_fp32_islands(tmp_path):
    reference(TINY).save_pretrained(tmp_path / "ref")
    model = VideoDiT.from_wan(tmp_path / "ref", torch_dtype=torch.bfloat16)
    assert model.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert model.blocks[0].modulation.dtype == torch.float32
    assert model.time_embedding[0].weight.dtype == torch.float32


def _write(tmp_path, state):
    path = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_strict_loading_lists_bad_keys(tmp_path):
    original = to_original(reference(TINY).state_dict())
    (tmp_path / "m").mkdir()
    missing = dict(original)
    del missing["blocks.1.self_attn.q.weight"]
    with pytest.raises(ValueError, match=r"missing keys \[1\]: blocks\.1\.self_attn\.q\.weight"):
        VideoDiT.from_wan(_write(tmp_path, missing), num_heads=2)
    extra = dict(original, **{"blocks.0.surprise": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"unexpected keys \[1\]: blocks\.0\.surprise"):
        VideoDiT.from_wan(_write(tmp_path, extra), num_heads=2)
    misshaped = dict(original, **{"blocks.0.cross_attn.o.bias": torch.zeros(7)})
    with pytest.raises(ValueError, match=r"mis-shaped keys \[1\]: blocks\.0\.cross_attn\.o\.bias \(checkpoint \(7,\)"):
        VideoDiT.from_wan(_write(tmp_path, misshaped), num_heads=2)


def test_missing_path_and_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Wan transformer checkpoint"):
        VideoDiT.from_wan(tmp_path / "nothing_here")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        VideoDiT.from_wan(bad)


def test_unsupported_diffusers_config_is_refused(tmp_path):
    reference(TINY).save_pretrained(tmp_path / "ref")
    cfg = json.loads((tmp_path / "ref" / "config.json").read_text())
    cfg["qk_norm"] = "rms_norm"
    (tmp_path / "ref" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unsupported qk_norm"):
        VideoDiT.from_wan(tmp_path / "ref")


def test_head_count_is_never_guessed(tmp_path):
    """Bare weights (no config.json) in either layout: the head count is inferred only for the public Wan2.1 widths,
    is refused for any other width unless given, and a given one must agree with a config that states it."""
    from videogen.convert.wan import transformer_config_from_state_dict

    def shapes(dim):  # the tensors the inference reads, as meta tensors (a 1.3B-wide model would be 140 MB)
        meta = dict(device="meta")
        return {"patch_embedding.weight": torch.empty(dim, 16, 1, 2, 2, **meta),
                "blocks.0.ffn.0.weight": torch.empty(64, dim, **meta), "head.head.weight": torch.empty(64, dim, **meta),
                "text_embedding.0.weight": torch.empty(dim, 32, **meta),
                "time_embedding.0.weight": torch.empty(dim, 256, **meta)}

    assert transformer_config_from_state_dict(shapes(1536))["num_heads"] == 12  # Wan2.1-1.3B
    assert transformer_config_from_state_dict(shapes(5120))["num_heads"] == 40  # Wan2.1-14B
    for dim in (256, 24, 1024):  # 256 and 1024 are multiples of 128, still not public widths: no guess
        with pytest.raises(ValueError, match=f"cannot tell num_heads for a DiT of width {dim}"):
            transformer_config_from_state_dict(shapes(dim))
    assert transformer_config_from_state_dict(shapes(256), num_heads=4)["num_heads"] == 4
    with pytest.raises(ValueError, match="does not divide"):
        transformer_config_from_state_dict(shapes(24), num_heads=5)

    ref = reference(TINY)
    # diffusers keys without config.json
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="num_heads"):
        VideoDiT.from_wan(tmp_path / "bare.safetensors")
    assert VideoDiT.from_wan(tmp_path / "bare.safetensors", num_heads=2).config.num_heads == 2
    # a num_heads that contradicts the config beside the weights
    ref.save_pretrained(tmp_path / "ref")
    with pytest.raises(ValueError, match="num_heads=3 contradicts the config"):
        VideoDiT.from_wan(tmp_path / "ref", num_heads=3)
    assert VideoDiT.from_wan(tmp_path / "ref", num_heads=2).config.num_heads == 2
