"""The `videogen` command: convert, info, and generate's message while no default checkpoint exists."""

import subprocess
import sys

import torch
from diffusers import WanTransformer3DModel

from _oracle import perturb_parameters
from test_convert_transformer import to_original
from test_transformer import TINY, inputs
from videogen.cli import main
from videogen.models.transformer import VideoDiT


def test_convert_original_checkpoint_to_our_format(tmp_path, capsys):
    torch.manual_seed(0)
    ref = perturb_parameters(WanTransformer3DModel(**TINY)).eval()
    src = tmp_path / "wan_original.pth"
    torch.save({f"model.diffusion_model.{k}": v for k, v in to_original(ref.state_dict()).items()}, src)
    # Heads are not in an original checkpoint without config, and width 24 is no public Wan2.1 width: no guess.
    assert main(["convert", str(src), str(tmp_path / "ours")]) == 2
    assert "--num-heads" in capsys.readouterr().err
    assert not (tmp_path / "ours").exists()
    assert main(["convert", str(src), str(tmp_path / "ours"), "--num-heads", "2"]) == 0
    assert "transformer:" in capsys.readouterr().out
    model = VideoDiT.from_pretrained(tmp_path / "ours")
    assert model.config.dim == 24 and model.config.num_heads == 2
    x, t, ctx, _ = inputs(TINY)
    with torch.no_grad():
        got = model(x, t, ctx).sample
        expected = ref(x, t, ctx).sample  # the diffusers model the original-format file was written from
    assert (got - expected).abs().max() <= 1e-5
    assert main(["info", str(tmp_path / "ours")]) == 0
    out = capsys.readouterr().out
    assert "VideoDiT" in out and f"{sum(p.numel() for p in model.parameters()):,} parameters" in out


def test_convert_to_diffusers_layout(tmp_path):
    torch.manual_seed(0)
    ref = perturb_parameters(WanTransformer3DModel(**TINY)).eval()
    ref.save_pretrained(tmp_path / "src")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "--to", "diffusers"]) == 0
    back = WanTransformer3DModel.from_pretrained(tmp_path / "dst")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ref.state_dict().values()))


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "source does not exist" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    assert main(["info", str(tmp_path / "junk.safetensors")]) == 2
    assert "junk.safetensors" in capsys.readouterr().err


