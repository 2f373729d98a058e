"""TrajectoryAdapter (Tora's extractor + motion-guidance fuser) and TrajectoryControlPipeline: the fuser's math written
out by hand, the zero-initialised identity bit for bit, the pipeline against hand-written loops (Tora on text-to-video
and I2V-layout bases, CFG and trajectory guidance) and, for ATI / Wan-Move, against diffusers' WanImageToVideoPipeline
with its condition rewritten by the published transforms; saving (whole and adapter-only), the CLI, bad input."""

import json
import warnings

import diffusers.pipelines.wan.pipeline_wan as wan_t2v
import diffusers.pipelines.wan.pipeline_wan_i2v as wan_i2v
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import WanImageToVideoPipeline
from PIL import Image

from _oracle import camera_guided_loop, max_abs_diff, perturb_parameters, randn
from _tiny import tiny_i2v_pipeline_parts, tiny_pipeline_parts
from pipelines import ImageToVideoPipeline, TextToVideoPipeline
from pipelines.trajectory_control import TrajectoryControlPipeline, count_named_objects, motion_latents
from videogen.conditioning.image import image_condition, load_image
from videogen.conditioning.trajectory import ati_condition, tracks_from, wan_move_condition
from videogen.guidance import STG, Guidance, MultiCondition
from videogen.models.adapters import TrajectoryAdapter
from videogen.models.adapters.trajectory import MotionModulation

ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=2)
LATENT_SHAPE = (1, 4, 3, 4, 6)
NOISE = randn(*LATENT_SHAPE, seed=51)
TRACK = "4,4 44,28"  # one object, left-top to right-bottom over the clip


def text_states(seed):
    states = randn(1, 512, 16, seed=seed)
    states[:, 7:] = 0
    return states


EMBEDS = dict(prompt_embeds=text_states(52), negative_prompt_embeds=text_states(53))


def trained_adapter(transformer, seed=9) -> TrajectoryAdapter:
    """An adapter with every weight perturbed (its terms no longer zero), as after training."""
    torch.manual_seed(0)
    adapter = TrajectoryAdapter.for_transformer(transformer, channels=8, groups=4)
    perturb_parameters(adapter, scale=0.2, seed=seed)
    return adapter.eval()


@pytest.fixture(scope="module")
def t2v_parts(tmp_path_factory):
    return tiny_pipeline_parts(tmp_path_factory.mktemp("t2v"))[1]


@pytest.fixture(scope="module")
def i2v(tmp_path_factory):
    """(diffusers reference components, ours) for a Wan I2V-layout DiT without image tokens."""
    return tiny_i2v_pipeline_parts(tmp_path_factory.mktemp("i2v"))


