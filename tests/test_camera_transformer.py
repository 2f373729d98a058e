"""The Fun-Control-Camera DiT: a VideoX-Fun checkpoint in the original key layout (plus ``control_adapter.*``) equals
diffusers' Wan I2V DiT with the adapter's output, computed here with plain torch ops, added after patch embedding."""

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from _oracle import max_abs_diff, perturb_parameters
from test_convert_transformer import to_original
from test_transformer import TINY, assert_close_rel, inputs
from videogen.conditioning.camera import camera_condition
from videogen.convert.wan import transformer_state_dict_to_original
from videogen.models.transformer import VideoDiT

# The Fun layout at a tiny width: 32 input channels (noise 16 | start-image latent 16, no mask), CLIP image branch.
TINY_FUN = {**TINY, "in_channels": 32, "out_channels": 16, "image_dim": 8, "added_kv_proj_dim": 24}
DIM = 24


def adapter_tensors(camera_channels=24, downscale=8, seed=11) -> dict:
    """Random ``control_adapter.*`` weights under VideoX-Fun's names (the reference's parameters are perturbed
    by ``perturb_parameters``; these are drawn at a comparable scale)."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda *shape, s=0.05: s * torch.randn(*shape, generator=g)  # noqa: E731
    return {
        "control_adapter.conv.weight": draw(DIM, camera_channels * downscale**2, 2, 2, s=0.02),
        "control_adapter.conv.bias": draw(DIM),
        "control_adapter.residual_blocks.0.conv1.weight": draw(DIM, DIM, 3, 3),
        "control_adapter.residual_blocks.0.conv1.bias": draw(DIM),
        "control_adapter.residual_blocks.0.conv2.weight": draw(DIM, DIM, 3, 3),
        "control_adapter.residual_blocks.0.conv2.bias": draw(DIM),
    }


def adapter_reference(camera: torch.Tensor, w: dict, downscale: int = 8) -> torch.Tensor:
    """VideoX-Fun's adapter in plain torch ops: per frame unshuffle, 2x2/2 conv, x + conv2(relu(conv1(x)))."""
    b, c, f, h, wd = camera.shape
    x = F.pixel_unshuffle(camera.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, wd), downscale)
    x = F.conv2d(x, w["control_adapter.conv.weight"], w["control_adapter.conv.bias"], stride=2)
    inner = F.relu(F.conv2d(x, w["control_adapter.residual_blocks.0.conv1.weight"],
                            w["control_adapter.residual_blocks.0.conv1.bias"], padding=1))
    x = x + F.conv2d(inner, w["control_adapter.residual_blocks.0.conv2.weight"],
                     w["control_adapter.residual_blocks.0.conv2.bias"], padding=1)
    return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def fun_config(**extra) -> dict:
    """The original-format config.json beside a Fun checkpoint (VideoX-Fun's key names)."""
    return {"_class_name": "WanTransformer3DModel", "model_type": "i2v", "dim": DIM, "num_heads": 2, "in_dim": 32,
            "eps": 1e-6, "add_control_adapter": True, "in_dim_control_adapter": 24,
            "downscale_factor_control_adapter": 8, **extra}


