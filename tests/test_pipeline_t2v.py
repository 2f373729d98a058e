"""TextToVideoPipeline against diffusers' WanPipeline, plus batched == sequential guidance and input checks."""

import numpy as np
import pytest
import torch
from diffusers import WanPipeline

from _oracle import max_abs_diff
from _tiny import tiny_pipeline_parts
from pipelines import TextToVideoPipeline
from videogen.guidance import CFG, STG, APG, CFGZeroStar, Guidance

ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=3, guidance_scale=4.0)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    ref, ours = tiny_pipeline_parts(tmp_path_factory.mktemp("t2v"))
    ref_pipe = WanPipeline(**ref)
    ours_pipe = TextToVideoPipeline(**ours)
    for p in (ref_pipe, ours_pipe):
        p.set_progress_bar_config(disable=True)
    return ref_pipe, ours_pipe


def run(pipe, **kw):
    return pipe(**{**ARGS, **kw}, generator=torch.Generator().manual_seed(0)).frames


@pytest.mark.parametrize("output_type", ["latent", "np"])
def test_matches_wan_pipeline_from_prompts(pipes, output_type):
    ref, ours = pipes
    prompts = ["a red circle moving left", "a blue square on a white background"]
    kw = dict(prompt=prompts, negative_prompt=["green", "a triangle"], output_type=output_type)
    expected, got = run(ref, **kw), run(ours, **kw)
    got_t, exp_t = torch.as_tensor(np.asarray(got)), torch.as_tensor(np.asarray(expected))
    assert got_t.shape == exp_t.shape
    if output_type == "latent":
        assert got_t.ndim == 5 and got_t.shape == (2, 4, 3, 4, 6)
    else:
        assert got_t.shape == (2, 9, 32, 48, 3)
    assert max_abs_diff(got_t, exp_t) <= 1e-5


def test_matches_wan_pipeline_from_embeds(pipes):
    ref, ours = pipes
    gen = torch.Generator().manual_seed(3)
    embeds, negative = torch.randn(1, 512, 16, generator=gen), torch.randn(1, 512, 16, generator=gen)
    embeds[:, 6:] = 0
    kw = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, output_type="latent", num_videos_per_prompt=2)
    assert max_abs_diff(run(ours, **kw), run(ref, **kw)) <= 1e-5


def test_batched_equals_sequential_guidance(pipes):
    _, ours = pipes
    guidance = Guidance(CFG(4.0), STG(1.0, blocks=[1], mode="attention"), STG(0.5, blocks=[0, 2], mode="block"))
    kw = dict(prompt="a red circle", guidance=guidance, output_type="latent")
    batched = run(ours, batch_guidance=True, **kw)
    sequential = run(ours, batch_guidance=False, **kw)
    assert max_abs_diff(batched, sequential) <= 1e-5


def test_stg_changes_output_and_zero_scale_is_plain_cfg(pipes):
    _, ours = pipes
    plain = run(ours, prompt="a red circle", output_type="latent")
    calls = []
    orig = ours.transformer.forward

    def counting(*a, **k):
        calls.append(k["hidden_states"].shape[0])
        return orig(*a, **k)

    ours.transformer.forward = counting
    try:
        zero = run(ours, prompt="a red circle", guidance=Guidance(CFG(4.0), STG(0.0, blocks=[1])), output_type="latent")
    finally:
        ours.transformer.forward = orig
    assert torch.equal(zero, plain)
    assert calls == [2, 2, 2]  # STG at scale 0 costs no pass: cond + uncond per step only
    for mode in ("block", "attention"):
        stg = run(ours, prompt="a red circle", guidance=Guidance(CFG(4.0), STG(1.0, blocks=[1], mode=mode)),
                  output_type="latent")
        assert max_abs_diff(stg, plain) > 1e-4


def test_other_guiders_run_and_differ(pipes):
    _, ours = pipes
    plain = run(ours, prompt="a red circle", output_type="latent")
    for g in (CFG(4.0, rescale=0.7), CFGZeroStar(4.0), APG(4.0, momentum=-0.5, norm_threshold=5.0)):
        out = run(ours, prompt="a red circle", guidance=g, output_type="latent")
        assert torch.isfinite(out).all() and max_abs_diff(out, plain) > 1e-6, g


