"""The web UI (`videogen ui`): its functions, its generations against `videogen generate`, the served app through
gradio_client (generation, queue, bad input, settings reload) and the page in a real headless Chromium."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from videogen import ui
from videogen.io import load_video

SMALL = dict(height=32, width=32, num_frames=5, steps=2, max_sequence_length=16, guidance_scale=1.0, stg_scale=0.0,
             preview_every=0)
PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A saved tiny text-to-video pipeline, a tiny camera-control one, LoRAs that fit and do not, and input files."""
    from _tiny import tiny_pipeline_parts
    from pipelines import CameraControlPipeline, TextToVideoPipeline
    from test_pipeline_camera import tiny_camera_parts

    root = tmp_path_factory.mktemp("ui")
    _, parts = tiny_pipeline_parts(root / "parts")
    TextToVideoPipeline(**parts).save_pretrained(root / "t2v")
    CameraControlPipeline(**tiny_camera_parts(root / "camera_parts")).save_pretrained(root / "camera")
    from pipelines import TrajectoryControlPipeline
    from test_trajectory_adapter import trained_adapter

    TrajectoryControlPipeline(**parts, trajectory_adapter=trained_adapter(parts["transformer"])).save_adapter(
        root / "trajectory", base=root / "t2v")
    g = torch.Generator().manual_seed(0)
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, 24, generator=g),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2, generator=g)},
              str(root / "fits.safetensors"))
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(2, 48),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(48, 2)},
              str(root / "wrong_width.safetensors"))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(root / "first.png")
    (root / "not_an_image.png").write_text("this is text, not a picture")
    (root / "bad_pose.txt").write_text("header\n0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 oops 0 1 0\n")
    return root


def settings(models, **changes):
    """The page's settings for a small text-to-video request on the tiny model."""
    return {**ui.default_settings(str(models / "t2v")), "model": str(models / "t2v"), "prompt": PROMPT, **SMALL,
            **changes}


@pytest.fixture(scope="module")
def app(models, tmp_path_factory):
    return ui.App(str(models / "t2v"), outputs=tmp_path_factory.mktemp("ui_outputs"))


# ----------------------------------------------------------------------------------------------
# Functions
# ----------------------------------------------------------------------------------------------


def test_parsing_helpers():
    assert ui.parse_blocks("1, 2") == [1, 2] and ui.parse_blocks([3]) == [3]
    with pytest.raises(ValueError, match="STG blocks"):
        ui.parse_blocks("two")
    assert ui.parse_strengths("", 2) == [1.0, 1.0] and ui.parse_strengths("0.5", 3) == [0.5] * 3
    assert ui.parse_strengths("0.5, 2", 3) == [0.5, 2.0, 1.0]
    with pytest.raises(ValueError, match="3 LoRA strengths for 2"):
        ui.parse_strengths("1,1,1", 2)
    assert ui.lora_specs(["a.safetensors", {"path": "b.safetensors"}], "0.8") == ["a.safetensors:0.8",
                                                                                  "b.safetensors:0.8"]
    assert ui.duration_text(17, 8) == "17 frames at 8 fps: 2.1 s"
    assert ui.eta_seconds(0, 10, 1.0) is None and ui.eta_seconds(2, 10, 1.0) == pytest.approx(4.0)
    bar = ui.progress_html("denoising", 2, 10, 1.0)
    assert "step 2/10" in bar and "ETA 4.0 s" in bar and '<progress max="10" value="2"' in bar
    assert "&lt;b&gt;" in ui.error_html("<b>")  # messages are escaped


def test_defaults_come_from_the_models_generation_config(models):
    from videogen.loading import GENERATION_DEFAULTS, default_model

    embedded = json.loads((default_model("text") / "generation_config.json").read_text())
    d = ui.default_settings()
    assert (d["height"], d["width"], d["num_frames"], d["steps"], d["fps"]) == (
        embedded["height"], embedded["width"], embedded["num_frames"], embedded["steps"], embedded["fps"])
    assert d["model"] == "" and d["mode"] == "text-to-video" and set(d) == set(ui.CONTROLS)
    tiny = ui.default_settings(str(models / "t2v"))  # no generation_config.json: the library's defaults
    assert (tiny["height"], tiny["num_frames"]) == (GENERATION_DEFAULTS["height"], GENERATION_DEFAULTS["num_frames"])
    overrides = ui.generation_overrides(dict(d, stg_blocks="1,2", scheduler="checkpoint"))
    assert overrides["stg_blocks"] == [1, 2] and overrides["scheduler"] is None
    assert set(overrides) == set(GENERATION_DEFAULTS)  # every setting the CLI has, nothing else


