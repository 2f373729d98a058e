"""`videogen generate --camera ...` on a tiny camera-control checkpoint, `videogen camera-preset`, and the camera
errors as one-line messages."""

import warnings

import numpy as np
import pytest
import torch

from videogen.cli import main
from videogen.conditioning.camera import camera_preset, read_pose_file
from videogen.io import load_video

SMALL = ["--height", "32", "--width", "48", "--num-frames", "9", "--steps", "2", "--max-sequence-length", "16"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved tiny CameraControlPipeline, a 32x48 start image and a 9-pose file written by `camera-preset`."""
    from PIL import Image

    from pipelines import CameraControlPipeline
    from test_pipeline_camera import tiny_camera_parts

    root = tmp_path_factory.mktemp("cli_camera")
    CameraControlPipeline(**tiny_camera_parts(root / "parts")).save_pretrained(root / "camera")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(root / "first.png")
    assert main(["camera-preset", "orbit-right", "--frames", "9", "--height", "32", "--width", "48",
                 "-o", str(root / "orbit.txt")]) == 0
    return root


def generate(checkpoint, name, *flags):
    out = checkpoint / f"{name}.mp4"
    code = main(["generate", "a red circle", "-o", str(out), "--model", str(checkpoint / "camera"), *SMALL, *flags])
    return code, out


def test_camera_preset_writes_an_editable_pose_file(tmp_path, capsys):
    path = tmp_path / "pan.txt"
    assert main(["camera-preset", "pan-left", "--frames", "17", "--height", "64", "--width", "96", "--speed", "0.5",
                 "-o", str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 18 and all(len(line.split()) == 19 for line in lines[1:])
    intrinsics, c2w = read_pose_file(path, 64, 96)
    expected_k, expected_c2w = camera_preset("pan-left", 17, speed=0.5, height=64, width=96)
    assert torch.allclose(intrinsics, expected_k, atol=1e-4) and torch.allclose(c2w, expected_c2w, atol=1e-6)
    assert c2w[-1, 0, 3] < 0  # pan-left: the camera centre moves to -x
    assert main(["camera-preset", "spin", "-o", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err
    assert "unknown camera preset 'spin'" in err and len(err.strip().splitlines()) == 1


def test_generate_with_presets_and_every_camera_flag(checkpoint, capsys):
    """Every flag runs; a zero strength and an empty window both turn the camera off (the same video), and CMG
    with the other flags gives another video (so the flags reach the pipeline)."""
    _, zero = generate(checkpoint, "zero", "--camera", "zoom-in", "--camera-strength", "0")
    _, empty = generate(checkpoint, "empty", "--camera", "zoom-in", "--camera-window", "0,0")
    code, flags = generate(checkpoint, "flags", "--camera", "zoom-in", "--image", str(checkpoint / "first.png"),
                           "--camera-scale", "4", "--camera-null", "zeros", "--camera-strength", "0.8",
                           "--camera-window", "0,0.5", "--camera-speed", "1.5", "--stg-scale", "1", "--stg-blocks", "1")
    assert code == 0 and capsys.readouterr().out.strip().endswith("flags.mp4")
    frames = {name: load_video(path).astype(np.int16) for name, path in
              (("zero", zero), ("empty", empty), ("flags", flags))}
    assert frames["flags"].shape == (9, 32, 48, 3)
    assert np.array_equal(frames["zero"], frames["empty"])
    assert np.abs(frames["flags"] - frames["zero"]).max() > 0


def test_a_pose_file_of_another_length_warns_once(checkpoint, tmp_path, capsys):
    assert main(["camera-preset", "zoom-out", "--frames", "5", "--height", "32", "--width", "48",
                 "-o", str(tmp_path / "five.txt")]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out = generate(checkpoint, "five", "--camera", str(tmp_path / "five.txt"))
    messages = [str(w.message) for w in caught]
    assert code == 0 and sum("the camera has 5 poses for 9 frames; resampling" in m for m in messages) == 1, messages
    assert load_video(out).shape == (9, 32, 48, 3)


def test_camera_arguments_map_the_settings():
    from videogen.guidance import CFG, MultiCondition, STG
    from videogen.loading import GENERATION_DEFAULTS, camera_arguments

    settings = dict(GENERATION_DEFAULTS, height=32, width=48, num_frames=9, guidance_scale=6.0, camera_scale=3.0,
                    camera_null="off", camera_strength=0.5, camera_window=[0.0, 0.4], camera_speed=2.0, stg_scale=1.0)
    kw = camera_arguments(settings, "pan-up")
    intrinsics, c2w = kw["camera"]
    expected = camera_preset("pan-up", 9, speed=2.0, height=32, width=48)
    assert torch.equal(intrinsics, expected[0]) and torch.equal(c2w, expected[1])
    assert (kw["camera_null"], kw["camera_strength"], kw["camera_window"]) == ("off", 0.5, (0.0, 0.4))
    kinds = [type(g) for g in kw["guidance"].guiders]
    assert kinds == [MultiCondition, CFG, STG]
    assert kw["guidance"].guiders[0].extra_scale == 3.0 and kw["guidance"].guiders[0].stop == 0.4


def test_camera_errors_are_one_line_messages(checkpoint, tmp_path, capsys):
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline

    _, parts = tiny_pipeline_parts(tmp_path / "t2v_parts")
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "t2v")
    good = (checkpoint / "orbit.txt").read_text().splitlines()
    (tmp_path / "bad.txt").write_text("\n".join(good[:3] + ["0 0.5 0.9 0.5 0.5 0 0 1 0"] + good[4:]) + "\n")
    (tmp_path / "inf.txt").write_text("\n".join(good[:2] + [good[2].rsplit(" ", 1)[0] + " nan"]) + "\n")
    capsys.readouterr()
    out = str(tmp_path / "never.mp4")
    model = ["--model", str(checkpoint / "camera")]
    cases = [
        (["--model", str(tmp_path / "t2v"), "--camera", "pan-left"], "--camera needs a camera-control model"),
        ([*model, "--camera-scale", "2"], "--camera-scale need --camera"),
        ([*model, "--camera", str(tmp_path / "bad.txt")], f"{tmp_path / 'bad.txt'}:4: expected 19 numbers"),
        ([*model, "--camera", str(tmp_path / "inf.txt")], f"{tmp_path / 'inf.txt'}:3: non-finite value"),
        ([*model, "--camera", "spin-around"], "is neither a preset"),
        ([*model, "--camera", "pan-left", "--height", "40"], "height must be a multiple of 16; got 40"),
        ([*model, "--camera", "pan-left", "--camera-window", "0.8,0.2"], "camera_window"),
        ([*model, "--camera", "pan-left", "--last-image", str(checkpoint / "first.png"), "--image",
          str(checkpoint / "first.png")], "camera-control models take a start image (--image) only"),
    ]
    for extra, message in cases:
        assert main(["generate", "a red circle", "-o", out, *SMALL, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (extra, err)
    with pytest.raises(SystemExit):  # argparse's own usage error for a malformed window
        main(["generate", "x", "--camera-window", "half"])
    capsys.readouterr()


def test_a_camera_model_without_a_camera_warns_and_runs(checkpoint, capsys):
    with pytest.warns(UserWarning, match="this is a camera model but no camera was given"):
        code, out = generate(checkpoint, "no_camera", "--image", str(checkpoint / "first.png"))
    assert code == 0 and load_video(out).shape == (9, 32, 48, 3)


def test_default_model_for_a_camera_is_the_embedded_camera_model():
    from videogen.loading import default_model_for

    assert default_model_for(camera=True).name == "shapes-camera"
    assert default_model_for(image=True, camera=True).name == "shapes-camera"  # it takes a start image too
    assert default_model_for(trajectory=True).name == "shapes-trajectory"
    assert default_model_for(image=True).name == "shapes-t2v"  # one model for both