def write_fun_checkpoint(directory, ref, adapter, config=None):
    """A Fun-Control-Camera checkpoint as VideoX-Fun ships it: original Wan keys + control_adapter.*, safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {**to_original(ref.state_dict()), **{k: v.clone() for k, v in adapter.items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "diffusion_pytorch_model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config or fun_config()))
    return state


@pytest.fixture(scope="module")
def fun(tmp_path_factory):
    """(perturbed diffusers reference, adapter tensors, the written original-format state, our loaded model)."""
    torch.manual_seed(0)
    ref = perturb_parameters(WanTransformer3DModel(**TINY_FUN), seed=5).eval()
    adapter = adapter_tensors()
    directory = tmp_path_factory.mktemp("fun") / "transformer"
    written = write_fun_checkpoint(directory, ref, adapter)
    return ref, adapter, written, VideoDiT.from_wan(directory)


def cameras(batch=2, num_frames=9, height=32, width=48):
    """Packed Plücker rays of real presets, one per sample: ``[B, 24, F_lat, H, W]``."""
    names = ["pan-left", "zoom-in", "roll-cw"][:batch]
    return torch.stack([camera_condition(n, num_frames, height, width) for n in names])


def test_fun_checkpoint_equals_diffusers_plus_adapter_after_patch_embedding(fun):
    ref, adapter, _, ours = fun
    assert ours.config.camera_channels == 24 and ours.config.camera_downscale == 8
    assert ours.config.in_channels == 32 and ours.config.image_dim == 8
    x, t, ctx, img = inputs(TINY_FUN)
    camera = cameras()
    features = adapter_reference(camera, adapter)
    assert features.shape == (2, DIM, 3, 2, 3)  # the patch grid of [3, 4, 6] latents
    hook = ref.patch_embedding.register_forward_hook(lambda module, args, out: out + features)
    try:
        with torch.no_grad():
            expected = ref(x, t, ctx, encoder_hidden_states_image=img).sample
    finally:
        hook.remove()
    with torch.no_grad():
        got = ours(x, t, ctx, img, camera=camera).sample
        plain_ref = ref(x, t, ctx, encoder_hidden_states_image=img).sample
    assert_close_rel(got, expected)
    assert max_abs_diff(expected, plain_ref) > 1e-2  # the camera really changes the prediction


def test_camera_none_is_the_plain_wan_computation_bit_for_bit(fun, tmp_path):
    ref, _, _, ours = fun
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    save_file({k: v.contiguous() for k, v in to_original(ref.state_dict()).items()},
              str(plain_dir / "diffusion_pytorch_model.safetensors"))
    (plain_dir / "config.json").write_text(json.dumps(fun_config(add_control_adapter=False)))
    plain = VideoDiT.from_wan(plain_dir)
    assert plain.camera_adapter is None and plain.config.camera_channels is None
    x, t, ctx, img = inputs(TINY_FUN)
    with torch.no_grad():
        a = ours(x, t, ctx, img).sample
        b = plain(x, t, ctx, img).sample
        off = ours(x, t, ctx, img, camera=cameras(), camera_scale=0.0).sample
        expected = ref(x, t, ctx, encoder_hidden_states_image=img).sample
    assert torch.equal(a, b)
    assert torch.equal(off, b)  # scale 0: the adapter is not run
    assert_close_rel(a, expected)


def test_camera_scale_is_per_sample_and_batched_equals_separate(fun):
    _, adapter, _, ours = fun
    x, t, ctx, img = inputs(TINY_FUN, batch=1)
    camera = cameras(batch=1)
    xb, tb, cb, ib, camb = (v.expand(3, *v.shape[1:]) for v in (x, t, ctx, img, camera))
    with torch.no_grad():
        batched = ours(xb, tb, cb, ib, camera=camb, camera_scale=torch.tensor([1.0, 0.0, 0.5])).sample
        full = ours(x, t, ctx, img, camera=camera).sample
        plain = ours(x, t, ctx, img).sample
        half = ours(x, t, ctx, img, camera=camera, camera_scale=0.5).sample
    for i, single in enumerate((full, plain, half)):
        assert max_abs_diff(batched[i:i + 1], single) <= 1e-5
    assert max_abs_diff(full, half) > 1e-3
    # The scale multiplies the adapter's output: the same as adding half the features in the patch grid.
    features = 0.5 * adapter_reference(camera, adapter)
    patch = ours.patch_embedding
    hook = patch.register_forward_hook(lambda module, args, out: out + features)
    try:
        with torch.no_grad():
            hooked = ours(x, t, ctx, img).sample
    finally:
        hook.remove()
    assert max_abs_diff(hooked, half) <= 1e-5


def test_round_trips_save_and_original_export(fun, tmp_path):
    _, _, written, ours = fun
    ours.save_pretrained(tmp_path / "ours")
    again = VideoDiT.from_pretrained(tmp_path / "ours")
    assert again.config.camera_channels == 24
    x, t, ctx, img = inputs(TINY_FUN)
    with torch.no_grad():
        assert torch.equal(again(x, t, ctx, img, camera=cameras()).sample, ours(x, t, ctx, img, camera=cameras()).sample)
    exported = transformer_state_dict_to_original(ours.state_dict())
    assert exported.keys() == written.keys()
    assert all(torch.equal(exported[k], written[k]) for k in written)
    # diffusers has no camera transformer: exporting there is refused, not silently lossy.
    from videogen.convert.wan import save_diffusers_transformer

    with pytest.raises(ValueError, match="diffusers has no Fun-Control-Camera transformer"):
        save_diffusers_transformer(ours, tmp_path / "diffusers")
    assert not (tmp_path / "diffusers").exists()


def test_diffusers_layout_with_passed_through_adapter_keys(fun, tmp_path):
    """diffusers' single-file converter keeps ``control_adapter.*`` as is: such a directory loads as a camera model."""
    ref, adapter, _, ours = fun
    ref.save_pretrained(tmp_path / "d")
    state = {**ref.state_dict(), **adapter}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "d" / "diffusion_pytorch_model.safetensors"))
    loaded = VideoDiT.from_wan(tmp_path / "d")
    assert loaded.config.camera_channels == 24
    got, expected = loaded.state_dict(), ours.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