def test_output_types_and_callback(pipes):
    _, ours = pipes
    seen = []

    def cb(pipe, i, t, tensors):
        seen.append((i, tuple(tensors["latents"].shape)))
        return {"latents": tensors["latents"]}

    out = run(ours, prompt="a red circle", output_type="pt", callback_on_step_end=cb)
    assert out.shape == (1, 9, 3, 32, 48) and 0 <= out.min() and out.max() <= 1
    assert seen == [(0, (1, 4, 3, 4, 6)), (1, (1, 4, 3, 4, 6)), (2, (1, 4, 3, 4, 6))]
    pil = run(ours, prompt="a red circle", output_type="pil", num_inference_steps=1)
    assert len(pil) == 1 and len(pil[0]) == 9 and pil[0][0].size == (48, 32)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(num_frames=10), "num_frames must be 1 + 4k (1, 5, 9, ...); got 10; nearest valid values: 9, 13"),
        (dict(height=40), "height must be a multiple of 16; got 40; nearest valid values: 32, 48"),
        (dict(width=8), "width must be a multiple of 16; got 8; nearest valid values: 16"),
        (dict(num_inference_steps=-1), "num_inference_steps must be a positive integer"),
        (dict(guidance_scale=-2.0), "guidance_scale must be >= 0"),
        (dict(output_type="gif"), "output_type must be one of"),
        (dict(negative_prompt=["x", "y"]), "negative_prompt has 2 entries but there are 1 prompts"),
        (dict(negative_prompt_embeds=torch.zeros(2, 512, 16)), "negative_prompt_embeds has batch size 2"),
        (dict(callback_on_step_end_tensor_inputs=["noise"]), "are not in"),
    ],
)
def test_validation_messages(pipes, kw, message):
    _, ours = pipes
    with pytest.raises(ValueError) as err:
        run(ours, prompt="a red circle", **kw)
    assert message in str(err.value)


def test_stg_arguments_are_checked():
    with pytest.raises(ValueError, match="must be >= 0"):
        STG(-1.0)
    with pytest.raises(ValueError, match="'block' .* or 'attention'"):
        STG(1.0, mode="residual")
    with pytest.raises(ValueError, match="0 <= start <= stop <= 1"):
        CFG(3.0, start=0.5, stop=0.2)


def test_save_and_load_our_layout(pipes, tmp_path):
    _, ours = pipes
    ours.save_pretrained(tmp_path / "pipe")
    again = TextToVideoPipeline.from_pretrained(tmp_path / "pipe")
    again.set_progress_bar_config(disable=True)
    assert torch.equal(run(again, prompt="a red circle", output_type="latent"),
                       run(ours, prompt="a red circle", output_type="latent"))


def test_from_wan_diffusers_directory(pipes, tmp_path):
    ref, _ = pipes
    ref.save_pretrained(tmp_path / "wan")
    loaded = TextToVideoPipeline.from_wan(tmp_path / "wan")
    loaded.set_progress_bar_config(disable=True)
    kw = dict(prompt="a red circle moving left", output_type="latent")
    assert max_abs_diff(run(loaded, **kw), run(ref, **kw)) <= 1e-5
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        TextToVideoPipeline.from_wan(tmp_path / "wan" / "vae")


def test_memory_options(pipes):
    """VAE tiling from the pipeline equals WanPipeline with diffusers' tiling; the full-sequence decode equals the
    streaming one; bf16 runs close to fp32; CPU offload needs an accelerator and says so."""
    ref, ours = pipes
    kw = dict(prompt="a red circle", output_type="np")
    base = run(ours, **kw)
    tiles = dict(tile_sample_min_height=16, tile_sample_min_width=32, tile_sample_stride_height=8,
                 tile_sample_stride_width=16)
    ours.vae.enable_tiling(**tiles)
    ref.vae.enable_tiling(**tiles)
    try:
        tiled, ref_tiled = run(ours, **kw), run(ref, **kw)
    finally:
        ours.vae.disable_tiling()
        ref.vae.disable_tiling()
    assert np.abs(tiled - ref_tiled).max() <= 1e-4
    assert np.abs(tiled - base).max() > 1e-3  # tiling really happened
    ours.vae.use_streaming = False
    try:
        full = run(ours, **kw)
    finally:
        ours.vae.use_streaming = True
    assert np.abs(full - base).max() <= 1e-5

    from videogen.convert.wan import cast_keeping_fp32
    import copy
    bf16 = copy.deepcopy(ours)
    cast_keeping_fp32(bf16.transformer, torch.bfloat16)
    low = run(bf16, prompt="a red circle", output_type="latent")
    high = run(ours, prompt="a red circle", output_type="latent")
    assert low.dtype == torch.float32 and (low - high).abs().max() < 0.1 * high.abs().max()

    if torch.cuda.is_available():
        offloaded = copy.deepcopy(ours)
        offloaded.enable_model_cpu_offload()
        assert max_abs_diff(run(offloaded, **kw), base) < 1e-3
    else:
        with pytest.raises(RuntimeError, match="requires accelerator"):
            copy.deepcopy(ours).enable_model_cpu_offload()


def test_matches_wan_pipeline_with_euler_scheduler(pipes):
    from pipelines import make_scheduler

    ref, ours = pipes
    saved = ref.scheduler, ours.scheduler
    ref.scheduler, ours.scheduler = make_scheduler("euler", flow_shift=5.0), make_scheduler("euler", flow_shift=5.0)
    try:
        kw = dict(prompt="a green triangle moving up", output_type="latent")
        euler = run(ours, **kw)
        assert max_abs_diff(euler, run(ref, **kw)) <= 1e-5
    finally:
        ref.scheduler, ours.scheduler = saved
    assert max_abs_diff(euler, run(ours, **kw)) > 1e-3  # the scheduler choice matters
    with pytest.raises(ValueError, match="unknown scheduler 'ddim'"):
        make_scheduler("ddim")
