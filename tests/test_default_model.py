"""The embedded default models in checkpoints/: layout, size, integrity, and generation through the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from videogen.cli import main
from videogen.integrity import verify_checkpoint
from videogen.io import load_video

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
T2V = CHECKPOINTS / "shapes-t2v"  # one model for text- and image-to-video (image_optional)
PROMPT = "a red circle moving to the right on a black background"


def test_layout_size_and_checksums():
    model = T2V  # the one shipped model
    index = json.loads((model / "model_index.json").read_text())
    for part in ("vae", "transformer", "text_encoder", "tokenizer", "scheduler"):
        assert part in index and (model / part).is_dir(), part
    weights = sorted(model.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"vae", "transformer", "text_encoder"}
    for path in weights:
        with safe_open(path, framework="pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}, path
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total <= 40 * 10**6, f"checkpoints/ is {total / 1e6:.1f} MB"
    assert sorted(p.name for p in CHECKPOINTS.iterdir() if p.is_dir()) == ["shapes-camera", "shapes-t2v",
                                                                          "shapes-trajectory"]
    assert index["_class_name"] == "ImageToVideoPipeline" and index["image_optional"] is True
    assert verify_checkpoint(model) == len((model / "SHA256SUMS").read_text().splitlines())


def test_embedded_adapters_point_at_the_default_and_are_trained():
    """The camera and trajectory models are adapters alone (fp16), each pointing at the one base; both left their
    zero start (a trained adapter changes the video; untrained ones change nothing)."""
    for name, component, zero_init in (("shapes-camera", "camera_adapter", "proj_out.0.weight"),
                                       ("shapes-trajectory", "trajectory_adapter", "fusers.0.gamma_temporal.weight")):
        model = CHECKPOINTS / name
        assert (model / json.loads((model / "base.json").read_text())["base"]).resolve() == T2V.resolve()
        assert not (model / "transformer").exists() and verify_checkpoint(model) >= 4
        with safe_open(model / component / "diffusion_pytorch_model.safetensors", framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        assert {t.dtype for t in tensors.values()} == {torch.float16}, name
        assert tensors[zero_init].abs().max() > 0, name


def test_generate_with_a_camera_or_a_trajectory_uses_the_embedded_adapters(tmp_path):
    for extra in (["--camera", "pan-left"], ["--trajectory", "8,32 56,32"]):
        out = tmp_path / "out.mp4"
        assert main(["generate", "a red circle and a blue square", "-o", str(out), "--steps", "2", *extra]) == 0
        assert load_video(out).shape == (17, 64, 64, 3), extra


def test_generate_uses_the_default_and_writes_a_real_mp4(tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["generate", PROMPT, "-o", str(out), "--steps", "3"]) == 0  # no --model: the embedded default
    assert capsys.readouterr().out.strip().endswith("out.mp4")
    defaults = json.loads((T2V / "generation_config.json").read_text())
    frames = load_video(out)
    assert frames.shape == (defaults["num_frames"], defaults["height"], defaults["width"], 3)
    assert defaults["num_frames"] >= 17 and min(defaults["height"], defaults["width"]) >= 64


def test_image_to_video_default_animates_a_rendered_frame(tmp_path):
    from videogen.evaluation.evaluate import ground_truth_clips

    from PIL import Image

    image = tmp_path / "first.png"
    Image.fromarray(ground_truth_clips([PROMPT], [0])[0][0]).save(image)
    out = tmp_path / "i2v.mp4"
    # No --model: --image picks the embedded image-to-video default (was an error: "needs an image-to-video model").
    assert main(["generate", PROMPT, "--image", str(image), "-o", str(out), "--steps", "3"]) == 0
    frames = load_video(out)
    assert frames.shape == (17, 64, 64, 3)
    # ... and that model really took the image: frame 0 reproduces it (a text-to-video model would not).
    first = np.asarray(Image.open(image).convert("RGB"), dtype=np.float64)
    mse = np.mean((frames[0].astype(np.float64) - first) ** 2)
    assert 10 * np.log10(255**2 / mse) > 17.0  # 18.6 dB at 3 steps; the T2V default gives 15.0
    t2v = tmp_path / "t2v.mp4"
    assert main(["generate", PROMPT, "-o", str(t2v), "--steps", "3"]) == 0
    mse_t2v = np.mean((load_video(t2v)[0].astype(np.float64) - first) ** 2)
    assert mse_t2v > 2 * mse


def test_a_corrupted_copy_is_refused_naming_the_file(tmp_path, capsys):
    copy = tmp_path / "shapes-t2v"
    shutil.copytree(T2V, copy)
    target = copy / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    assert main(["generate", PROMPT, "-o", str(tmp_path / "x.mp4"), "--model", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "vae/diffusion_pytorch_model.safetensors is corrupted" in err
    assert not (tmp_path / "x.mp4").exists()


def test_the_shipped_vae_keeps_every_hue():
    """The first shapes VAE decoded red, green and yellow objects all as yellow (a red/green tie the latent colour
    anchor broke, configs/retired-gen1/shapes-vae-colour.yaml); the next drew every medium blue object magenta and
    most yellow ones green (a decoder 300 steps short, configs/retired-gen1/shapes-vae-decoder-1d.yaml). A round
    trip of the eval's rendered ground truth must keep each of the six hues on every shape."""
    from videogen.data.synthetic import COLORS, SHAPES
    from videogen.evaluation.evaluate import ground_truth_clips, prompt_for, vae_round_trip
    from videogen.evaluation.metrics import measure_clip
    from videogen.models import CausalVideoVAE

    vae = CausalVideoVAE.from_pretrained(T2V / "vae", torch_dtype=torch.float32).eval()
    prompts = [(color, prompt_for(color, shape, "left")) for color in COLORS for shape in SHAPES]
    for (color, prompt), frames in zip(prompts, ground_truth_clips([p for _, p in prompts], [0])):
        assert measure_clip(vae_round_trip(vae, frames))["dominant_color"] == color, prompt


# The shipped VAE's round trip of the held-out ground truth (6 clips, seed 0, 17 frames): mean per-frame PSNR and
# its worst frame index, measured when it shipped (`videogen eval --task vae`); a regression below either floor fails.
VAE_PSNR_FLOOR, VAE_FRAME_FLOOR = 27.8, 26.5  # shipped: 28.09 dB mean, 26.77 dB at frame 16 (the worst frame)


def test_the_shipped_vae_round_trip_stays_above_its_psnr_floor():
    from videogen.evaluation.evaluate import ground_truth_clips, holdout_prompts, vae_psnr_by_frame
    from videogen.models import CausalVideoVAE

    vae = CausalVideoVAE.from_pretrained(T2V / "vae", torch_dtype=torch.float32).eval()
    scores = vae_psnr_by_frame(vae, ground_truth_clips(holdout_prompts(), [0], 17, 64, 64))
    assert scores.shape == (6, 17)
    assert scores.mean() >= VAE_PSNR_FLOOR, scores.mean()
    assert scores.mean(axis=0).min() >= VAE_FRAME_FLOOR, scores.mean(axis=0)