def test_variant_detection_from_the_adapter_weights(fun, tmp_path):
    ref, _, _, _ = fun
    # Adapter input channels = conv in-channels / downscale^2, with the release's downscale from config.json.
    write_fun_checkpoint(tmp_path / "ds16", ref, adapter_tensors(camera_channels=6, downscale=16),
                         fun_config(in_dim_control_adapter=6, downscale_factor_control_adapter=16))
    model = VideoDiT.from_wan(tmp_path / "ds16")
    assert (model.config.camera_channels, model.config.camera_downscale) == (6, 16)
    write_fun_checkpoint(tmp_path / "bad", ref, adapter_tensors(camera_channels=6), fun_config())
    with pytest.raises(ValueError, match=r"in_dim_control_adapter=24 but the camera adapter's weights take 384"):
        VideoDiT.from_wan(tmp_path / "bad")
    # A missing adapter tensor is listed by the strict loader.
    state = {**to_original(ref.state_dict()), **adapter_tensors()}
    del state["control_adapter.residual_blocks.0.conv2.bias"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \[1\]: camera_adapter\.refine\.conv2\.bias"):
        VideoDiT.from_wan(tmp_path / "broken.safetensors", num_heads=2)


@pytest.mark.parametrize(
    "camera, scale, message",
    [
        (torch.zeros(2, 6, 3, 32, 48), None, "camera must have 24 channels"),
        (torch.zeros(2, 24, 2, 32, 48), None, "camera has 2 latent frames but hidden_states has 3"),
        (torch.zeros(2, 24, 3, 40, 48), None, "camera height must be a multiple of 16; got 40; nearest valid values: "
                                              "32, 48"),
        (torch.zeros(2, 24, 3, 32, 50), None, "camera width must be a multiple of 16; got 50"),
        (torch.zeros(2, 24, 3, 48, 48), None, "camera height is 48 pixels but the latents are 4 (x 8 = 32 pixels)"),
        (torch.zeros(1, 24, 3, 32, 48), None, "camera has batch size 1 but hidden_states has 2"),
        (torch.zeros(2, 24, 32, 48), None, "camera must be a 5-D tensor"),
        (torch.zeros(2, 24, 3, 32, 48, dtype=torch.long), None, "camera must be a floating-point tensor"),
        (torch.zeros(2, 24, 3, 32, 48), torch.ones(3), "camera_scale must be a number or a [B=2] tensor"),
        (None, 1.0, "camera_scale was given without a camera"),
    ],
)
def test_bad_camera_inputs_name_the_rule(fun, camera, scale, message):
    _, _, _, ours = fun
    x, t, ctx, img = inputs(TINY_FUN)
    with pytest.raises(ValueError) as err:
        ours(x, t, ctx, img, camera=camera, camera_scale=scale)
    assert message in str(err.value)


def test_a_camera_on_a_model_without_an_adapter_is_an_error():
    torch.manual_seed(0)
    model = VideoDiT(patch_size=(1, 2, 2), num_heads=2, dim=24, in_channels=4, out_channels=4, text_dim=16,
                     freq_dim=32, ffn_dim=32, num_layers=1)
    x, t, ctx, _ = inputs(TINY)
    with pytest.raises(ValueError, match="this model has no camera adapter .*cannot use a camera"):
        model(x, t, ctx, camera=torch.zeros(2, 24, 3, 32, 48))
    with pytest.raises(ValueError, match="temporal patch of 1"):
        VideoDiT(patch_size=(2, 2, 2), num_heads=2, dim=24, camera_channels=24)