def test_trajectory_helpers(tmp_path):
    from videogen.conditioning.trajectory import write_tracks

    text = ui.add_track_point("", 4, 5)
    text = ui.add_track_point(text, 20.4, 30.6)
    text = ui.add_track_point(ui.new_track(text), 10, 10)
    assert text == "4,5 20,31\n10,10"
    assert ui.undo_track_point(text) == "4,5 20,31\n" and ui.undo_track_point("4,5\n") == "4,5"
    tracks, visible = ui.parse_tracks(text, None, 9, 32, 48)
    assert tracks.shape == (2, 9, 2) and visible.all()
    assert tracks[0, 0].tolist() == [4, 5] and tracks[0, -1].tolist() == [20, 31]
    write_tracks(tmp_path / "t.json", tracks[:1], visible[:1])
    from_file, _ = ui.parse_tracks("ignored when a file is given", str(tmp_path / "t.json"), 9, 32, 48)
    assert torch.allclose(from_file, tracks[:1])
    assert ui.parse_tracks("  \n", None, 9, 32, 48) is None
    with pytest.raises(ValueError, match="track 2: inline trajectory point 'x'"):
        ui.parse_tracks("1,1\nx", None, 9, 32, 48)
    drawn = ui.draw_tracks(np.zeros((32, 48, 3), np.uint8), tracks, visible)
    assert drawn.shape == (32 * 5, 48 * 5, 3) and (drawn[..., 0] == 255).any()  # enlarged, the red track drawn


def test_camera_path_image_and_pose_file_errors(models):
    from videogen.conditioning.camera import CAMERA_PRESETS

    for preset in ("pan-left", "orbit-right"):
        assert preset in CAMERA_PRESETS
        img = ui.camera_path_image(preset, 9, 32, 48)
        assert img.shape == (160, 320, 3) and (img == [220, 60, 60]).all(-1).any()  # the path is drawn
    with pytest.raises(ValueError, match="bad_pose.txt:2"):
        ui.camera_path_image(str(models / "bad_pose.txt"), 9, 32, 48)
    assert ui.camera_status("") == "Camera model: the embedded `shapes-camera`."
    assert ui.camera_status(str(models / "t2v")) == ui.NO_CAMERA_MODEL
    assert ui.camera_status(str(models / "camera")).startswith("Camera model:")


def test_sidecar_round_trip(tmp_path):
    (tmp_path / "x.image.png").write_bytes(b"png")
    s = dict(ui.default_settings(), prompt="p", seed=7, image="x.image.png", camera_file="gone.txt")
    path = ui.write_sidecar(tmp_path / "x.json", s, {"status": "done"})
    back = ui.read_sidecar(path)
    assert back["prompt"] == "p" and back["seed"] == 7 and back["image"] == str(tmp_path / "x.image.png")
    assert back["camera_file"] is None  # a file that is gone is not offered
    values = ui.values_from_settings(back, ui.default_settings())
    assert len(values) == len(ui.CONTROLS) and values[ui.CONTROLS.index("seed")] == 7
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a videogen UI settings file"):
        ui.read_sidecar(tmp_path / "other.json")


# ----------------------------------------------------------------------------------------------
# Runs (no server)
# ----------------------------------------------------------------------------------------------


def same_video(a, b) -> bool:
    """Two decoded mp4s of the same generation: equal, pixel for pixel (the encoder runs with fixed threads)."""
    return a.shape == b.shape and np.array_equal(a, b)


