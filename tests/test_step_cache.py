"""Step caching in the shared loop (videogen.step_cache, pipelines/base.py): no cache and a threshold that skips
nothing are bit for bit the plain loop; skipped steps equal a hand-written loop that reuses the block stack's
residual per guidance pass (TeaCache, MagCache, first-block); plans are deterministic and hit the speed-up; the
camera adapter, I2V, LoRA and batched/sequential guidance compose with it."""

import types

import pytest
import torch

from _oracle import max_abs_diff, perturb_parameters, randn
from _tiny import tiny_i2v_pipeline_parts, tiny_pipeline_parts
from pipelines import CameraControlPipeline, ImageToVideoPipeline, TextToVideoPipeline
from videogen.caching import TEACACHE_COEFFICIENTS, relative_l1, teacache_schedule, threshold_for_speedup
from videogen.guidance import CFG, STG, Guidance
from videogen.models.adapters import CameraControlNet
from videogen.models.transformer import timestep_embedding
from videogen.step_cache import StepCache, published_coefficients, step_cache_from_settings

pytestmark = pytest.mark.filterwarnings("ignore:TeaCache")  # the tiny DiT has no calibrated polynomial
STEPS = 10
ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=STEPS, output_type="latent")
NOISE = randn(1, 4, 3, 4, 6, seed=41)
RATIOS = [1.0, 1.0, 0.99, 0.985, 0.98, 0.975, 0.97, 0.96, 0.95, 0.93]


def text_states(seed):
    states = randn(1, 512, 16, seed=seed)
    states[:, 7:] = 0
    return states


COND, UNCOND = text_states(42), text_states(43)


def guidance():
    """CFG and STG-A on block 1: three passes with three different residuals."""
    return Guidance(CFG(4.0), STG(1.0, blocks=[1], mode="attention"))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return tiny_pipeline_parts(tmp_path_factory.mktemp("t2v"))[1]


@pytest.fixture(scope="module")
def pipe(parts):
    p = TextToVideoPipeline(**parts)
    p.set_progress_bar_config(disable=True)
    return p


def run(pipe, **kw):
    kw = {**ARGS, "prompt_embeds": COND, "negative_prompt_embeds": UNCOND, "latents": NOISE.clone(),
          "guidance": guidance(), **kw}
    return pipe(**kw)


# ----------------------------------------------------------------------------------------------
# A hand-written reference: the plain DiT forward per step, block-stack tensors taken with hooks
# ----------------------------------------------------------------------------------------------


def forward_with_taps(dit, x, t, text, attn):
    """The DiT's own forward; returns (output, stack input, block 0's output, stack output)."""
    taps = {}
    hooks = [dit.blocks[0].register_forward_pre_hook(lambda m, a: taps.__setitem__("in", a[0])),
             dit.blocks[0].register_forward_hook(lambda m, a, o: taps.__setitem__("first", o)),
             dit.blocks[-1].register_forward_hook(lambda m, a, o: taps.__setitem__("out", o))]
    try:
        out = dit(x, t, text, skip_self_attention=attn).sample
    finally:
        for h in hooks:
            h.remove()
    return out, taps["in"], taps["first"], taps["out"]


@torch.no_grad()
def reference_loop(pipe, compute=None, first_block=None):
    """Sampling by hand: ``compute[i]`` False reuses, per pass, the stack residual of the last computed step
    (``head(x_in + r)``); ``first_block`` = threshold: block 0 always fresh, the rest reused while its residual's
    relative L1 change since the last computed step is below the threshold. Returns (latents, computed steps)."""
    dit, sched, g = pipe.transformer, pipe.scheduler, guidance()
    sched.set_timesteps(STEPS)
    sched.set_begin_index(0)
    g.reset()
    latents, residuals, previous_first, computed = NOISE.clone(), {}, None, []
    n = len(sched.timesteps)
    for i, t in enumerate(sched.timesteps):
        passes = g.passes(i, n)
        x = torch.cat([latents] * len(passes))
        text = torch.cat([COND if p.text else UNCOND for p in passes])
        attn = torch.zeros(len(passes), len(dit.blocks), dtype=torch.bool)
        for k, p in enumerate(passes):
            attn[k, list(p.skip_attention)] = True
        attn = attn if attn.any() else None
        tt = t.expand(len(passes))
        out, x_in, first, x_out = forward_with_taps(dit, x, tt, text, attn)
        if first_block is not None:
            r0 = first - x_in
            do = previous_first is None or relative_l1(r0, previous_first) >= first_block
            if do:
                previous_first = r0
                residuals = dict(zip(passes, (x_out - first).chunk(len(passes))))
            else:
                state = dit.embed(x, tt, text)
                out = dit.finish(state, first + torch.cat([residuals[p] for p in passes]))
        else:
            do = compute is None or compute[i]
            if do:
                residuals = dict(zip(passes, (x_out - x_in).chunk(len(passes))))
            else:
                state = dit.embed(x, tt, text)
                out = dit.finish(state, state.x + torch.cat([residuals[p] for p in passes]))
        computed += [i] if do else []
        preds = dict(zip(passes, out.float().chunk(len(passes))))
        latents = sched.step(g.combine(preds, i, n), t, latents, return_dict=False)[0]
    return latents, computed