def test_console_script_generate_explains_a_missing_pipeline(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "videogen.cli", "generate", "a red circle", "--model", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no pipeline directory" in proc.stderr and "model_index.json" in proc.stderr


def test_generate_end_to_end_on_tiny_model(tmp_path, capsys):
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline
    from videogen.io import load_video

    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    out = tmp_path / "video.mp4"
    code = main(["generate", "a red circle moving left", "-o", str(out), "--model", str(tmp_path / "pipe"),
                 "--height", "32", "--width", "48", "--num-frames", "9", "--steps", "2", "--stg-scale", "1.0",
                 "--stg-blocks", "0,2", "--stg-mode", "attention", "--scheduler", "euler", "--seed", "3"])
    assert code == 0
    assert capsys.readouterr().out.strip().endswith("video.mp4")
    frames = load_video(out)
    assert frames.shape == (9, 32, 48, 3)
    assert main(["info", str(tmp_path / "pipe")]) == 0
    text = capsys.readouterr().out
    assert "[transformer] VideoDiT" in text and "[vae] CausalVideoVAE" in text and "[scheduler]" in text
    bad = main(["generate", "x", "-o", str(out), "--model", str(tmp_path / "pipe"), "--num-frames", "8"])
    assert bad == 2 and "num_frames must be 1 + 4k" in capsys.readouterr().err


def test_synth_then_train_dry_run_reads_it(tmp_path, capsys):
    import json

    import yaml

    assert main(["synth", "--out", str(tmp_path / "world"), "--num", "3", "--seed", "1", "--frames", "9"]) == 0
    lines = (tmp_path / "world" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all({"video", "caption", "metadata"} <= json.loads(line).keys() for line in lines)
    capsys.readouterr()
    from test_training import TINY_CONFIG

    cfg = {**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "root": str(tmp_path / "world"), "num_frames": 9,
                                   "height": 64, "width": 64}, "output_dir": str(tmp_path / "run")}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"usable": 3' in out and "num_frames: 9" in out


def tiny_i2v_checkpoint(tmp_path):
    """A saved tiny ImageToVideoPipeline (no image tokens) and a 32x48 PNG first frame."""
    import numpy as np
    from PIL import Image

    from _tiny import tiny_i2v_pipeline_parts
    from pipelines import ImageToVideoPipeline

    _, parts = tiny_i2v_pipeline_parts(tmp_path)
    ImageToVideoPipeline(**parts).save_pretrained(tmp_path / "i2v")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(tmp_path / "first.png")
    return tmp_path / "i2v", tmp_path / "first.png"


SMALL = ["--height", "32", "--width", "48", "--num-frames", "9", "--steps", "2"]


def test_generate_image_to_video(tmp_path, capsys):
    from videogen.io import load_video

    model, first = tiny_i2v_checkpoint(tmp_path)
    out = tmp_path / "i2v.mp4"
    code = main(["generate", "a red circle moving left", "--image", str(first), "--last-image", str(first), "-o",
                 str(out), "--model", str(model), *SMALL])
    assert code == 0 and capsys.readouterr().out.strip().endswith("i2v.mp4")
    assert load_video(out).shape == (9, 32, 48, 3)


def test_generate_image_arguments_errors(tmp_path, capsys):
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline

    model, first = tiny_i2v_checkpoint(tmp_path)
    _, parts = tiny_pipeline_parts(tmp_path / "t2v_parts")
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "t2v")
    out = str(tmp_path / "never.mp4")
    capsys.readouterr()  # the savers' progress bars
    cases = [
        (["--model", str(tmp_path / "t2v"), "--image", str(first)], "--image needs an image-to-video model"),
        (["--model", str(model)], "is an image-to-video model (ImageToVideoPipeline): pass --image"),
        (["--model", str(model), "--image", str(tmp_path / "nope.png")], "cannot read image"),
        (["--model", str(model), "--last-image", str(first)], "--last-image needs --image"),
    ]
    for extra, message in cases:
        assert main(["generate", "a red circle", "-o", out, *SMALL, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert main(["generate", "x", "-o", out, "--model", str(model), "--image", str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_load_pipeline_picks_the_class_from_model_index(tmp_path):
    from diffusers import WanImageToVideoPipeline

    from _tiny import tiny_i2v_pipeline_parts, tiny_pipeline_parts
    from pipelines import ImageToVideoPipeline, TextToVideoPipeline
    from videogen.loading import load_pipeline

    ref, ours = tiny_i2v_pipeline_parts(tmp_path, image_tokens=True)
    WanImageToVideoPipeline(**ref).save_pretrained(tmp_path / "wan_i2v")
    ImageToVideoPipeline(**ours).save_pretrained(tmp_path / "ours_i2v")
    loaded = load_pipeline(tmp_path / "wan_i2v")
    assert type(loaded) is ImageToVideoPipeline and loaded.image_encoder is not None
    assert type(load_pipeline(tmp_path / "ours_i2v")) is ImageToVideoPipeline
    _, t2v = tiny_pipeline_parts(tmp_path / "t2v_parts")
    TextToVideoPipeline(**t2v).save_pretrained(tmp_path / "t2v")
    assert type(load_pipeline(tmp_path / "t2v")) is TextToVideoPipeline


def test_generate_with_a_text_and_image_model_needs_no_image(tmp_path, capsys):
    """An image-to-video pipeline trained with the image dropped (image_optional) generates from the prompt alone;
    one without that flag still asks for --image."""
    from _tiny import tiny_i2v_pipeline_parts
    from pipelines import ImageToVideoPipeline
    from videogen.io import load_video

    _, parts = tiny_i2v_pipeline_parts(tmp_path)
    ImageToVideoPipeline(**parts, image_optional=True).save_pretrained(tmp_path / "joint")
    ImageToVideoPipeline(**parts).save_pretrained(tmp_path / "i2v")
    args = ["--steps", "1", "--height", "32", "--width", "32", "--num-frames", "5", "--max-sequence-length", "16"]
    assert main(["generate", "a red circle", "-o", str(tmp_path / "a.mp4"), "--model", str(tmp_path / "joint"), *args]) == 0
    assert load_video(tmp_path / "a.mp4").shape[0] == 5
    assert main(["generate", "a red circle", "-o", str(tmp_path / "b.mp4"), "--model", str(tmp_path / "i2v"), *args]) == 2
    assert "pass --image" in capsys.readouterr().err
