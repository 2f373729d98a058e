"""diffusers' LoRA API on our pipelines: the same video as diffusers' WanPipeline with the same LoRA file, adapters
with weights, a per-call scale, fuse / unfuse, unload."""

import numpy as np
import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import save_file

from _tiny import tiny_pipeline_parts
from pipelines import TextToVideoPipeline
from test_lora import MODULES, write_scheme

ARGS = dict(prompt="a red circle moving left", height=32, width=32, num_frames=5, num_inference_steps=3,
            guidance_scale=4.0, max_sequence_length=16, output_type="np")


def lora_for(transformer, seed, rank=2):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(transformer.config.num_layers):
        for orig, _ in MODULES:
            layer = transformer.get_submodule(f"blocks.{i}.{orig}")
            out[f"blocks.{i}.{orig}"] = (torch.randn(rank, layer.in_features, generator=g) * 0.4,
                                         torch.randn(layer.out_features, rank, generator=g) * 0.4, 1.0 + i)
    return out


def run(pipe, **kw):
    return pipe(**ARGS, generator=torch.Generator().manual_seed(0), **kw).frames


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    ref_parts, our_parts = tiny_pipeline_parts(tmp_path_factory.mktemp("tiny"))
    ref, ours = WanPipeline(**ref_parts), TextToVideoPipeline(**our_parts)
    for p in (ref, ours):
        p.set_progress_bar_config(disable=True)
    return ref, ours


@pytest.mark.parametrize("scheme", ["diffusers", "comfyui", "musubi"])
def test_same_video_as_diffusers_wanpipeline(pipes, tmp_path, scheme):
    ref, ours = pipes
    sd, _ = write_scheme(scheme, lora_for(ours.transformer, seed=1))
    file = tmp_path / "lora.safetensors"
    save_file(sd, str(file))
    base = run(ours)
    report = ours.load_lora_weights(str(file), adapter_name="x")
    ref.load_lora_weights(str(file), adapter_name="x")
    try:
        assert len(report.applied) == len(MODULES) * ours.transformer.config.num_layers
        got, expected = run(ours), run(ref)
        assert np.abs(got - expected).max() <= 1e-5
        assert np.abs(got - base).max() > 1e-3
    finally:
        ours.unload_lora_weights()
        ref.unload_lora_weights()
    assert np.abs(run(ours) - base).max() == 0  # unloading gives back the base exactly


def test_adapters_weights_scale_fuse_unfuse(pipes):
    _, ours = pipes
    a, _ = write_scheme("comfyui", lora_for(ours.transformer, seed=2))
    b, _ = write_scheme("musubi", lora_for(ours.transformer, seed=3))
    ours.load_lora_weights(a, adapter_name="a")
    ours.load_lora_weights(b, adapter_name="b")
    try:
        assert ours.get_active_adapters() == ["a", "b"]
        assert ours.get_list_adapters() == {"transformer": ["a", "b"]}
        ours.set_adapters(["a"], [0.5])
        half_a = run(ours)
        ours.set_adapters(["a"], [1.0])
        assert np.abs(run(ours, attention_kwargs={"scale": 0.5}) - half_a).max() <= 1e-6  # per-call scale
        assert ours.get_active_adapters() == ["a"]
        ours.set_adapters(["a", "b"], [0.7, 0.3])
        unfused = run(ours)
        ours.fuse_lora()
        assert np.abs(run(ours) - unfused).max() <= 1e-5
        ours.unfuse_lora()
        assert np.abs(run(ours) - unfused).max() <= 1e-5
        ours.delete_adapters("a")
        assert ours.get_list_adapters() == {"transformer": ["b"]}
    finally:
        ours.unload_lora_weights()
    assert ours.get_list_adapters() == {"transformer": []}
    with pytest.raises(ValueError, match="no LoRA is loaded"):
        ours.fuse_lora()


def test_cli_generate_and_eval_with_loras(pipes, tmp_path, capsys):
    """--lora PATH[:SCALE], repeatable: the video equals the pipeline with the same adapters at those weights;
    a LoRA that does not fit is an error before anything is written; eval records the LoRAs it used."""
    from videogen.cli import main
    from videogen.io import load_video

    _, ours = pipes
    ours.save_pretrained(tmp_path / "pipe")
    a, _ = write_scheme("comfyui", lora_for(ours.transformer, seed=4))
    b, _ = write_scheme("musubi", lora_for(ours.transformer, seed=5))
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    out = tmp_path / "frames"  # a PNG folder: lossless, so the comparison is to uint8 rounding
    common = ["--model", str(tmp_path / "pipe"), "--steps", "2", "--height", "32", "--width", "32",
              "--num-frames", "5", "--max-sequence-length", "16", "--guidance-scale", "1"]
    assert main(["generate", "a red circle moving left", "-o", str(out), *common,
                 "--lora", f"{tmp_path / 'a.safetensors'}:0.5", "--lora", str(tmp_path / "b.safetensors")]) == 0
    assert "LoRA 'lora_0' (comfyui)" in capsys.readouterr().err
    pipe = TextToVideoPipeline.from_pretrained(tmp_path / "pipe")
    pipe.load_lora_weights(str(tmp_path / "a.safetensors"), adapter_name="x")
    pipe.load_lora_weights(str(tmp_path / "b.safetensors"), adapter_name="y")
    pipe.set_adapters(["x", "y"], [0.5, 1.0])
    expected = pipe("a red circle moving left", height=32, width=32, num_frames=5, num_inference_steps=2,
                    guidance_scale=1.0, max_sequence_length=16, generator=torch.Generator().manual_seed(0)).frames[0]
    got = load_video(out).astype(np.float64) / 255
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6
    bad = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(2, 48),
           "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(48, 2)}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    assert main(["generate", "x", "-o", str(tmp_path / "bad.mp4"), *common, "--lora", str(tmp_path / "bad.safetensors")]) == 2
    assert "does not fit this DiT" in capsys.readouterr().err and not (tmp_path / "bad.mp4").exists()
    assert main(["eval", "--model", str(tmp_path / "pipe"), "--prompts", "holdout", "--limit", "1", "--seeds", "1",
                 "--steps", "1", "--height", "32", "--width", "32", "--num-frames", "5", "--no-progress",
                 "--no-vae-ceiling", "--out", str(tmp_path / "eval"), "--lora", str(tmp_path / "a.safetensors")]) == 0
    import json

    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["config"]["lora"] == [str(tmp_path / "a.safetensors")]
