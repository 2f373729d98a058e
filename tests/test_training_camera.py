"""The camera task of `videogen train` on tiny models and shapes-world camera clips: the frozen base, the adapter
trained and saved as a camera pipeline, validation videos, exact resume; the static null, sparse pose dropout and
high-noise timesteps against independent computations."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_training import check_cached_training_equals_video_training, run_cli, write_config
from videogen.conditioning.camera import pack_camera, plucker_rays, relative_poses
from videogen.training.camera import (
    CameraTask, clip_plucker, frames_to_drop, freeze_to_first_frame, high_noise_sigmas, high_noise_window,
    static_plucker,
)
from videogen.training.config import load_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Shapes-world clips (all with a moving camera) and a tiny text-to-video base pipeline."""
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline
    from videogen.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("camera_world")
    write_dataset(root / "clips", num=4, frames=9, height=32, width=32, camera_fraction=1.0, max_objects=1,
                  progress=False)
    _, parts = tiny_pipeline_parts(root / "parts")
    TextToVideoPipeline(**parts).save_pretrained(root / "base")
    return root


def camera_args(world, *extra):
    return ["task=camera", f"model.pretrained={world / 'base'}", "model.vae=null", "data.batch_size=2",
            "data.num_frames=9", "train.ema_decay=null", "train.learning_rate=1e-2", "camera.static_prob=0.3",
            "camera.sparse_prob=0.5", "camera.high_noise=true", "checkpoint.every=2", *extra]


def adapter_tensors(run):
    return load_file(str(run / "final" / "camera_adapter" / "diffusion_pytorch_model.safetensors"))


def test_camera_task_trains_the_adapter_only_and_resumes_exactly(tmp_path, world):
    config = write_config(tmp_path, data={"root": str(world / "clips")})
    full = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'full'}", "train.max_steps=4",
                   "validation.every=4", "validation.prompts=[a red circle]", "validation.num_inference_steps=2",
                   "camera.validation_cameras=[pan-left]", *camera_args(world))
    assert full.returncode == 0, full.stderr[-3000:]
    final = tmp_path / "full" / "final"
    index = json.loads((final / "model_index.json").read_text())
    assert index["_class_name"] == "CameraControlPipeline" and index["camera_adapter"][1] == "CameraControlNet"
    # The adapter alone, pointing at the base (not a copy of it).
    assert (final / "base.json").exists() and not (final / "transformer").exists()
    assert (final / json.loads((final / "base.json").read_text())["base"]).resolve() == (world / "base").resolve()
    trained = adapter_tensors(tmp_path / "full")
    assert trained["proj_out.0.weight"].abs().max() > 0  # ... and the adapter left its zero start
    assert (tmp_path / "full" / "validation" / "step-00000004" / "prompt00-pan-left-seed0.mp4").exists()
    # Stopped at step 2 (its checkpoint and final written), then resumed to 4: the same adapter bit for bit.
    first = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'resumed'}", "train.max_steps=2",
                    *camera_args(world))
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'resumed'}", "train.max_steps=4",
                    *camera_args(world), "--resume", "latest")
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = adapter_tensors(tmp_path / "resumed")
    assert [k for k in trained if not torch.equal(trained[k], resumed[k])] == []
    # Trained on high noise only: the saved camera window covers the steps at sigma >= 0.6 (the base's 50 steps).
    window = json.loads((final / "generation_config.json").read_text())["camera_window"]
    from pipelines import make_scheduler

    sched = make_scheduler("unipc")
    sched.set_timesteps(50)
    assert window == [0.0, sum(float(t) / 1000 >= 0.6 for t in sched.timesteps) / 50] and 0 < window[1] < 1
    # The trained directory generates with a camera.
    from videogen.loading import load_pipeline

    pipe = load_pipeline(final)
    base = load_file(str(world / "base" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(base[k], v) for k, v in pipe.transformer.state_dict().items())  # the base stayed frozen
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle", camera="zoom-in", height=32, width=32, num_frames=9, num_inference_steps=2,
               max_sequence_length=16, output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 9, 32, 32, 3) and np.isfinite(out).all()


def test_camera_task_on_an_i2v_layout_base(tmp_path, world):
    from _tiny import tiny_i2v_pipeline_parts
    from pipelines import ImageToVideoPipeline

    _, parts = tiny_i2v_pipeline_parts(tmp_path / "parts")
    ImageToVideoPipeline(**parts, image_optional=True).save_pretrained(tmp_path / "i2v")
    config = write_config(tmp_path, data={"root": str(world / "clips")})
    args = camera_args(world, "train.max_steps=2", f"model.pretrained={tmp_path / 'i2v'}")
    bad = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'bad'}", *args)
    assert bad.returncode != 0 and "train.i2v true" in bad.stderr
    ok = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}", *args, "train.i2v=true",
                 "train.image_dropout=0.5")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert adapter_tensors(tmp_path / "run")["proj_out.1.weight"].abs().max() > 0