def test_no_cache_is_the_plain_loop_bit_for_bit(pipe):
    out = run(pipe)
    expected, computed = reference_loop(pipe)
    assert torch.equal(out.frames, expected) and out.step_cache is None and computed == list(range(STEPS))


@pytest.mark.parametrize("cache", [StepCache("teacache", threshold=0.0), StepCache("first-block", threshold=0.0),
                                   StepCache("magcache", threshold=0.0, mag_ratios=RATIOS)])
def test_a_threshold_that_skips_nothing_is_bit_exact(pipe, cache):
    plain = run(pipe).frames
    out = run(pipe, step_cache=cache)
    assert torch.equal(out.frames, plain)
    assert out.step_cache["computed_steps"] == list(range(STEPS)) and out.step_cache["num_computed"] == STEPS


@pytest.mark.parametrize("cache", [StepCache("teacache", speedup=2.0), StepCache("teacache", speedup=2.5),
                                   StepCache("magcache", speedup=2.0, mag_ratios=RATIOS)])
def test_skipped_steps_reuse_each_pass_residual_as_the_hand_written_loop(pipe, cache):
    out = run(pipe, step_cache=cache)
    computed = out.step_cache["computed_steps"]
    assert 0 < len(computed) <= STEPS / cache.speedup
    schedule = [i in computed for i in range(STEPS)]
    expected, ref_computed = reference_loop(pipe, compute=schedule)
    assert ref_computed == computed
    assert torch.equal(out.frames, expected)
    assert max_abs_diff(out.frames, run(pipe).frames) > 1e-4  # skipping did change the result


def test_one_residual_for_all_passes_would_differ(pipe):
    """The passes' residuals differ, so reusing one of them for every pass is not the same loop."""
    cache = StepCache("teacache", speedup=2.0)
    out = run(pipe, step_cache=cache).frames
    schedule = [i in run(pipe, step_cache=cache).step_cache["computed_steps"] for i in range(STEPS)]
    dit = pipe.transformer
    original = dit.finish

    def shared_residual(state, x):  # a broken cache: every pass gets the first pass's stack output shift
        chunks = (x - state.x).chunk(3)
        return original(state, state.x + torch.cat([chunks[0]] * 3))

    dit.finish = shared_residual
    try:
        broken, _ = reference_loop(pipe, compute=schedule)
    finally:
        del dit.finish
    assert max_abs_diff(out, broken) > 1e-4


def test_first_block_cache_matches_the_hand_written_loop(pipe):
    thresholds = [0.02, 0.05, 0.1, 0.2]
    outs = [run(pipe, step_cache=StepCache("first-block", threshold=thr)) for thr in thresholds]
    counts = [o.step_cache["num_computed"] for o in outs]
    assert counts == sorted(counts, reverse=True) and any(1 < c < STEPS for c in counts)
    for thr, o in zip(thresholds, outs):
        expected, computed = reference_loop(pipe, first_block=thr)
        assert computed == o.step_cache["computed_steps"]
        assert torch.equal(o.frames, expected)


# ----------------------------------------------------------------------------------------------
# Plans
# ----------------------------------------------------------------------------------------------


def test_teacache_plan_from_the_time_embeddings_by_hand(pipe):
    dit = pipe.transformer
    pipe.scheduler.set_timesteps(STEPS)
    ts = pipe.scheduler.timesteps
    emb = [dit.time_embedding(timestep_embedding(t[None], dit.config.freq_dim)) for t in ts]
    changes = [0.0] + [float((emb[i] - emb[i - 1]).abs().mean() / emb[i - 1].abs().mean()) for i in range(1, STEPS)]
    coefficients = [1.0, -0.5, 2.0, 0.1, 0.0]
    thr, schedule = threshold_for_speedup(lambda th: teacache_schedule(changes, th, coefficients), 2.0)
    cache = StepCache("teacache", speedup=2.0, coefficients=coefficients)
    first = cache.start(dit, ts)
    second = cache.start(dit, ts)
    assert first.compute == second.compute == schedule and first.threshold == pytest.approx(thr)
    assert schedule[0] and schedule[-1] and sum(schedule) <= STEPS / 2
    assert run(pipe, step_cache=cache).step_cache["computed_steps"] == [i for i, c in enumerate(schedule) if c]


