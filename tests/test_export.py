"""`videogen export`: fp16 shipping layout with generation defaults and checksums, verified on every load."""

import json

import numpy as np
import torch
from safetensors import safe_open

from videogen.cli import main
from videogen.io import load_video


def test_export_then_generate_and_detect_corruption(tmp_path, capsys):
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline

    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    # the source's own generation_config.json (the trainer writes one) is kept and updated by --generation-config
    (tmp_path / "pipe" / "generation_config.json").write_text(json.dumps({"max_sequence_length": 12, "height": 64}))
    given = {"height": 32, "width": 48, "num_frames": 5, "steps": 2, "guidance_scale": 3.0, "fps": 8}
    defaults = dict(given, max_sequence_length=12)
    assert main(["export", "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "ship"),
                 "--generation-config", json.dumps(given)]) == 0
    ship = tmp_path / "ship"
    assert "MiB" in capsys.readouterr().out
    weights = sorted(ship.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} >= {"transformer", "vae", "text_encoder"}
    for path in weights:
        with safe_open(path, framework="pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}, path
    assert json.loads((ship / "generation_config.json").read_text()) == defaults
    listed = [line.split("  ")[1] for line in (ship / "SHA256SUMS").read_text().splitlines()]
    assert "model_index.json" in listed and "transformer/diffusion_pytorch_model.safetensors" in listed

    # The shipped copy generates with its own defaults (size, frames, steps, text length) in fp32, close to the
    # fp32 original.
    out = tmp_path / "a.mp4"
    assert main(["generate", "a red circle moving left", "-o", str(out), "--model", str(ship)]) == 0
    assert load_video(out).shape == (5, 32, 48, 3)
    from videogen.loading import load_pipeline

    half, full = load_pipeline(ship), load_pipeline(tmp_path / "pipe")
    gen = dict(prompt="a red circle moving left", height=32, width=48, num_frames=5, num_inference_steps=2,
               guidance_scale=3.0, output_type="np")
    frames = {n: (half(generator=torch.Generator().manual_seed(0), max_sequence_length=n, **gen).frames[0]
                  .clip(0, 1) * 255).round() for n in (12, 512)}
    written = load_video(out).astype(np.float64)
    assert np.abs(written - frames[12]).mean() < np.abs(written - frames[512]).mean()  # it used 12 text tokens
    assert half.transformer.dtype == torch.float32
    kw = dict(prompt="a red circle", height=32, width=48, num_frames=5, num_inference_steps=2, output_type="latent")
    a = half(generator=torch.Generator().manual_seed(0), **kw).frames
    b = full(generator=torch.Generator().manual_seed(0), **kw).frames
    assert 0 < (a - b).abs().max() < 0.05 * b.abs().max()

    # One flipped byte in the DiT weights: loading stops with a message naming the file.
    target = ship / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["generate", "a red circle", "-o", str(tmp_path / "b.mp4"), "--model", str(ship)]) == 2
    err = capsys.readouterr().err
    assert "transformer/diffusion_pytorch_model.safetensors is corrupted" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b.mp4").exists()
    assert np.isfinite(a.numpy()).all()