def test_camera_training_from_a_latent_cache(tmp_path, world):
    """`videogen cache` keeps each clip's camera metadata, so the camera task trains from cached latents: without
    the static null, the same losses and adapter as from the videos; the static null's latents are those of frame 0
    (decoded from latent frame 0) frozen over the clip, as the VAE encodes them."""
    from videogen.loading import load_pipeline

    cache = check_cached_training_equals_video_training(
        tmp_path, world, [*camera_args(world), "camera.static_prob=0"], adapter_tensors)
    # The static null on a cached batch (every sample static).
    from videogen.data.cache import CachedDataset

    entry = CachedDataset(cache)[0]
    vae = load_pipeline(world / "base").vae
    task = CameraTask.__new__(CameraTask)
    task.cfg, task.vae = load_config(None, ["camera.static_prob=0.999999", "camera.sparse_prob=0"]), vae
    latents = entry["latents"][None].float()
    out, camera = task.prepare({"latents": latents, "metadata": [entry["metadata"]]},
                               torch.Generator().manual_seed(0), 1, lambda x: x)
    with torch.no_grad():
        frame0 = vae.decode(vae.denormalize_latents(latents[:, :, :1])).sample.clamp(-1, 1)
        expected = vae.normalize_latents(vae.encode(frame0.repeat(1, 1, 9, 1, 1)).latent_dist.mode())
    assert out.shape == latents.shape and torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, latents, atol=1e-3)  # the clip's camera moved: the frozen clip differs
    assert torch.allclose(camera[0], pack_camera(static_plucker(entry["metadata"], 9, 32, 32)), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# The pieces
# ----------------------------------------------------------------------------------------------


def test_high_noise_sigmas_follow_the_truncated_normal():
    mu, sd, low, high = 0.95, 0.1, 0.6, 1.0
    s = high_noise_sigmas(200_000, torch.Generator().manual_seed(0), mu, sd, low, high).double()
    assert s.min() >= low and s.max() < 1.0
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    a, b = (low - mu) / sd, (high - mu) / sd
    z = cdf(b) - cdf(a)
    mean = mu + sd * (pdf(a) - pdf(b)) / z
    var = sd**2 * (1 + (a * pdf(a) - b * pdf(b)) / z - ((pdf(a) - pdf(b)) / z) ** 2)
    assert abs(s.mean().item() - mean) < 1e-3 and abs(s.var().item() - var) < 1e-3


def test_high_noise_window_of_the_flow_schedule():
    from pipelines import make_scheduler

    # Flow shift 3 over 20 steps: sigma_i = 3 s / (1 + 2 s) for s = 1 - i / 20; s >= 1/3 gives sigma >= 0.6.
    shifted = [3 * (1 - i / 20) / (1 + 2 * (1 - i / 20)) for i in range(20)]
    assert high_noise_window(make_scheduler("unipc", flow_shift=3.0), 20, 0.6) == [
        0.0, sum(v >= 0.6 - 1e-3 for v in shifted) / 20]


def test_frames_to_drop_keeps_the_ends_and_the_share():
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        dropped = frames_to_drop(17, gen, 0.7, 1.0)
        assert dropped == sorted(set(dropped)) and 0 not in dropped and 16 not in dropped
        assert 11 <= len(dropped) <= 15  # 70-100 % of the 15 middle frames, rounded
    assert frames_to_drop(2, gen) == []


def shapes_metadata(num_frames=9, size=32):
    from videogen.data.synthetic import ClipSpec, render_clip

    _, meta = render_clip(ClipSpec((), camera="pan_left", num_frames=num_frames, height=size, width=size))
    return meta


def test_clip_rays_static_null_and_sparse_dropout():
    meta = shapes_metadata()
    c2w = torch.tensor(meta["camera"]["c2w"], dtype=torch.float64)
    k = torch.tensor(meta["camera"]["intrinsics"], dtype=torch.float32)
    expected = plucker_rays(k, relative_poses(c2w).float(), 32, 32)
    assert torch.allclose(clip_plucker(meta, 9, 32, 32), expected)
    assert torch.equal(clip_plucker(None, 9, 32, 32), torch.zeros(6, 9, 32, 32))
    still = static_plucker(meta, 9, 32, 32)
    assert torch.allclose(still, plucker_rays(k[:1].expand(9, 4), torch.eye(4).repeat(9, 1, 1), 32, 32))
    assert torch.equal(still[:, 3], still[:, 0])
    video = torch.rand(3, 9, 32, 32)
    frozen = freeze_to_first_frame(video)
    assert all(torch.equal(frozen[:, f], video[:, 0]) for f in range(9))
    # The task's batch: every decision from the generator, identical for the same seed.
    cfg = load_config(None, ["camera.static_prob=0.5", "camera.sparse_prob=0.99"])
    task = CameraTask.__new__(CameraTask)
    task.cfg = cfg
    batch = {"video": torch.rand(4, 3, 9, 32, 32), "metadata": [meta] * 4}
    v1, c1 = task.prepare(batch, torch.Generator().manual_seed(2), 4, lambda x: x)
    v2, c2 = task.prepare(batch, torch.Generator().manual_seed(2), 4, lambda x: x)
    assert torch.equal(v1, v2) and torch.equal(c1, c2) and c1.shape == (4, 24, 3, 32, 32)
    packed_clip, packed_still = pack_camera(expected.float()), pack_camera(still)
    kinds = []
    for i in range(4):
        if torch.equal(v1[i], freeze_to_first_frame(batch["video"][i])):
            assert torch.allclose(c1[i], packed_still)
            kinds.append("static")
        else:
            assert torch.equal(v1[i], batch["video"][i])
            # sparse: frames 0 and 8 kept (latent frame 0 channels, and the last slot of latent frame 2)
            assert torch.allclose(c1[i][:, 0], packed_clip[:, 0]) and torch.allclose(c1[i][3::4, 2], packed_clip[3::4, 2])
            assert (c1[i] == 0).flatten(1).all(1).any()  # some dropped middle frame's rays are all zero
            kinds.append("sparse")
    assert "static" in kinds and "sparse" in kinds, kinds
