"""The trajectory task of `videogen train` on tiny models and shapes-world clips: the frozen base, the adapter trained
and saved alone over its base, validation videos, exact resume; the tracks read from clip metadata in caption order
and the track dropout against independent computations."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_training import check_cached_training_equals_video_training, run_cli, write_config
from videogen.training.trajectory import TrajectoryTask, clip_tracks, keep_first


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Shapes-world clips (static camera, up to two moving objects) and a tiny text-to-video base pipeline."""
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline
    from videogen.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("trajectory_world")
    write_dataset(root / "clips", num=4, frames=9, height=32, width=32, camera_fraction=0.0, max_objects=2,
                  progress=False)
    _, parts = tiny_pipeline_parts(root / "parts")
    TextToVideoPipeline(**parts).save_pretrained(root / "base")
    return root


def trajectory_args(world, *extra):
    return ["task=trajectory", f"model.pretrained={world / 'base'}", "model.vae=null", "data.batch_size=2",
            "data.num_frames=9", "train.ema_decay=null", "train.learning_rate=1e-2", "trajectory.drop_prob=0.3",
            "trajectory.partial_prob=0.5", "trajectory.adapter={channels: 8}", "checkpoint.every=2", *extra]


def adapter_tensors(run):
    return load_file(str(run / "final" / "trajectory_adapter" / "diffusion_pytorch_model.safetensors"))


def test_trajectory_task_trains_the_adapter_only_and_resumes_exactly(tmp_path, world):
    config = write_config(tmp_path, data={"root": str(world / "clips")})
    full = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'full'}", "train.max_steps=4",
                   "validation.every=4", "validation.prompts=[a red circle]", "validation.num_inference_steps=2",
                   "trajectory.validation_tracks=['4,16 28,16']", *trajectory_args(world))
    assert full.returncode == 0, full.stderr[-3000:]
    final = tmp_path / "full" / "final"
    index = json.loads((final / "model_index.json").read_text())
    assert index["_class_name"] == "TrajectoryControlPipeline" and not (final / "transformer").exists()
    assert (final / "base.json").exists()  # the adapter alone, pointing at the (unchanged) base
    trained = adapter_tensors(tmp_path / "full")
    assert trained["fusers.0.gamma_temporal.weight"].abs().max() > 0  # the fusers left their zero start
    assert (tmp_path / "full" / "validation" / "step-00000004" / "prompt00-tracks0-seed0.mp4").exists()
    first = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'resumed'}", "train.max_steps=2",
                    *trajectory_args(world))
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'resumed'}", "train.max_steps=4",
                    *trajectory_args(world), "--resume", "latest")
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = adapter_tensors(tmp_path / "resumed")
    assert [k for k in trained if not torch.equal(trained[k], resumed[k])] == []
    from videogen.loading import load_pipeline

    pipe = load_pipeline(final)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle", trajectory="4,4 28,28", height=32, width=32, num_frames=9, num_inference_steps=2,
               max_sequence_length=16, output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 9, 32, 32, 3) and np.isfinite(out).all()


def test_trajectory_task_rules(tmp_path, world):
    config = write_config(tmp_path, data={"root": str(world / "clips")})
    bad = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'bad'}", "train.max_steps=1",
                  *trajectory_args(world, "trajectory.drop_prob=1.5"))
    assert bad.returncode != 0 and "trajectory.drop_prob must be in [0, 1)" in bad.stderr
    bad = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'bad2'}", "train.max_steps=1",
                  *trajectory_args(world, "model.pretrained=null"))
    assert bad.returncode != 0 and "task trajectory trains an adapter on a frozen base" in bad.stderr


def test_clip_tracks_follow_the_metadata_in_caption_order(world):
    from videogen.data.video_dataset import VideoFolderDataset

    data = VideoFolderDataset(world / "clips", num_frames=9, size=(32, 32))
    data.scan()
    for i in range(len(data)):
        sample = data[i]
        meta = sample["metadata"]
        tracks, visible = clip_tracks(meta, 9, 32, 32)
        assert tracks.shape == (len(meta["objects"]), 9, 2)
        for n, obj in enumerate(meta["objects"]):  # the caption names the objects in this order
            assert torch.allclose(tracks[n], torch.tensor(obj["trajectory"], dtype=torch.float32))
            assert obj["color"] in sample["caption"]
            inside = [0 <= x <= 32 and 0 <= y <= 32 for x, y in obj["trajectory"]]
            assert visible[n].tolist() == inside
        if len(meta["objects"]) == 2:
            positions = [sample["caption"].index(o["color"] + " " + o["shape"]) for o in meta["objects"]]
            assert positions == sorted(positions)
    assert clip_tracks({"objects": []}, 9, 32, 32) is None and clip_tracks(None, 9, 32, 32) is None
    t, v = keep_first(torch.zeros(3, 9, 2), torch.ones(3, 9, dtype=torch.bool), 2)
    assert t.shape == (2, 9, 2) and v.shape == (2, 9)


def test_prepare_drops_tracks_as_drawn_and_is_deterministic(world):
    from videogen.data.video_dataset import VideoFolderDataset
    from videogen.training.config import load_config
    from _tiny import tiny_pipeline_parts  # noqa: F401  (the base's components)
    from pipelines import TextToVideoPipeline

    base = TextToVideoPipeline.from_pretrained(world / "base")
    cfg = load_config(None, [f"model.pretrained={world / 'base'}", "task=trajectory", "trajectory.drop_prob=0.5",
                             "trajectory.partial_prob=0.0", "trajectory.adapter={channels: 8}"])
    task = TrajectoryTask(cfg, {"transformer": base.transformer, "vae": base.vae})
    data = VideoFolderDataset(world / "clips", num_frames=9, size=(32, 32))
    data.scan()
    samples = [data[i] for i in range(4)]
    batch = {"video": torch.stack([s["video"] for s in samples]), "metadata": [s["metadata"] for s in samples]}
    video, (motion, scale) = task.prepare(batch, torch.Generator().manual_seed(5), 4, lambda x: x)
    _, (motion2, scale2) = task.prepare(batch, torch.Generator().manual_seed(5), 4, lambda x: x)
    assert torch.equal(motion, motion2) and torch.equal(scale, scale2)
    expected = (torch.rand(4, generator=torch.Generator().manual_seed(5)) >= 0.5).float()
    assert torch.equal(scale, expected) and torch.equal(video, batch["video"])
    assert motion.shape == (4, base.vae.config.z_dim, 3, 4, 4)
    # Each sample's motion latents are its own flow video encoded alone (Tora's flow of the clip's tracks, or the
    # all-zero flow of a dropped sample), whatever else is in the batch; the second call found them remembered.
    from pipelines.trajectory_control import motion_latents

    for i in range(4):
        if scale[i]:
            tracks = clip_tracks(samples[i]["metadata"], 9, 32, 32)
        else:
            tracks = (torch.zeros(1, 9, 2), torch.zeros(1, 9, dtype=torch.bool))
        assert torch.equal(motion[i], motion_latents(base.vae, *tracks, 32, 32)[0])
    assert 1 <= len(task._memo) <= 5 and task._memo_bytes == len(task._memo) * motion[0].numel() * 4


def test_trajectory_training_from_a_latent_cache_equals_training_from_the_videos(tmp_path, world):
    """`videogen cache` keeps each clip's metadata, so the trajectory task trains from cached latents (only the
    flow video goes through the VAE each step): the same losses and the same adapter as from the videos."""
    check_cached_training_equals_video_training(tmp_path, world, trajectory_args(world), adapter_tensors)
