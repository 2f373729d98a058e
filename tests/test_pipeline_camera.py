"""CameraControlPipeline on a tiny Fun-Control-Camera model: against a hand-written loop (CFG and CMG with each null
camera, the camera window and strength), batched == sequential, presets and pose files end to end, loading, and
the bad inputs (each an error before any model runs, or one warning)."""

import json
import warnings

import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
from PIL import Image
from safetensors.torch import save_file

from _oracle import camera_guided_loop, max_abs_diff, perturb_parameters, randn
from _tiny import tiny_i2v_pipeline_parts, tiny_image_encoder, tiny_pipeline_parts
from pipelines import CameraControlPipeline
from videogen.conditioning.camera import (
    camera_condition, camera_preset, static_camera_condition, write_camera_preset, write_pose_file,
)
from videogen.conditioning.image import load_image
from videogen.guidance import CFG, STG, Guidance, MultiCondition
from videogen.models.transformer import VideoDiT

ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=2)
LATENT_SHAPE = (1, 4, 3, 4, 6)
TINY_CAMERA_DIT = dict(patch_size=(1, 2, 2), num_heads=2, dim=24, in_channels=8, out_channels=4, text_dim=16,
                       freq_dim=32, ffn_dim=32, num_layers=3, rope_max_seq_len=32, image_dim=16, camera_channels=24)


def tiny_camera_parts(tmp_path, **dit_changes):
    """Our tiny components with a Fun-layout camera DiT (noise 4 | start-image latents 4, CLIP tokens, adapter)."""
    _, parts = tiny_pipeline_parts(tmp_path)
    torch.manual_seed(0)
    cfg = {**TINY_CAMERA_DIT, **dit_changes}
    parts["transformer"] = perturb_parameters(VideoDiT(**cfg), seed=6).eval()
    if cfg.get("image_dim"):
        parts["image_encoder"], parts["image_processor"] = tiny_image_encoder()
    return parts


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    p = CameraControlPipeline(**tiny_camera_parts(tmp_path_factory.mktemp("camera")))
    p.set_progress_bar_config(disable=True)
    return p