def test_run_writes_video_and_sidecar_equal_to_the_cli(app, models, tmp_path, capsys):
    """A run reports every step with an ETA and previews, saves the video and a sidecar beside it; its video is
    the one `videogen generate` makes with the same settings (one code path), and the sidecar reproduces it."""
    from videogen.cli import main

    events = []
    result = app.run(settings(models, seed=3, preview_every=1), on_event=events.append)
    steps = [e for e in events if e.get("phase") in ("denoising", "decoding")]
    assert [e["done"] for e in steps] == [1, 2] and all(e["total"] == 2 for e in steps)
    assert all(e["preview"].dtype == np.uint8 and e["preview"].ndim == 3 for e in steps)
    assert result["status"] == "done" and result["frames"] == 5
    video = load_video(result["video"])
    assert video.shape == (5, 32, 32, 3)
    side = json.loads(open(result["sidecar"]).read())
    assert side["settings"]["prompt"] == PROMPT and side["settings"]["seed"] == 3 and side["run"]["frames"] == 5
    assert app.gallery[-1][0] == result["video"] and app.gallery[-1][2] == result["sidecar"]

    cli_out = tmp_path / "cli.mp4"
    assert main(["generate", PROMPT, "-o", str(cli_out), "--model", str(models / "t2v"), "--seed", "3",
                 "--height", "32", "--width", "32", "--num-frames", "5", "--steps", "2", "--guidance-scale", "1",
                 "--max-sequence-length", "16", "--stg-scale", "0", "--fps", "16"]) == 0
    assert same_video(load_video(cli_out), video)

    again = app.run(ui.read_sidecar(result["sidecar"]))
    assert same_video(load_video(again["video"]), video)
    assert not same_video(load_video(app.run(settings(models, seed=4))["video"]), video)  # the check can fail


def test_stop_ends_a_run_cleanly_with_the_current_estimate(app, models):
    stop = threading.Event()

    def on_event(event):
        if event.get("done") == 1:
            stop.set()  # as the Stop button does, during step 1 of 4

    result = app.run(settings(models, steps=4), stop=stop, on_event=on_event)
    assert result["status"] == "stopped at step 2/4"  # the flag is read at the end of the step it was set in
    assert load_video(result["video"]).shape == (5, 32, 32, 3)
    assert json.loads(open(result["sidecar"]).read())["run"]["status"] == "stopped at step 2/4"
    assert app.stop("nobody") == "nothing is running"


def test_loras_and_their_strengths(app, models):
    base = load_video(app.run(settings(models))["video"])
    with_lora = app.run(settings(models, loras=[str(models / "fits.safetensors")], lora_strengths="2"))
    assert not same_video(load_video(with_lora["video"]), base)
    assert json.loads(open(with_lora["sidecar"]).read())["run"]["loras"][0]["scale"] == 2.0
    at_zero = app.run(settings(models, loras=[str(models / "fits.safetensors")], lora_strengths="0"))
    assert same_video(load_video(at_zero["video"]), base)  # strengths reach the adapters
    assert same_video(load_video(app.run(settings(models))["video"]), base)  # unloaded again



@pytest.mark.parametrize("changes, message", [
    (dict(mode="image-to-video", model="", image="MODELS/not_an_image.png"), "cannot read image"),
    (dict(mode="image-to-video", model=""), "upload a first frame"),
    (dict(mode="image-to-video", image="MODELS/first.png"), "--image needs an image-to-video model"),
    (dict(mode="camera", model="MODELS/t2v"), "--camera needs a camera-control model"),
    (dict(mode="camera", model="MODELS/camera", camera_file="MODELS/bad_pose.txt"), "bad_pose.txt:2"),
    (dict(mode="trajectory", tracks_text="4,4 oops"), "inline trajectory point 'oops'"),
    (dict(mode="trajectory"), "click points on the first frame or upload a track file"),
    (dict(num_frames=6), "num_frames"),
    (dict(prompt=" "), "write a prompt"),
    (dict(loras=["MODELS/missing.safetensors"]), "no LoRA file"),
])
def test_bad_requests_are_messages(app, models, changes, message):
    changes = {k: [p.replace("MODELS", str(models)) for p in v] if isinstance(v, list) else
               v.replace("MODELS", str(models)) if isinstance(v, str) else v for k, v in changes.items()}
    outputs = list(app.stream("s", ui.values_from_settings(settings(models, **changes), {})))
    status = outputs[-1][0]
    assert "vg-error" in status and message in status.replace("&#x27;", "'"), status
    assert outputs[-1][2] is None  # no video


