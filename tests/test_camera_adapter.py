"""CameraControlNet (our VD3D/AC3D-style camera branch): its math against hand-written token maps and the Wan block,
the zero-initialised identity bit for bit (model and pipelines), CameraControlPipeline with it on a text-to-video
and an I2V-layout base against a hand-written loop (CFG, CMG with each null, window, strength), saving, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from _oracle import camera_guided_loop, max_abs_diff, perturb_parameters, randn
from _tiny import tiny_i2v_pipeline_parts, tiny_pipeline_parts
from pipelines import CameraControlPipeline, ImageToVideoPipeline, TextToVideoPipeline
from videogen.conditioning.camera import camera_condition, camera_preset, static_camera_condition
from videogen.conditioning.image import image_condition, load_image
from videogen.guidance import STG, Guidance, MultiCondition
from videogen.models.adapters import CameraControlNet
from videogen.models.adapters.camera import expand_residuals
from videogen.models.transformer import DiTBlock, timestep_embedding

ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=2)
LATENT_SHAPE = (1, 4, 3, 4, 6)
NOISE = randn(*LATENT_SHAPE, seed=41)


def text_states(seed):
    states = randn(1, 512, 16, seed=seed)
    states[:, 7:] = 0
    return states


EMBEDS = dict(prompt_embeds=text_states(42), negative_prompt_embeds=text_states(43))


def trained_adapter(transformer, seed=8, **kw) -> CameraControlNet:
    """An adapter with every weight perturbed (its outputs no longer zero), as after training."""
    torch.manual_seed(0)
    adapter = CameraControlNet.for_transformer(transformer, num_layers=2, dim=24, num_heads=2, **kw)
    perturb_parameters(adapter, scale=0.1, seed=seed)
    return adapter.eval()


@pytest.fixture(scope="module")
def t2v_parts(tmp_path_factory):
    return tiny_pipeline_parts(tmp_path_factory.mktemp("t2v"))[1]


@pytest.fixture(scope="module")
def i2v_parts(tmp_path_factory):
    return tiny_i2v_pipeline_parts(tmp_path_factory.mktemp("i2v"))[1]


def camera_pipe(parts, adapter):
    pipe = CameraControlPipeline(**parts, camera_adapter=adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kw):
    return pipe(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", **kw}).frames


def random_image(seed, height=32, width=48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------
# The module's math
# ----------------------------------------------------------------------------------------------


def patch_tokens(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Tokens of ``x [B, C, F, H, W]`` by hand: every ``ph x pw`` patch of every frame flattened (channel, row,
    column) times the flattened kernel, in (frame, row, column) order."""
    b, c, f, h, w = x.shape
    tokens = []
    for k in range(f):
        for r in range(h // ph):
            for q in range(w // pw):
                patch = x[:, :, k, r * ph:(r + 1) * ph, q * pw:(q + 1) * pw].reshape(b, -1)
                tokens.append(patch @ weight.reshape(weight.shape[0], -1).T + bias)
    return torch.stack(tokens, dim=1)


def reference_residuals(adapter, latents, t, camera):
    """The branch written out: video + camera tokens, each block as a Wan block whose cross-attention adds
    nothing, the zero-init projections."""
    cfg = adapter.config
    _, ph, pw = cfg.patch_size
    x = patch_tokens(latents[:, :cfg.latent_channels], adapter.patch_embedding.weight[:, :, 0],
                     adapter.patch_embedding.bias, ph, pw)
    x = x + patch_tokens(camera, adapter.camera_embedding.weight, adapter.camera_embedding.bias,
                         cfg.camera_downscale * ph, cfg.camera_downscale * pw)
    e = adapter.time_projection(adapter.time_embedding(timestep_embedding(t[:, None], cfg.freq_dim)))
    e = e.unflatten(-1, (6, -1))
    f, h, w = latents.shape[2], latents.shape[3] // ph, latents.shape[4] // pw
    rope = adapter._rope((f, h, w), x.device)
    context = torch.randn(latents.shape[0], 3, cfg.dim)
    outs = []
    for block, proj in zip(adapter.blocks, adapter.proj_out):
        wan = DiTBlock(cfg.dim, cfg.ffn_dim, cfg.num_heads, cfg.eps, cross_attn_norm=True, image_tokens=False)
        wan.load_state_dict(block.state_dict(), strict=False)
        torch.nn.init.zeros_(wan.cross_attn.o.weight)
        torch.nn.init.zeros_(wan.cross_attn.o.bias)
        x = wan(x, context, None, e, rope)
        outs.append(x @ proj.weight.T + proj.bias)
    return outs


def test_branch_matches_the_hand_written_tokens_and_wan_blocks(t2v_parts):
    adapter = trained_adapter(t2v_parts["transformer"])
    latents, camera = randn(2, 4, 3, 4, 6, seed=1), randn(2, 24, 3, 32, 48, seed=2)
    t = torch.tensor([900.0, 150.0])
    with torch.no_grad():
        got, expected = adapter(latents, t, camera), reference_residuals(adapter, latents, t, camera)
    assert len(got) == 2 and got[0].shape == (2, 18, 24)
    for a, b in zip(got, expected):  # fp32 sums of 6144-term camera dot products: relative tolerance
        assert max_abs_diff(a, b) <= 1e-5 * b.abs().max().item()


def test_camera_token_n_covers_the_pixels_of_patch_token_n(t2v_parts):
    """A change of the camera inside the pixels of DiT token n (frame 1, row 1, column 2: 16x16 pixels) changes
    branch token n only, before any attention mixes them."""
    adapter = trained_adapter(t2v_parts["transformer"])
    camera = randn(1, 24, 3, 32, 48, seed=3)
    moved = camera.clone()
    moved[:, :, 1, 16:32, 32:48] += 1.0
    with torch.no_grad():
        a = adapter.camera_embedding(camera[:, :, 1]).flatten(2)
        b = adapter.camera_embedding(moved[:, :, 1]).flatten(2)
    changed = ((a - b).abs().amax(1) > 0).flatten().nonzero().flatten().tolist()
    assert changed == [1 * 3 + 2]  # row 1 of 2, column 2 of 3 in frame 1's 2x3 token grid


def test_untrained_adapter_changes_nothing_bit_for_bit(t2v_parts):
    dit = t2v_parts["transformer"]
    torch.manual_seed(0)
    adapter = CameraControlNet.for_transformer(dit, num_layers=2, dim=24, num_heads=2)
    x, cam = randn(2, 4, 3, 4, 6, seed=4), randn(2, 24, 3, 32, 48, seed=5)
    t, text = torch.tensor([700.0, 30.0]), randn(2, 7, 16, seed=6)
    with torch.no_grad():
        residuals = adapter.block_residuals(x, t, cam, dit.config.num_layers)
        plain = dit(x, t, text).sample
        with_adapter = dit(x, t, text, block_residuals=residuals).sample
    assert all(torch.equal(r, torch.zeros_like(r)) for r in residuals[:2]) and residuals[2] is None
    assert torch.equal(with_adapter, plain)
    # ... yet a gradient reaches the output projections, so training can move them off zero.
    out = dit(x, t, text, block_residuals=adapter.block_residuals(x, t, cam, 3)).sample
    out.square().mean().backward()
    assert adapter.proj_out[0].weight.grad.abs().max() > 0


def test_camera_scale_per_sample(t2v_parts):
    adapter = trained_adapter(t2v_parts["transformer"])
    x, cam, t = randn(3, 4, 3, 4, 6, seed=7), randn(3, 24, 3, 32, 48, seed=8), torch.tensor([500.0, 500.0, 80.0])
    with torch.no_grad():
        mixed = adapter(x, t, cam, torch.tensor([0.5, 0.0, 2.0]))
        alone = [adapter(x[i:i + 1], t[i:i + 1], cam[i:i + 1]) for i in range(3)]
    for level, full in enumerate(mixed):
        assert torch.equal(full[1], torch.zeros_like(full[1]))  # scale 0: not run, exact zeros
        assert max_abs_diff(full[0], 0.5 * alone[0][level][0]) <= 1e-5
        assert max_abs_diff(full[2], 2.0 * alone[2][level][0]) <= 1e-5


def test_expand_residuals_and_sizes(t2v_parts):
    assert expand_residuals([torch.zeros(1)], 3)[1:] == [None, None]
    with pytest.raises(ValueError, match="has 4 blocks but the DiT only 3"):
        expand_residuals([torch.zeros(1)] * 4, 3)
    adapter = trained_adapter(t2v_parts["transformer"])
    with pytest.raises(ValueError, match="camera must be \\[1, 24, 3, 32, 48\\]"):
        adapter(randn(1, 4, 3, 4, 6, seed=1), torch.tensor([1.0]), randn(1, 24, 3, 16, 48, seed=2))
    with pytest.raises(ValueError, match="temporal patch of 1"):
        CameraControlNet(patch_size=(2, 2, 2))


# ----------------------------------------------------------------------------------------------
# The pipeline: the identity, the hand-written loop
# ----------------------------------------------------------------------------------------------


def test_untrained_adapter_pipeline_equals_the_base_pipelines(t2v_parts, i2v_parts):
    torch.manual_seed(0)
    t2v = TextToVideoPipeline(**t2v_parts)
    t2v.set_progress_bar_config(disable=True)
    fresh = CameraControlNet.for_transformer(t2v_parts["transformer"], num_layers=2, dim=24, num_heads=2)
    base = t2v(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", "guidance_scale": 5.0}).frames
    pipe = camera_pipe(t2v_parts, fresh)
    assert torch.equal(run(pipe, camera="pan-left", guidance_scale=5.0), base)
    # CMG's formula (three passes, nested) is other arithmetic than CFG's; with a zero camera term it is the same
    # prediction up to float rounding.
    assert max_abs_diff(run(pipe, camera="pan-left", guidance_scale=5.0, camera_guidance_scale=3.0), base) <= 1e-5
    i2v = ImageToVideoPipeline(**i2v_parts, image_optional=True)
    i2v.set_progress_bar_config(disable=True)
    fresh = CameraControlNet.for_transformer(i2v_parts["transformer"], num_layers=2, dim=24, num_heads=2)
    pipe = camera_pipe(i2v_parts, fresh)
    for image in (None, random_image(1)):
        base = i2v(image=image, **{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent"}).frames
        assert torch.equal(run(pipe, image=image, camera="zoom-in", guidance_scale=5.0), base)


def hand_written(pipe, camera, guidance_scale, camera_scale=0.0, null="identity", strength=1.0, window=(0.0, 1.0),
                 image=None, steps=2):
    """The loop spelled out: the adapter's residuals at each step's timestep into the DiT; CFG with the camera in
    both passes, or CMG against the chosen null; the camera only inside its window."""
    dit, adapter, vae = pipe.transformer, pipe.camera_adapter, pipe.vae
    cfg = dit.config
    condition = None
    if cfg.in_channels != cfg.out_channels:  # Wan's I2V layout
        if image is None:
            condition = torch.zeros(1, cfg.in_channels - cfg.out_channels, *LATENT_SHAPE[2:])
        else:
            condition = image_condition(vae, load_image(image)[None] * 2 - 1, 9)
    packed = camera_condition(camera, 9, 32, 48)[None]
    nulls = {"identity": static_camera_condition(camera_preset(camera, 9, height=32, width=48)[0], 9, 32, 48)[None],
             "zeros": torch.zeros_like(packed), "off": None}
    pos, neg = EMBEDS["prompt_embeds"], EMBEDS["negative_prompt_embeds"]

    def e(x, t, text, cam):
        x_in = x if condition is None else torch.cat([x, condition], 1)
        residuals = None
        if cam is not None:
            residuals = expand_residuals([strength * r for r in adapter(x_in, t.expand(1), cam)], cfg.num_layers)
        return dit(x_in, t.expand(1), text, block_residuals=residuals).sample

    return camera_guided_loop(e, NOISE.clone(), pos, neg, packed, nulls[null], steps, guidance_scale, camera_scale,
                              strength, window)


CASES = {
    "cfg": dict(),
    "cfg-strength-window": dict(strength=0.6, window=(0.0, 0.5)),
    "cmg-identity": dict(camera_scale=3.0, null="identity"),
    "cmg-zeros": dict(camera_scale=3.0, null="zeros"),
    "cmg-off": dict(camera_scale=3.0, null="off"),
    "cmg-window": dict(camera_scale=2.0, null="identity", window=(0.5, 1.0), strength=1.5),
}


@pytest.mark.parametrize("case", list(CASES))
def test_t2v_base_matches_the_hand_written_loop(t2v_parts, case):
    c = CASES[case]
    pipe = camera_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    with torch.no_grad():
        expected = hand_written(pipe, "pan-left", 5.0, **c)
    got = run(pipe, camera="pan-left", guidance_scale=5.0, camera_guidance_scale=c.get("camera_scale", 0),
              camera_null=c.get("null", "identity"), camera_strength=c.get("strength", 1.0),
              camera_window=c.get("window", (0.0, 1.0)))
    assert got.shape == LATENT_SHAPE and max_abs_diff(got, expected) <= 1e-5
    if case == "cfg":  # the camera really steers the result, so the comparison means something
        assert max_abs_diff(run(pipe, camera="zoom-in", guidance_scale=5.0), got) > 1e-3


@pytest.mark.parametrize("image", [None, 2])
def test_i2v_layout_base_matches_the_hand_written_loop(i2v_parts, image):
    pipe = camera_pipe(i2v_parts, trained_adapter(i2v_parts["transformer"]))
    image = None if image is None else random_image(image)
    with torch.no_grad():
        expected = hand_written(pipe, "roll-cw", 4.0, camera_scale=2.0, null="identity", image=image)
    got = run(pipe, image=image, camera="roll-cw", guidance_scale=4.0, camera_guidance_scale=2.0)
    assert max_abs_diff(got, expected) <= 1e-5


@pytest.mark.parametrize("null", ["identity", "zeros", "off"])
def test_batched_equals_sequential_and_adapter_runs_once_per_camera(t2v_parts, null, monkeypatch):
    pipe = camera_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    guidance = Guidance(MultiCondition(5.0, extra_scale=3.0), STG(1.0, blocks=[1], mode="attention"))
    kw = dict(camera="orbit-left", camera_null=null, guidance=guidance)
    calls = []
    forward = pipe.camera_adapter.forward
    monkeypatch.setattr(pipe.camera_adapter, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    batched = run(pipe, batch_guidance=True, **kw)
    assert len(calls) == 2 * 2  # two steps; per step one run for the camera and one for the null (text-free)
    sequential = run(pipe, batch_guidance=False, **kw)
    assert max_abs_diff(batched, sequential) <= 1e-5


# ----------------------------------------------------------------------------------------------
# Saving, loading, errors
# ----------------------------------------------------------------------------------------------


def test_saved_as_camera_adapter_and_loaded_back(t2v_parts, tmp_path):
    from videogen.loading import is_camera_control, load_pipeline

    pipe = camera_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    pipe.save_pretrained(tmp_path / "cam")
    index = json.loads((tmp_path / "cam" / "model_index.json").read_text())
    assert index["camera_adapter"][1] == "CameraControlNet" and (tmp_path / "cam" / "camera_adapter").is_dir()
    assert is_camera_control(tmp_path / "cam")
    again = load_pipeline(tmp_path / "cam")
    assert type(again.camera_adapter) is CameraControlNet
    again.set_progress_bar_config(disable=True)
    # The same weights; loaded tensors sit at other memory alignments, which moves fp32 sums by an ulp or so.
    assert max_abs_diff(run(again, camera="pan-up"), run(pipe, camera="pan-up")) <= 1e-5
    alone = CameraControlNet.from_pretrained(tmp_path / "cam" / "camera_adapter")
    assert alone.config.num_layers == 2


def test_adapter_only_directory_loads_over_its_base_and_exports_in_fp16(t2v_parts, tmp_path):
    """The shipped camera model's layout (``pipelines.adapter_dir``): the adapter alone and a ``base.json``; loaded
    over the base it gives the pipeline's video; exported, the adapter is fp16 and the base path re-pointed."""
    from safetensors.torch import load_file

    from pipelines import TextToVideoPipeline
    from videogen.export import export_pipeline
    from videogen.integrity import verify_checkpoint
    from videogen.loading import is_camera_control, load_pipeline

    TextToVideoPipeline(**t2v_parts).save_pretrained(tmp_path / "models" / "base")
    pipe = camera_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    pipe.save_adapter(tmp_path / "runs" / "final", base=tmp_path / "models" / "base")
    final = tmp_path / "runs" / "final"
    assert json.loads((final / "base.json").read_text())["base"] == "../../models/base"
    assert not (final / "transformer").exists() and is_camera_control(final)
    expected = run(pipe, camera="pan-up")
    alone = load_pipeline(final)
    alone.set_progress_bar_config(disable=True)
    assert type(alone.camera_adapter) is CameraControlNet
    assert max_abs_diff(run(alone, camera="pan-up"), expected) <= 1e-5
    ship = export_pipeline(final, tmp_path / "models" / "camera", generation_config={"steps": 3})
    assert json.loads((ship / "base.json").read_text())["base"] == "../base"  # re-pointed from its new place
    assert not (ship / "transformer").exists() and verify_checkpoint(ship) >= 4
    weights = load_file(str(ship / "camera_adapter" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    loaded = load_pipeline(ship)
    loaded.set_progress_bar_config(disable=True)
    assert max_abs_diff(run(loaded, camera="pan-up"), expected) < 0.05  # fp16 weights
    with pytest.raises(ValueError, match="no camera_adapter"):
        CameraControlPipeline(**t2v_parts).save_adapter(tmp_path / "none", base=tmp_path / "models" / "base")


def test_wrong_adapter_for_the_transformer(t2v_parts):
    from test_pipeline_camera import TINY_CAMERA_DIT
    from videogen.models.transformer import VideoDiT

    adapter = trained_adapter(t2v_parts["transformer"])
    fun = VideoDiT(**{**TINY_CAMERA_DIT, "in_channels": 4, "image_dim": None})
    with pytest.raises(ValueError, match="the camera would enter twice"):
        run(camera_pipe({**t2v_parts, "transformer": fun}, adapter), camera="pan-left")
    narrow = CameraControlNet(num_layers=1, dim=24, num_heads=2, ffn_dim=48, out_dim=32, latent_channels=4)
    with pytest.raises(ValueError, match="built for a DiT of width 32"):
        run(camera_pipe(t2v_parts, narrow), camera="pan-left")
    with pytest.raises(ValueError, match="num_layers \\(4\\) exceeds"):
        CameraControlNet.for_transformer(t2v_parts["transformer"], num_layers=4)
    vae = t2v_parts["vae"]
    fitted = CameraControlNet.for_transformer(t2v_parts["transformer"], num_heads=2, vae=vae)
    assert fitted.config.camera_downscale == vae.spatial_compression
    other = CameraControlNet.for_transformer(t2v_parts["transformer"], num_heads=2,
                                             camera_downscale=2 * vae.spatial_compression)
    with pytest.raises(ValueError, match=f"this VAE compresses {vae.spatial_compression}x"):
        run(camera_pipe(t2v_parts, other), camera="pan-left")


def test_videogen_generate_runs_a_saved_adapter_pipeline(t2v_parts, tmp_path):
    """The command line takes a camera pipeline with our adapter as it takes a Fun one (a fresh process, so the
    component class must be found by loading alone)."""
    from test_training import run_cli

    camera_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"])).save_pretrained(tmp_path / "cam")
    proc = run_cli("generate", "a red circle", "--model", str(tmp_path / "cam"), "--camera", "zoom-out", "--height",
                   "32", "--width", "48", "--num-frames", "9", "--steps", "2", "--out", str(tmp_path / "out.mp4"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_gradient_checkpointing_gives_the_same_gradients(t2v_parts):
    grads = []
    for checkpointing in (False, True):
        adapter = trained_adapter(t2v_parts["transformer"]).train()
        if checkpointing:
            adapter.enable_gradient_checkpointing()
            assert adapter.gradient_checkpointing
        out = adapter(randn(1, 4, 3, 4, 6, seed=9), torch.tensor([400.0]), randn(1, 24, 3, 32, 48, seed=10))
        sum(o.square().mean() for o in out).backward()
        grads.append(torch.cat([p.grad.flatten() for p in adapter.parameters()]))
    assert max_abs_diff(grads[0], grads[1]) <= 1e-6 * grads[0].abs().max().item()