def test_published_polynomial_for_wan_shapes():
    wan13 = types.SimpleNamespace(dim=1536, num_layers=30, in_channels=16)
    wan14i2v = types.SimpleNamespace(dim=5120, num_layers=40, in_channels=36)
    assert published_coefficients(wan13) == [2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00,
                                             1.37887774e-01]
    assert published_coefficients(wan14i2v, "e0") == TEACACHE_COEFFICIENTS[("i2v-14b-480p", "e0")]
    assert published_coefficients(types.SimpleNamespace(dim=128, num_layers=4, in_channels=16)) is None


def test_settings_and_errors(pipe):
    assert step_cache_from_settings(None, None, None) is None
    assert step_cache_from_settings(None, 2.0, None).policy == "teacache"
    assert step_cache_from_settings("magcache", None, 0.1).threshold == 0.1
    with pytest.raises(ValueError, match="policy"):
        StepCache("taylorseer")
    with pytest.raises(ValueError, match="not both"):
        StepCache("teacache", speedup=2.0, threshold=0.1)
    with pytest.raises(ValueError, match="cache-calibrate"):
        run(pipe, step_cache="magcache")
    with pytest.raises(ValueError, match="threshold"):
        run(pipe, step_cache=StepCache("first-block", speedup=2.0))
    assert pipe._step_cache_run is None  # a failed start leaves no cache behind


def test_progress_bar_shows_the_steps_computed(parts, capsys):
    p = TextToVideoPipeline(**parts)
    run(p, step_cache=StepCache("teacache", speedup=2.0))
    assert "computed 5/10" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Composition: batched / sequential passes, camera adapter residuals, I2V, LoRA
# ----------------------------------------------------------------------------------------------


def test_batched_equals_sequential_with_a_cache(pipe):
    for cache in (StepCache("teacache", speedup=2.0), StepCache("first-block", threshold=0.05)):
        batched = run(pipe, step_cache=cache)
        sequential = run(pipe, step_cache=cache, batch_guidance=False)
        assert batched.step_cache["computed_steps"] == sequential.step_cache["computed_steps"]
        assert max_abs_diff(batched.frames, sequential.frames) <= 1e-5


def test_camera_adapter_with_motion_guidance(parts, monkeypatch):
    torch.manual_seed(0)
    adapter = CameraControlNet.for_transformer(parts["transformer"], num_layers=2, dim=24, num_heads=2)
    perturb_parameters(adapter, scale=0.1, seed=8)
    cam = CameraControlPipeline(**parts, camera_adapter=adapter.eval())
    cam.set_progress_bar_config(disable=True)
    kw = dict(camera="pan-left", guidance_scale=4.0, camera_guidance_scale=2.0, guidance=None)
    plain = run(cam, **kw).frames
    assert torch.equal(run(cam, **kw, step_cache=StepCache("teacache", threshold=0.0)).frames, plain)
    calls = []
    original = adapter.block_residuals
    monkeypatch.setattr(adapter, "block_residuals", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = run(cam, **kw, step_cache=StepCache("teacache", speedup=2.0))
    computed = out.step_cache["num_computed"]
    assert computed <= STEPS / 2 and len(calls) == 2 * computed  # camera and null camera, computed steps only
    assert max_abs_diff(out.frames, plain) < 0.5 * plain.abs().max()


def test_image_to_video(tmp_path):
    i2v = ImageToVideoPipeline(**tiny_i2v_pipeline_parts(tmp_path)[1])
    i2v.set_progress_bar_config(disable=True)
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(5))
    plain = run(i2v, image=image).frames
    assert torch.equal(run(i2v, image=image, step_cache=StepCache("first-block", threshold=0.0)).frames, plain)
    out = run(i2v, image=image, step_cache=StepCache("teacache", speedup=2.0))
    assert out.step_cache["num_computed"] <= STEPS / 2 and torch.isfinite(out.frames).all()


def test_lora(parts):
    p = TextToVideoPipeline(**parts)
    p.set_progress_bar_config(disable=True)
    before = run(p, step_cache=StepCache("teacache", speedup=2.0)).frames
    dit = p.transformer
    from peft import LoraConfig

    dit.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["q", "v"], init_lora_weights=False),
                    adapter_name="test")
    try:
        plain = run(p).frames
        assert torch.equal(run(p, step_cache=StepCache("teacache", threshold=0.0)).frames, plain)
        with_lora = run(p, step_cache=StepCache("teacache", speedup=2.0)).frames
        assert max_abs_diff(with_lora, before) > 1e-4  # the LoRA acts on the computed steps
    finally:
        dit.delete_adapters("test")