def test_a_lora_that_does_not_fit_leaves_the_model_clean(app, models):
    base = load_video(app.run(settings(models))["video"])
    bad = settings(models, loras=[str(models / "fits.safetensors"), str(models / "wrong_width.safetensors")])
    status = list(app.stream("s", ui.values_from_settings(bad, {})))[-1][0]
    assert "does not fit this DiT" in status
    assert same_video(load_video(app.run(settings(models))["video"]), base)


def test_camera_and_trajectory_modes(app, models, tmp_path):
    camera = app.run(settings(models, model=str(models / "camera"), mode="camera", camera_preset="zoom-in",
                              camera_image=str(models / "first.png"), camera_scale=2.0, width=48))
    assert load_video(camera["video"]).shape == (5, 32, 48, 3)
    assert json.loads(open(camera["sidecar"]).read())["settings"]["camera_image"].endswith(".png")
    with pytest.raises(ValueError, match="needs a trajectory model"):  # checked tracks, no generation faked
        app.plan(settings(models, mode="trajectory", tracks_text="4,4 20,20"))
    # An empty Model directory: the embedded camera and trajectory models (adapters over the embedded default).
    from videogen.loading import checkpoints_dir

    for mode, extra in (("camera", {}), ("trajectory", {"tracks_text": "8,32 56,32"})):
        plan = app.plan(settings(models, model="", mode=mode, height=64, width=64, num_frames=17, **extra))
        assert Path(plan["model"]) == checkpoints_dir() / f"shapes-{mode}", mode
    tracks = "4,4 28,20\n30,30 2,2"
    done = app.run(settings(models, model=str(models / "trajectory"), mode="trajectory", tracks_text=tracks,
                            trajectory_image=str(models / "first.png")))  # a T2V base: the frame is only drawn on
    assert load_video(done["video"]).shape == (5, 32, 32, 3)
    assert json.loads(open(done["sidecar"]).read())["settings"]["tracks_text"] == tracks
    from pipelines import TrajectoryControlPipeline
    from videogen.loading import load_pipeline

    pipe = load_pipeline(models / "trajectory")  # the same generation through the library
    pipe.set_progress_bar_config(disable=True)
    plan = app.plan(settings(models, model=str(models / "trajectory"), mode="trajectory", tracks_text=tracks,
                             seed=json.loads(open(done["sidecar"]).read())["settings"]["seed"]))
    assert isinstance(pipe, TrajectoryControlPipeline) and plan["kwargs"]["trajectory"][0].shape == (2, 5, 2)
    from videogen.io import save_video

    lib = save_video(pipe(**plan["kwargs"], output_type="np").frames[0], tmp_path / "lib.mp4",
                     fps=plan["settings"]["fps"])
    assert same_video(load_video(done["video"]), load_video(lib))


# ----------------------------------------------------------------------------------------------
# The served app
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    port = free_port()
    page, app = ui.launch(str(models / "t2v"), port=port, outputs=tmp_path_factory.mktemp("served"), block=False)
    yield f"http://127.0.0.1:{port}/", app
    page.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[0], verbose=False, download_files=str(served[1].outputs / "client"))


def call(client, **values):
    return client.predict(*[values[k] for k in ui.CONTROLS], api_name="/generate")


def test_client_generates_a_video_with_the_right_frames(client, models):
    status, preview, video, files, info, gallery = call(client, **settings(models, num_frames=9, seed=5))
    assert "done" in status and "9 frames" in status
    path = video["video"] if isinstance(video, dict) else video
    assert load_video(path).shape == (9, 32, 32, 3)
    assert sorted(os.path.splitext(f)[1] for f in files) == [".json", ".mp4"]
    assert info["settings"]["seed"] == 5 and info["run"]["frames"] == 9
    assert len(gallery) >= 1