def random_image(seed, height=32, width=48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def text_states(seed):
    states = randn(1, 512, 16, seed=seed)
    states[:, 7:] = 0
    return states


NOISE = randn(*LATENT_SHAPE, seed=21)
EMBEDS = dict(prompt_embeds=text_states(22), negative_prompt_embeds=text_states(23))


def run(pipe, **kw):
    return pipe(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", **kw}).frames


# ----------------------------------------------------------------------------------------------
# The oracle: the loop written out by hand
# ----------------------------------------------------------------------------------------------


def hand_written(pipe, image, camera, guidance_scale, camera_scale=0.0, null="identity", strength=1.0,
                 window=(0.0, 1.0), steps=2):
    """VideoX-Fun's recipe spelled out: image latents in frame 0, CLIP tokens, the camera into the DiT; CFG on the
    text with the camera in both passes, or CMG against the chosen null; the camera only inside its window."""
    dit, vae = pipe.transformer, pipe.vae
    pixels = load_image(image)[None] * 2 - 1
    first = vae.normalize_latents(vae.encode(pixels[:, :, None]).latent_dist.mode())
    image_latents = torch.cat([first, torch.zeros(1, 4, 2, 4, 6)], dim=2)
    clip_inputs = pipe.image_processor(images=[image], return_tensors="pt")
    clip = pipe.image_encoder(**clip_inputs, output_hidden_states=True).hidden_states[-2]
    packed = camera_condition(camera, 9, 32, 48)[None]
    nulls = {"identity": static_camera_condition(camera_preset(camera, 9, height=32, width=48)[0], 9, 32, 48)[None],
             "zeros": torch.zeros_like(packed), "off": None}
    pos, neg = EMBEDS["prompt_embeds"], EMBEDS["negative_prompt_embeds"]

    def e(x, t, text, cam):
        scale = None if cam is None else strength
        return dit(torch.cat([x, image_latents], 1), t.expand(1), text, clip, camera=cam, camera_scale=scale).sample

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
def test_matches_the_hand_written_loop(pipe, case):
    c = CASES[case]
    image = random_image(1)
    with torch.no_grad():
        expected = hand_written(pipe, image, "pan-left", 5.0, **c)
    got = run(pipe, image=image, camera="pan-left", guidance_scale=5.0, camera_guidance_scale=c.get("camera_scale", 0),
              camera_null=c.get("null", "identity"), camera_strength=c.get("strength", 1.0),
              camera_window=c.get("window", (0.0, 1.0)))
    assert got.shape == LATENT_SHAPE
    assert max_abs_diff(got, expected) <= 1e-5
    if case == "cfg":  # the camera really steers the result, so the comparison means something
        assert max_abs_diff(run(pipe, image=image, camera="zoom-in", guidance_scale=5.0), got) > 1e-3


def test_the_null_cameras_differ(pipe):
    """identity, zeros and off are three different materialisations of the pass without the camera."""
    kw = dict(image=random_image(1), camera="pan-left", camera_guidance_scale=3.0)
    outs = [run(pipe, camera_null=null, **kw) for null in ("identity", "zeros", "off")]
    assert min(max_abs_diff(a, b) for a, b in [(outs[0], outs[1]), (outs[0], outs[2]), (outs[1], outs[2])]) > 1e-4


@pytest.mark.parametrize("null", ["identity", "zeros", "off"])
def test_batched_equals_sequential_cmg_with_stg(pipe, null):
    guidance = Guidance(MultiCondition(5.0, extra_scale=3.0), STG(1.0, blocks=[1], mode="attention"))
    kw = dict(image=random_image(2), camera="orbit-left", camera_null=null, guidance=guidance)
    batched, sequential = run(pipe, batch_guidance=True, **kw), run(pipe, batch_guidance=False, **kw)
    assert max_abs_diff(batched, sequential) <= 1e-5
    plain = run(pipe, image=random_image(2), camera="orbit-left", guidance=Guidance(MultiCondition(5.0, extra_scale=3.0)))
    assert max_abs_diff(batched, plain) > 1e-4  # STG took part


def test_outside_the_window_a_step_runs_each_distinct_pass_once(pipe, monkeypatch):
    """With the camera off, CMG's three passes are two distinct model calls (text on / off), not three."""
    sizes = []
    forward = pipe.transformer.forward

    def counting(*args, **kwargs):
        sizes.append((kwargs["hidden_states"].shape[0], kwargs["camera"] is not None))
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward", counting)
    run(pipe, image=random_image(1), camera="pan-left", guidance=Guidance(MultiCondition(5.0, extra_scale=3.0)),
        camera_window=(0.0, 0.5))
    assert sizes == [(3, True), (2, False)]


# ----------------------------------------------------------------------------------------------
# Cameras in every form, the camera off, no image
# ----------------------------------------------------------------------------------------------


def test_preset_pose_file_and_tensors_give_the_same_video(pipe, tmp_path):
    image = random_image(3)
    preset = run(pipe, image=image, camera="pan-right")
    write_camera_preset(tmp_path / "pan.txt", "pan-right", 9, 32, 48)
    from_file = run(pipe, image=image, camera=str(tmp_path / "pan.txt"))
    from_tensors = run(pipe, image=image, camera=camera_preset("pan-right", 9, height=32, width=48))
    assert max_abs_diff(from_file, preset) <= 1e-5 and max_abs_diff(from_tensors, preset) <= 1e-6
    frames = pipe(**ARGS, prompt="a red circle", image=image, camera=tmp_path / "pan.txt", output_type="np",
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 9, 32, 48, 3) and np.isfinite(frames).all()


def test_camera_off_is_the_model_without_a_camera(pipe):
    image = random_image(4)
    with pytest.warns(UserWarning, match="no camera was given: it runs without one, as image-to-video"):
        none = run(pipe, image=image)
    assert torch.equal(run(pipe, image=image, camera="zoom-in", camera_window=(0.0, 0.0)), none)
    assert torch.equal(run(pipe, image=image, camera="zoom-in", camera_strength=0.0), none)
    assert max_abs_diff(run(pipe, image=image, camera="zoom-in"), none) > 1e-3


def test_no_start_image_gives_zero_latents_and_zeroed_clip_tokens(pipe):
    cond = pipe.prepare_image_conditions(None, None, 1, 2, 32, 48, 9, torch.device("cpu"))
    assert torch.equal(cond["image_latents"], torch.zeros(2, 4, 3, 4, 6))
    assert torch.equal(cond["image_embeds"], torch.zeros(2, 17, 16))  # the CLIP token count of the tiny encoder
    without = run(pipe, camera="pan-up")
    assert without.shape == LATENT_SHAPE and max_abs_diff(without, run(pipe, image=random_image(1), camera="pan-up")) > 1e-3


def test_batch_of_prompts_and_images(pipe):
    """Two prompts, two start images, two videos each: each video equals its prompt run alone."""
    prompts = text_states(30).repeat(2, 1, 1)
    prompts[1, :, :3] += 1.0
    images = [random_image(5), random_image(6)]
    noise = randn(4, 4, 3, 4, 6, seed=31)
    kw = dict(ARGS, camera="pan-left", camera_guidance_scale=2.0, output_type="latent", num_videos_per_prompt=2)
    batch = pipe(prompt_embeds=prompts, image=images, latents=noise, **kw).frames
    for i in range(2):
        alone = pipe(prompt_embeds=prompts[i:i + 1], image=images[i], latents=noise[2 * i:2 * i + 2], **kw).frames
        assert max_abs_diff(batch[2 * i:2 * i + 2], alone) <= 1e-5


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def test_save_and_load_pipeline_picks_the_camera_class(pipe, tmp_path):
    from videogen.loading import is_camera_control, load_pipeline

    pipe.save_pretrained(tmp_path / "camera")
    assert json.loads((tmp_path / "camera" / "model_index.json").read_text())["_class_name"] == "CameraControlPipeline"
    assert is_camera_control(tmp_path / "camera")
    again = load_pipeline(tmp_path / "camera")
    assert type(again) is CameraControlPipeline and again.transformer.config.camera_channels == 24
    again.set_progress_bar_config(disable=True)
    kw = dict(image=random_image(1), camera="zoom-out")
    assert torch.equal(run(again, **kw), run(pipe, **kw))


def test_from_wan_i2v_directory_plus_fun_transformer(tmp_path):
    """A diffusers Wan2.1 I2V directory supplies the text encoder, VAE, CLIP and scheduler; the Fun transformer
    comes as released (original keys + control_adapter.*), and the directory's own DiT is never read."""
    from test_camera_transformer import adapter_tensors, fun_config
    from test_convert_transformer import to_original

    ref, _ = tiny_i2v_pipeline_parts(tmp_path / "parts", image_tokens=True)
    WanImageToVideoPipeline(**ref).save_pretrained(tmp_path / "wan_i2v")
    torch.manual_seed(0)
    fun = perturb_parameters(WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=8, out_channels=4, text_dim=16,
        freq_dim=32, ffn_dim=32, num_layers=3, rope_max_seq_len=32, image_dim=16, added_kv_proj_dim=24), seed=7)
    (tmp_path / "fun").mkdir()
    state = {**to_original(fun.state_dict()), **adapter_tensors()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "fun" / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "fun" / "config.json").write_text(json.dumps(fun_config(in_dim=8)))
    with pytest.raises(ValueError, match="is not a camera model .*transformer=\\.\\.\\."):
        CameraControlPipeline.from_wan(tmp_path / "wan_i2v")
    loaded = CameraControlPipeline.from_wan(tmp_path / "wan_i2v", transformer=tmp_path / "fun")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.transformer.config.camera_channels == 24 and loaded.image_encoder is not None
    got = run(loaded, image=random_image(1), camera="pan-left")
    assert got.shape == LATENT_SHAPE and torch.isfinite(got).all()
    # The transformer's weights are the Fun file's (the adapter included), not the directory's I2V DiT.
    ours = loaded.transformer.state_dict()
    assert torch.equal(ours["camera_adapter.embed.weight"], state["control_adapter.conv.weight"])
    assert torch.equal(ours["blocks.0.self_attn.q.weight"], state["blocks.0.self_attn.q.weight"])


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def write_lines(path, lines):
    path.write_text("\n".join(["# header"] + lines) + "\n")
    return path


def test_errors_come_before_any_model_runs(pipe, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a model ran before the inputs were checked")

    for module in (pipe.vae, pipe.text_encoder, pipe.image_encoder, pipe.transformer):
        monkeypatch.setattr(module, "forward", boom)
    monkeypatch.setattr(pipe.vae, "encode", boom)
    write_camera_preset(tmp_path / "good.txt", "pan-left", 9, 32, 48)
    good = (tmp_path / "good.txt").read_text().splitlines()
    bad_line = write_lines(tmp_path / "bad.txt", good[1:3] + ["0 0.5 0.9 0.5 0.5 0 0 1 0 0"] + good[4:])
    not_number = write_lines(tmp_path / "nan_word.txt", good[1:2] + [good[2].replace(good[2].split()[8], "abc", 1)])
    non_finite = write_lines(tmp_path / "inf.txt", good[1:2] + [" ".join(good[2].split()[:10] + ["inf"] +
                                                                          good[2].split()[11:])])
    c2w = torch.eye(4).repeat(9, 1, 1)
    c2w[4, 0, 3] = float("nan")
    image = random_image(1)
    cases = [
        (dict(camera=str(bad_line)), f"{bad_line}:4: expected 19 numbers"),
        (dict(camera=str(not_number)), "'abc' is not a number"),
        (dict(camera=str(non_finite)), f"{non_finite}:3: non-finite value"),
        (dict(camera=(torch.tensor([40.0, 40.0, 24.0, 16.0]), c2w)), "poses hold non-finite values"),
        (dict(camera="spin-around"), "is neither a preset"),
        (dict(camera="pan-left", height=40), "height must be a multiple of 16; got 40"),
        (dict(camera="pan-left", width=56), "width must be a multiple of 16; got 56"),
        (dict(camera="pan-left", num_frames=8), "num_frames must be 1 + 4k"),
        (dict(camera="pan-left", camera_null="static"), "camera_null must be one of"),
        (dict(camera="pan-left", camera_window=(0.6, 0.2)), "camera_window must be (start, stop)"),
        (dict(camera="pan-left", camera_strength=-1.0), "camera_strength must be a finite number >= 0"),
        (dict(camera="pan-left", camera_strength=float("nan")), "camera_strength must be a finite number >= 0"),
        (dict(camera="pan-left", camera_guidance_scale=2.0, guidance=Guidance(CFG(5.0))), "not both"),
        (dict(camera_guidance_scale=2.0), "camera_guidance_scale needs a camera"),
        (dict(camera="pan-left", image=[image] * 3), "image is a list of 3 images but there are 1 prompts"),
        (dict(camera="pan-left", image_embeds=torch.zeros(1, 17, 5)), "image_embeds must be [N, L, image_dim=16]"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError) as err, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe(**{**ARGS, "prompt": "a red circle", "image": image, "output_type": "latent", **kw})
        assert message in str(err.value), (kw, str(err.value))


def test_pose_count_other_than_frames_is_resampled_with_one_warning(pipe, tmp_path):
    intrinsics, c2w = camera_preset("pan-left", 5, height=32, width=48)
    write_pose_file(tmp_path / "five.txt", intrinsics, c2w, 32, 48)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run(pipe, image=random_image(1), camera=str(tmp_path / "five.txt"), camera_guidance_scale=2.0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len([m for m in messages if "resampling" in m]) == 1, messages
    assert "the camera has 5 poses for 9 frames" in messages[0]
    assert out.shape == LATENT_SHAPE and torch.isfinite(out).all()


def test_wrong_model_for_the_pipeline(tmp_path):
    # A transformer without a camera adapter: a camera would be silently ignored, so the pipeline refuses it.
    parts = tiny_camera_parts(tmp_path / "a", camera_channels=None)
    with pytest.raises(ValueError, match="has no camera adapter .*a camera would be ignored"):
        run(CameraControlPipeline(**parts), camera="pan-left", image=random_image(1))
    # A camera model without start-image channels takes no image (and runs from text and camera alone).
    parts = tiny_camera_parts(tmp_path / "b", in_channels=4, image_dim=None)
    t2v_camera = CameraControlPipeline(**parts)
    t2v_camera.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="image was given but this transformer has no start-image channels"):
        run(t2v_camera, camera="pan-left", image=random_image(1))
    assert run(t2v_camera, camera="pan-left").shape == LATENT_SHAPE
    # The Wan2.2 Fun layout (mask channels) is not supported: named, not misread.
    parts = tiny_camera_parts(tmp_path / "c", in_channels=12)
    with pytest.raises(ValueError, match="mask channels .* are not supported"):
        run(CameraControlPipeline(**parts), camera="pan-left")