def trajectory_pipe(parts, adapter=None, **kw):
    pipe = TrajectoryControlPipeline(**parts, trajectory_adapter=adapter, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kw):
    return pipe(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", **kw}).frames


def random_image(seed, height=32, width=48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------
# The module's math
# ----------------------------------------------------------------------------------------------


def reference_terms(adapter, motion):
    """Extractor and fusers written out frame by frame: conv_in per frame as a 2D conv, the two ResBlocks, the
    spatial convs, then the temporal conv with its replicate padding spelled out, in (frame, row, column) order."""
    cfg = adapter.config
    b, _, f, h, w = motion.shape
    frames = [F.conv2d(motion[:, :, k], adapter.conv_in.weight[:, :, 0], adapter.conv_in.bias,
                       stride=tuple(cfg.patch_size[1:])) for k in range(f)]
    out = []
    for body, fuser in zip(adapter.body, adapter.fusers):
        new = []
        for x in frames:
            for block in body:
                y = F.conv2d(F.relu(F.group_norm(x, cfg.groups, block.norm1.weight, block.norm1.bias)),
                             block.conv1.weight, block.conv1.bias, padding=1)
                x = x + F.conv2d(F.relu(F.group_norm(y, cfg.groups, block.norm2.weight, block.norm2.bias)),
                                 block.conv2.weight, block.conv2.bias, padding=1)
            new.append(x)
        frames = new
        pair = []
        for spatial, temporal in ((fuser.gamma_spatial, fuser.gamma_temporal), (fuser.beta_spatial, fuser.beta_temporal)):
            s = torch.stack([F.conv2d(x, spatial.weight, spatial.bias, padding=1) for x in frames], 2)  # [B, D, f, h, w]
            padded = torch.cat([s[:, :, :1], s, s[:, :, -1:]], 2)
            t = sum(torch.einsum("od,bdfhw->bofhw", temporal.weight[:, :, k], padded[:, :, k:k + f]) for k in range(3))
            t = t + temporal.bias.view(1, -1, 1, 1, 1)
            pair.append(t.flatten(2).transpose(1, 2))  # [B, f*h*w, D]
        out.append(tuple(pair))
    return out


def test_terms_and_fuser_match_the_hand_written_ones(t2v_parts):
    adapter = trained_adapter(t2v_parts["transformer"])
    motion = randn(2, 4, 3, 4, 6, seed=3)
    with torch.no_grad():
        got, expected = adapter(motion), reference_terms(adapter, motion)
        assert len(got) == 3
        for (g, b), (ge, be) in zip(got, expected):
            assert g.shape == (2, 3 * 2 * 3, 24) and max_abs_diff(g, ge) <= 1e-5 and max_abs_diff(b, be) <= 1e-5
        # The fuser on DiT tokens: h + GroupNorm(h) * gamma + beta, the norm over each latent frame's tokens.
        mod = adapter.block_modulations(motion, 3)[0]
        h = randn(2, 18, 24, seed=4)
        frames = h.reshape(2, 3, 6, 24).permute(0, 1, 3, 2)  # [B, f, D, hw]
        normed = torch.stack([F.group_norm(frames[:, k], 4, mod.norm.weight, mod.norm.bias, mod.norm.eps)
                              for k in range(3)], 1).permute(0, 1, 3, 2).reshape(2, 18, 24)
        assert max_abs_diff(mod(h), h + normed * got[0][0] + got[0][1]) <= 1e-5


def test_untrained_adapter_is_the_identity_and_scale_zero_is_exact(t2v_parts):
    dit = t2v_parts["transformer"]
    fresh = TrajectoryAdapter.for_transformer(dit, channels=8)
    x, t, c = randn(2, 4, 3, 4, 6, seed=5), torch.tensor([700.0, 200.0]), randn(2, 7, 16, seed=6)
    motion = randn(2, 4, 3, 4, 6, seed=7)
    with torch.no_grad():
        base = dit(x, t, c).sample
        assert torch.equal(dit(x, t, c, block_modulations=fresh.block_modulations(motion, 3)).sample, base)
        trained = trained_adapter(dit)
        mods = trained.block_modulations(motion, 3, scale=torch.tensor([1.0, 0.0]))
        out = dit(x, t, c, block_modulations=mods).sample
    assert torch.equal(out[1], base[1]) and max_abs_diff(out[0], base[0]) > 1e-3
    both = MotionModulation.cat([mods[0], mods[0]])
    assert both.gamma.shape[0] == 4


def test_sizes_and_errors(t2v_parts):
    dit = t2v_parts["transformer"]
    with pytest.raises(ValueError, match="num_layers \\(4\\) exceeds"):
        TrajectoryAdapter.for_transformer(dit, num_layers=4)
    with pytest.raises(ValueError, match="groups \\(32\\) must divide dim \\(24\\)"):
        TrajectoryAdapter(num_layers=1, dim=24, channels=32, latent_channels=4)
    adapter = TrajectoryAdapter.for_transformer(dit, num_layers=2, channels=8)
    assert adapter.block_modulations(randn(1, 4, 3, 4, 6, seed=1), 3)[2] is None
    with pytest.raises(ValueError, match="motion latents must be"):
        adapter(randn(1, 5, 3, 4, 6, seed=1))


# ----------------------------------------------------------------------------------------------
# The pipeline against hand-written loops (Tora mode)
# ----------------------------------------------------------------------------------------------


def hand_written(pipe, trajectory, guidance_scale, trajectory_scale=0.0, strength=1.0, image=None, steps=2):
    """The loop spelled out: tracks -> flow video -> VAE -> adapter terms, once; each block's input
    h + GN(h) gamma + beta; CFG with the trajectory in both passes, or trajectory guidance against no trajectory."""
    dit, adapter, vae = pipe.transformer, pipe.trajectory_adapter, pipe.vae
    cfg = dit.config
    condition = None
    if cfg.in_channels != cfg.out_channels:
        condition = (torch.zeros(1, cfg.in_channels - cfg.out_channels, *LATENT_SHAPE[2:]) if image is None else
                     image_condition(vae, load_image(image)[None] * 2 - 1, 9))
    tracks = tracks_from(trajectory, 9, 32, 48)
    terms = adapter(motion_latents(vae, *tracks, 32, 48))

    def e(x, t, text, traj):
        x_in = x if condition is None else torch.cat([x, condition], 1)
        mods = None
        if traj is not None:
            mods = [MotionModulation(strength * g, strength * b, (3, 2, 3), fuser.norm)
                    for (g, b), fuser in zip(terms, adapter.fusers)]
        return dit(x_in, t.expand(1), text, block_modulations=mods).sample

    return camera_guided_loop(e, NOISE.clone(), EMBEDS["prompt_embeds"], EMBEDS["negative_prompt_embeds"], "on",
                              None, steps, guidance_scale, trajectory_scale, 1.0, (0.0, 1.0))


CASES = {"cfg": dict(), "cfg-strength": dict(strength=0.5), "guided": dict(trajectory_scale=3.0)}


@pytest.mark.parametrize("case", list(CASES))
def test_t2v_base_matches_the_hand_written_loop(t2v_parts, case):
    c = CASES[case]
    pipe = trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    with torch.no_grad():
        expected = hand_written(pipe, TRACK, 5.0, **c)
    got = run(pipe, trajectory=TRACK, guidance_scale=5.0, trajectory_guidance_scale=c.get("trajectory_scale", 0.0),
              trajectory_strength=c.get("strength", 1.0))
    assert got.shape == LATENT_SHAPE and max_abs_diff(got, expected) <= 1e-5
    if case == "cfg":  # the trajectory really steers the result
        assert max_abs_diff(run(pipe, trajectory="44,28 4,4", guidance_scale=5.0), got) > 1e-3


@pytest.mark.parametrize("image", [None, 2])
def test_i2v_layout_base_matches_the_hand_written_loop(i2v, image):
    parts = i2v[1]
    pipe = trajectory_pipe(parts, trained_adapter(parts["transformer"]), image_optional=True)
    image = None if image is None else random_image(image)
    with torch.no_grad():
        expected = hand_written(pipe, TRACK, 4.0, trajectory_scale=2.0, image=image)
    got = run(pipe, image=image, trajectory=TRACK, guidance_scale=4.0, trajectory_guidance_scale=2.0)
    assert max_abs_diff(got, expected) <= 1e-5


def test_untrained_adapter_pipeline_equals_the_base_pipelines(t2v_parts, i2v):
    t2v = TextToVideoPipeline(**t2v_parts)
    t2v.set_progress_bar_config(disable=True)
    base = t2v(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", "guidance_scale": 5.0}).frames
    fresh = TrajectoryAdapter.for_transformer(t2v_parts["transformer"], channels=8)
    assert torch.equal(run(trajectory_pipe(t2v_parts, fresh), trajectory=TRACK, guidance_scale=5.0), base)
    parts = i2v[1]
    ref = ImageToVideoPipeline(**parts)
    ref.set_progress_bar_config(disable=True)
    image = random_image(3)
    base = ref(image=image, **{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent"}).frames
    fresh = TrajectoryAdapter.for_transformer(parts["transformer"], channels=8)
    assert torch.equal(run(trajectory_pipe(parts, fresh), image=image, trajectory=TRACK), base)


def test_batched_equals_sequential(t2v_parts):
    pipe = trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    guidance = Guidance(MultiCondition(5.0, extra_scale=3.0), STG(1.0, blocks=[1], mode="attention"))
    two = {"tracks": [[[4, 4], [44, 28]], [[40, 4], [8, 30]]], "visible": [[True, True], [True, False]]}
    batched = run(pipe, trajectory=two, guidance=guidance, batch_guidance=True)
    sequential = run(pipe, trajectory=two, guidance=guidance, batch_guidance=False)
    assert max_abs_diff(batched, sequential) <= 1e-5


# ----------------------------------------------------------------------------------------------
# ATI and Wan-Move against diffusers' WanImageToVideoPipeline with the published transform
# ----------------------------------------------------------------------------------------------


@pytest.fixture()
def _oracle_prompt_cleaning():
    """diffusers' I2V pipeline calls ftfy unconditionally (not installed here); give it WanPipeline's cleaning."""
    saved = wan_i2v.prompt_clean
    wan_i2v.prompt_clean = wan_t2v.prompt_clean
    yield
    wan_i2v.prompt_clean = saved


@pytest.mark.parametrize("mode", ["ati", "wan-move"])
def test_ati_and_wan_move_equal_diffusers_with_the_condition_rewritten(i2v, mode, tmp_path, _oracle_prompt_cleaning):
    ref_parts, _ = i2v
    ref = WanImageToVideoPipeline(**ref_parts)
    ref.set_progress_bar_config(disable=True)
    ref.save_pretrained(tmp_path / "wan")
    pipe = TrajectoryControlPipeline.from_wan(tmp_path / "wan", trajectory_mode=mode)
    pipe.set_progress_bar_config(disable=True)
    tracks = tracks_from({"tracks": [[[6, 6], [40, 26]], [[30, 20], [10, 8]]]}, 9, 32, 48)
    transform = ati_condition if mode == "ati" else wan_move_condition
    prepare = ref.prepare_latents

    def rewritten(*a, **k):  # diffusers' condition [B, 4 + z, F', h, w] through the published transform
        latents, condition = prepare(*a, **k)
        return latents, torch.stack([transform(c, *tracks) for c in condition])

    ref.prepare_latents = rewritten
    image = random_image(4)
    kw = dict(image=image, prompt="a red circle and a blue square", height=32, width=48, num_frames=9,
              num_inference_steps=2, guidance_scale=4.0, output_type="latent")
    expected = ref(**kw, generator=torch.Generator().manual_seed(0)).frames
    got = pipe(**kw, trajectory=tracks, generator=torch.Generator().manual_seed(0)).frames
    assert max_abs_diff(torch.as_tensor(got), torch.as_tensor(expected)) <= 1e-5
    plain = ImageToVideoPipeline.from_wan(tmp_path / "wan")
    plain.set_progress_bar_config(disable=True)
    untouched = plain(**kw, generator=torch.Generator().manual_seed(0)).frames
    assert max_abs_diff(torch.as_tensor(got), torch.as_tensor(untouched)) > 1e-4  # the tracks changed the result
    with pytest.raises(ValueError, match="pass image="):
        pipe(**{**kw, "image": None}, trajectory=tracks)


# ----------------------------------------------------------------------------------------------
# Saving, loading, the command line, bad input
# ----------------------------------------------------------------------------------------------


def test_saved_whole_and_adapter_only_and_loaded_back(t2v_parts, tmp_path):
    from videogen.loading import is_trajectory_control, load_pipeline

    pipe = trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    pipe.save_pretrained(tmp_path / "whole")
    index = json.loads((tmp_path / "whole" / "model_index.json").read_text())
    assert index["trajectory_adapter"][1] == "TrajectoryAdapter" and is_trajectory_control(tmp_path / "whole")
    expected = run(pipe, trajectory=TRACK)
    again = load_pipeline(tmp_path / "whole")
    again.set_progress_bar_config(disable=True)
    assert max_abs_diff(run(again, trajectory=TRACK), expected) <= 1e-5
    TextToVideoPipeline(**t2v_parts).save_pretrained(tmp_path / "base")
    pipe.save_adapter(tmp_path / "adapter", base=tmp_path / "base")
    assert json.loads((tmp_path / "adapter" / "base.json").read_text())["base"] == "../base"
    assert not (tmp_path / "adapter" / "transformer").exists()
    alone = load_pipeline(tmp_path / "adapter")
    alone.set_progress_bar_config(disable=True)
    assert type(alone.trajectory_adapter) is TrajectoryAdapter
    assert max_abs_diff(run(alone, trajectory=TRACK), expected) <= 1e-5


def test_videogen_generate_with_a_trajectory_and_its_errors(t2v_parts, tmp_path):
    """A fresh process: the adapter-only directory loads over its base; --trajectory in both forms; a trajectory
    for a model without an adapter is an error before anything loads."""
    from test_training import run_cli

    TextToVideoPipeline(**t2v_parts).save_pretrained(tmp_path / "base")
    trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"])).save_adapter(tmp_path / "traj",
                                                                                      tmp_path / "base")
    (tmp_path / "tracks.json").write_text(json.dumps({"tracks": [[[4, 4], [20, 10], [44, 28]]]}))
    small = ["--height", "32", "--width", "48", "--num-frames", "9", "--steps", "2"]
    for form in (TRACK, str(tmp_path / "tracks.json")):
        proc = run_cli("generate", "a red circle", "--model", str(tmp_path / "traj"), "--trajectory", form, *small,
                       "--out", str(tmp_path / "out.mp4"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (tmp_path / "out.mp4").stat().st_size > 0
    proc = run_cli("generate", "a red circle", "--model", str(tmp_path / "base"), "--trajectory", TRACK, *small)
    assert proc.returncode != 0 and "has no trajectory adapter" in proc.stderr
    proc = run_cli("generate", "a red circle", "--model", str(tmp_path / "traj"), "--trajectory-scale", "2", *small)
    assert proc.returncode != 0 and "need --trajectory" in proc.stderr
    proc = run_cli("generate", "a red circle", "--model", str(tmp_path / "traj"), "--trajectory", "4,4 oops", *small)
    assert proc.returncode != 0 and "oops" in proc.stderr


def test_bad_trajectories(t2v_parts):
    pipe = trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    with pytest.raises(ValueError, match="NaN"):
        run(pipe, trajectory=[[[1.0, float("nan")], [3.0, 4.0]]])
    with pytest.raises(ValueError, match="shape \\[N, F, 2\\]"):
        run(pipe, trajectory=torch.zeros(2, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(pipe, prompt_embeds=None, negative_prompt_embeds=None, prompt="a red circle",
            trajectory=[[[4, 4], [90, 10]], [[8, 8], [9, 9]]], max_sequence_length=16)
    text = " ".join(str(w.message) for w in caught)
    assert "outside the 48x32 frame and were clipped" in text
    assert "2 tracks but the prompt names 1 object" in text
    with pytest.raises(ValueError, match="no trajectory adapter and no trajectory mode"):
        run(trajectory_pipe(t2v_parts), trajectory=TRACK)
    with pytest.raises(ValueError, match="rewrites Wan's image-to-video condition"):
        run(trajectory_pipe(t2v_parts, trajectory_mode="ati"), trajectory=TRACK)
    with pytest.warns(UserWarning, match="no trajectory was given"):
        run(pipe)
    assert count_named_objects("a circle and a red square") == 2 and count_named_objects("a cat") == 0


def test_step_cache_composes_with_the_adapter(t2v_parts):
    from videogen.step_cache import StepCache

    pipe = trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    kw = dict(trajectory=TRACK, guidance_scale=4.0, trajectory_guidance_scale=2.0, num_inference_steps=6)
    plain = run(pipe, **kw)
    out = pipe(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", **kw},
               step_cache=StepCache("teacache", threshold=0.0))
    assert torch.equal(out.frames, plain)  # a threshold that skips nothing: bit for bit
    out = pipe(**{**ARGS, **EMBEDS, "latents": NOISE.clone(), "output_type": "latent", **kw},
               step_cache=StepCache("teacache", speedup=2.0))
    assert out.step_cache["num_computed"] <= 3 and torch.isfinite(out.frames).all()
    assert max_abs_diff(out.frames, plain) > 0


def test_export_of_an_adapter_only_directory(t2v_parts, tmp_path):
    from videogen.export import export_pipeline
    from videogen.integrity import verify_checkpoint
    from videogen.loading import load_pipeline

    TextToVideoPipeline(**t2v_parts).save_pretrained(tmp_path / "models" / "base")
    pipe = trajectory_pipe(t2v_parts, trained_adapter(t2v_parts["transformer"]))
    pipe.save_adapter(tmp_path / "runs" / "final", base=tmp_path / "models" / "base")
    ship = export_pipeline(tmp_path / "runs" / "final", tmp_path / "models" / "traj", generation_config={"steps": 3})
    assert json.loads((ship / "base.json").read_text())["base"] == "../base"  # re-pointed from its new place
    assert not (ship / "transformer").exists() and verify_checkpoint(ship) >= 4
    weights = ship / "trajectory_adapter" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(weights)).values()} == {torch.float16}
    assert json.loads((ship / "generation_config.json").read_text())["steps"] == 3
    loaded = load_pipeline(ship)
    loaded.set_progress_bar_config(disable=True)
    assert max_abs_diff(run(loaded, trajectory=TRACK), run(pipe, trajectory=TRACK)) < 0.05  # fp16 weights