def test_client_bad_inputs_then_the_server_still_serves(client, models):
    from gradio_client import handle_file

    bad_image = call(client, **settings(models, model="", mode="image-to-video", image=handle_file(str(models / "not_an_image.png"))))
    assert "vg-error" in bad_image[0] and "cannot read image" in bad_image[0]
    bad_pose = call(client, **settings(models, model=str(models / "camera"), mode="camera",
                                       camera_file=handle_file(str(models / "bad_pose.txt"))))
    assert "vg-error" in bad_pose[0] and "bad_pose.txt:2" in bad_pose[0]
    bad_lora = call(client, **settings(models, loras=[handle_file(str(models / "wrong_width.safetensors"))]))
    assert "vg-error" in bad_lora[0] and "does not fit this DiT" in bad_lora[0]
    assert "done" in call(client, **settings(models))[0]


def test_client_queue_runs_requests_in_order_and_settings_load_back(client, served, models):
    from gradio_client.utils import Status

    def submit(seed):
        return client.submit(*[settings(models, seed=seed)[k] for k in ui.CONTROLS], api_name="/generate")

    # The client sends each submission from its own thread, so two back-to-back submits may reach the server in
    # either order; the second is sent once the server has queued the first (the queue's order is what is tested).
    first = submit(11)
    deadline = time.time() + 60
    while first.status().code in (Status.STARTING, Status.JOINING_QUEUE) and not first.done():
        assert time.time() < deadline, "the server never queued the first request"
        time.sleep(0.02)
    jobs = [first, submit(12)]
    results = [job.result(timeout=120) for job in jobs]
    assert all("done" in r[0] for r in results)
    seeds = [json.loads(open(sidecar).read())["settings"]["seed"] for _, _, sidecar in served[1].gallery[-2:]]
    assert seeds == [11, 12]
    sidecar = [f for f in results[1][3] if f.endswith(".json")][0]
    from gradio_client import handle_file

    loaded = client.predict(handle_file(sidecar), api_name="/load_settings")
    values = dict(zip(ui.CONTROLS, loaded[:len(ui.CONTROLS)]))
    assert values["prompt"] == PROMPT and values["seed"] == 12 and values["num_frames"] == 5
    assert "settings loaded" in loaded[-1]
    assert "nothing is running" in client.predict(api_name="/stop")


# ----------------------------------------------------------------------------------------------
# The page in a real browser (Debian's chromium; skipped where it is not installed)
# ----------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--window-size=1400,1500", "--virtual-time-budget=20000"]


def page_requests(net_log) -> set:
    """The hosts the page itself asked for (Chromium's net log: requests initiated by the page's origin)."""
    text = open(net_log).read().rstrip().rstrip(",")
    data = json.loads(text if text.endswith("}") else text + "]}")
    types = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    hosts = set()
    for event in data["events"]:
        params = event.get("params", {})
        if types.get(event["type"]) == "URL_REQUEST_START_JOB" and params.get("initiator", "").startswith("http"):
            hosts.add(params["url"].split("/")[2].rsplit(":", 1)[0])
    return hosts


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install -y chromium); "
                    "run by hand: python -m pytest tests/test_ui.py -k browser")
def test_browser_renders_the_page(served, tmp_path):
    url = served[0]
    shot = tmp_path / "page.png"
    run = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--screenshot={shot}", f"--log-net-log={tmp_path / 'net.json'}",
                          url], capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1500, 1400) and pixels.std() > 10  # not blank
    orange = (np.abs(pixels - [249, 115, 22]).max(-1) < 40).sum()  # the Generate button, in the theme's primary
    assert orange > 2000, orange
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'id="prompt"' in dom and "<textarea" in dom and "Generate" in dom and "Trajectory" in dom
    assert page_requests(tmp_path / "net.json") <= {"127.0.0.1"}  # nothing fetched from the internet
    if os.environ.get("VIDEOGEN_UI_SCREENSHOT"):  # refresh the README's picture: VIDEOGEN_UI_SCREENSHOT=docs/ui.png
        shutil.copyfile(shot, os.environ["VIDEOGEN_UI_SCREENSHOT"])
