"""Step-cache calibration (videogen.cache_calibration) against residuals taken by hand, `videogen cache-calibrate`
writing generation_config.json (read back by the pipeline), --step-cache / --speedup / --attention on generate and
eval, and the attention backends (native equals SDPA; a missing backend is a clear error)."""

import json

import numpy as np
import pytest
import torch

from _tiny import tiny_pipeline_parts
from pipelines import TextToVideoPipeline
from videogen.cache_calibration import calibrate
from videogen.caching import relative_l1, teacache_schedule
from videogen.cli import main
from videogen.guidance import CFG, Guidance
from videogen.integrity import verify_checkpoint, write_checksums
from videogen.models.attention import check_attention_backend
from videogen.step_cache import StepCache, input_changes

SIZE = dict(height=32, width=48, num_frames=9)
CLI_SIZE = ["--height", "32", "--width", "48", "--num-frames", "9"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    _, parts = tiny_pipeline_parts(root)
    TextToVideoPipeline(**parts).save_pretrained(root / "pipe")
    (root / "pipe" / "generation_config.json").write_text(json.dumps({"steps": 6, "max_sequence_length": 16}))
    write_checksums(root / "pipe")
    return root / "pipe"


def test_calibration_against_residuals_taken_by_hand(model_dir):
    pipe = TextToVideoPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(**SIZE, num_inference_steps=6, guidance=Guidance(CFG(4.0)), max_sequence_length=16)
    prompts = ["a red circle moving left", "a blue square"]
    result = calibrate(pipe, prompts, kwargs, seed=3)

    dit, taps = pipe.transformer, []
    hooks = [dit.blocks[0].register_forward_pre_hook(lambda m, a: taps.append([a[0]])),
             dit.blocks[-1].register_forward_hook(lambda m, a, o: taps[-1].append(o))]
    try:
        for k, prompt in enumerate(prompts):
            pipe(prompt=prompt, **kwargs, generator=torch.Generator().manual_seed(3 + k), output_type="latent")
    finally:
        for h in hooks:
            h.remove()
    residuals = [[(o - i)[b] for b in range(2)] for i, o in taps]  # per forward: cond, uncond
    changes, ratios = [], []
    for step in range(1, 6):
        pairs = [(residuals[run * 6 + step][b], residuals[run * 6 + step - 1][b]) for run in range(2) for b in range(2)]
        changes.append(np.mean([relative_l1(r, r0) for r, r0 in pairs]))
        ratios.append(np.mean([float((r.norm(dim=-1) / r0.norm(dim=-1)).mean()) for r, r0 in pairs]))
    assert result["magcache"]["mag_ratios"] == pytest.approx([1.0] + ratios, rel=1e-5)
    assert result["residual_changes"][1:] == pytest.approx(changes, rel=1e-5)
    pipe.scheduler.set_timesteps(6)
    x = input_changes(dit, pipe.scheduler.timesteps)[1:]
    assert result["teacache"]["coefficients"] == pytest.approx(np.polyfit(x, changes, 4).tolist(), rel=1e-4)
    assert result["steps"] == 6 and result["prompts"] == prompts


def test_cache_calibrate_writes_the_config_and_the_pipeline_reads_it(model_dir, capsys, tmp_path):
    code = main(["cache-calibrate", "--model", str(model_dir), "--limit", "2", "--no-progress", *CLI_SIZE])
    assert code == 0 and "generation_config.json" in capsys.readouterr().out
    verify_checkpoint(model_dir)  # the checksum of the rewritten file was updated
    config = json.loads((model_dir / "generation_config.json").read_text())
    assert config["steps"] == 6 and config["step_cache_calibration"]["steps"] == 6
    calibration = config["step_cache_calibration"]

    pipe = TextToVideoPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt="a red circle", **SIZE, num_inference_steps=6, max_sequence_length=16, output_type="latent")
    out = pipe(**args, generator=torch.Generator().manual_seed(0), step_cache=StepCache("magcache", speedup=2.0))
    assert 0 < out.step_cache["num_computed"] <= 3  # ratios read from generation_config.json
    pipe.scheduler.set_timesteps(6)
    run = StepCache("teacache", threshold=0.05).start(pipe.transformer, pipe.scheduler.timesteps, calibration)
    changes = input_changes(pipe.transformer, pipe.scheduler.timesteps)
    assert run.compute == teacache_schedule(changes, 0.05, calibration["teacache"]["coefficients"])
    out = pipe(**args, generator=torch.Generator().manual_seed(0), step_cache=StepCache("teacache", threshold=0.05))
    assert out.step_cache["computed_steps"] == [i for i, c in enumerate(run.compute) if c]

    video = tmp_path / "v.mp4"
    code = main(["generate", "a red circle", "-o", str(video), "--model", str(model_dir), *CLI_SIZE,
                 "--step-cache", "first-block", "--speedup", "2"])
    assert code == 0 and "step cache first-block: computed" in capsys.readouterr().err


def test_generate_and_eval_flags(model_dir, capsys, tmp_path):
    video = tmp_path / "v.mp4"
    base = ["generate", "a red circle", "-o", str(video), "--model", str(model_dir), *CLI_SIZE]
    assert main(base + ["--step-cache", "teacache", "--speedup", "2"]) == 0
    assert "step cache teacache: computed 3 of 6 steps" in capsys.readouterr().err
    assert main(base + ["--attention", "native"]) == 0
    assert main(base + ["--attention", "flash"]) == 2
    assert "attention backend 'flash' is not installed" in capsys.readouterr().err
    assert main(base + ["--attention", "nonsense"]) == 2
    assert "unknown attention backend" in capsys.readouterr().err

    out = tmp_path / "eval"
    code = main(["eval", "--model", str(model_dir), "--limit", "1", "--seeds", "1", "--steps", "4", "--height", "32",
                 "--width", "32", "--num-frames", "5", "--out", str(out), "--no-vae-ceiling", "--no-progress",
                 "--step-cache", "teacache", "--speedup", "2"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert [r["steps_computed"] for r in result["records"]["model"]] == [2]
    assert "teacache" in result["config"]["step_cache"]


def test_native_attention_equals_sdpa_and_errors(model_dir):
    pipe = TextToVideoPipeline.from_pretrained(model_dir)
    dit = pipe.transformer
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 4, 3, 4, 6, generator=g), torch.randn(2, 16, 16, generator=g)
    t = torch.tensor([900.0, 100.0])
    attn = torch.zeros(2, dit.config.num_layers, dtype=torch.bool)
    attn[1, 1] = True  # STG-A on one sample: the values-only path too
    with torch.no_grad():
        plain = dit(x, t, text, skip_self_attention=attn).sample
        dit.set_attention_backend("native")
        try:
            native = dit(x, t, text, skip_self_attention=attn).sample
        finally:
            dit.set_attention_backend(None)
        again = dit(x, t, text, skip_self_attention=attn).sample
    assert torch.equal(native, plain) and torch.equal(again, plain)
    assert check_attention_backend("sdpa") is None and check_attention_backend("native") == "native"
    with pytest.raises(ValueError, match="not installed"):
        check_attention_backend("sage")
    with pytest.raises(ValueError, match="Hub"):
        check_attention_backend("flash_hub")
    with pytest.raises(ValueError, match="unknown attention backend"):
        dit.set_attention_backend("fast")
