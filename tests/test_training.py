"""The training stack end to end on tiny models: dry run, exact resume after SIGKILL, bad data, LoRA, VAE, 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from videogen.io import save_video

TINY_CONFIG = {
    "task": "dit",
    "seed": 0,
    "model": {
        "vae": {"base_dim": 8, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
                "temporal_downsample": [False, True, True], "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4},
        "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32},
        "transformer": {"num_heads": 2, "dim": 24, "ffn_dim": 32, "num_layers": 2, "freq_dim": 32},
        "tokenizer": {"vocab_size": 64},
    },
    "data": {"num_frames": 5, "height": 32, "width": 32, "batch_size": 2, "max_sequence_length": 16},
    "train": {"max_steps": 6, "learning_rate": 1e-3, "ema_decay": 0.9, "caption_dropout": 0.2},
    "checkpoint": {"every": 2, "keep_last": 2},
    "log": {"every": 1, "tensorboard": False},
}
COLORS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 230), "yellow": (230, 230, 30)}


def make_clips(root: Path, count: int = 4, frames: int = 9, size: int = 32) -> Path:
    """Real mp4 clips of a moving colored square with same-name captions."""
    root.mkdir(parents=True, exist_ok=True)
    names = list(COLORS)
    for i in range(count):
        color = names[i % len(names)]
        video = np.zeros((frames, size, size, 3), dtype=np.uint8)
        for f in range(frames):
            x = 2 + f * 2 if i % 2 == 0 else size - 10 - f * 2
            video[f, 12:20, x:x + 8] = COLORS[color]
        save_video(video, root / f"clip{i}.mp4", fps=8)
        direction = "right" if i % 2 == 0 else "left"
        (root / f"clip{i}.txt").write_text(f"a {color} square moving {direction}")
    return root


def write_config(tmp_path: Path, **sections) -> Path:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args, env=None, timeout=300):
    """The console command in a fresh process (what users and `accelerate launch` run)."""
    return subprocess.run([sys.executable, "-m", "videogen.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def check_cached_training_equals_video_training(tmp_path: Path, world: Path, task_args: list, adapter_tensors) -> Path:
    """An adapter task (``task_args``: its CLI overrides) trained 3 steps from ``world``'s clips and from their
    ``videogen cache``: the same losses and the same adapter (``adapter_tensors(run_dir)``). Returns the cache."""
    cached = run_cli("cache", "--data", str(world / "clips"), "--model", str(world / "base"),
                     "--out", str(tmp_path / "cache"), "--num-frames", "9", "--height", "32", "--width", "32",
                     "--max-sequence-length", "16")
    assert cached.returncode == 0, cached.stderr[-2000:]
    config = write_config(tmp_path, data={"root": str(world / "clips")})
    runs = {}
    for name, extra in (("videos", []), ("cached", [f"data.cache={tmp_path / 'cache'}"])):
        proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / name}", "train.max_steps=3",
                       *task_args, *extra, "train.learning_rate=1e-3")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = [json.loads(line)["loss"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert np.allclose(runs["videos"], runs["cached"], rtol=1e-4), runs
    a, b = adapter_tensors(tmp_path / "videos"), adapter_tensors(tmp_path / "cached")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    return tmp_path / "cache"


def final_tensors(run_dir: Path) -> dict:
    return load_file(str(run_dir / "final" / "transformer" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("clips"))


def test_dry_run(tmp_path, data):
    config = write_config(tmp_path, data={"root": str(data)})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "# resolved config" in proc.stdout and "max_steps: 6" in proc.stdout
    assert "# parameters" in proc.stdout and "transformer" in proc.stdout and "trainable" in proc.stdout
    assert '"usable": 4' in proc.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_config_key_is_refused(tmp_path, data):
    config = write_config(tmp_path, data={"root": str(data)})
    proc = run_cli("train", "--config", str(config), "train.max_stepz=3", "--dry-run")
    assert proc.returncode == 2 and "unknown config key 'train.max_stepz'" in proc.stderr


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, data):
    config = write_config(tmp_path, data={"root": str(data), "num_frames": 9, "height": 64, "width": 64})
    ref_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref = run_cli("train", "--config", str(config), f"output_dir={ref_dir}", "train.max_steps=8")
    assert ref.returncode == 0, ref.stderr

    # Same run with a far-away max_steps (constant LR, so the schedule does not depend on it), killed hard as
    # soon as the step-4 checkpoint is complete.
    proc = subprocess.Popen([sys.executable, "-m", "videogen.cli", "train", "--config", str(config),
                             f"output_dir={killed_dir}", "train.max_steps=1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = killed_dir / "checkpoints" / "step-00000004"
    deadline = time.time() + 240
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = sorted(int(p.name.split("-")[1]) for p in (killed_dir / "checkpoints").glob("step-*"))
    assert steps and 4 <= steps[-1] < 8, steps
    assert not (killed_dir / "final").exists()

    resumed = run_cli("train", "--config", str(config), f"output_dir={killed_dir}", "train.max_steps=8",
                      "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr
    a, b = final_tensors(ref_dir), final_tensors(killed_dir)
    assert a.keys() == b.keys()
    mismatched = [k for k in a if not torch.equal(a[k], b[k])]
    assert not mismatched, mismatched[:5]
    # The resumed run continued the loss curve instead of restarting it.
    log = [json.loads(line) for line in (killed_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 8


def test_sigterm_saves_a_checkpoint(tmp_path, data):
    config = write_config(tmp_path, data={"root": str(data), "num_frames": 9, "height": 64, "width": 64},
                          checkpoint={"every": 1000, "keep_last": 2})
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "videogen.cli", "train", "--config", str(config),
                             f"output_dir={run_dir}", "train.max_steps=1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "log.jsonl"
    deadline = time.time() + 240
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by signal" in out
    saved = list((run_dir / "checkpoints").glob("step-*"))
    assert len(saved) == 1 and (saved[0] / "train_state.json").exists()


def test_corrupt_files_are_skipped_and_reported(tmp_path):
    root = make_clips(tmp_path / "clips", count=2)
    good = (root / "clip0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "truncated.txt").write_text("a red square moving right")
    (root / "garbage.mp4").write_bytes(os.urandom(2000))
    (root / "garbage.txt").write_text("a blue square moving left")
    config = write_config(tmp_path, data={"root": str(root)}, train={"max_steps": 2})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    assert "2 unreadable data file(s) skipped" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # one line per bad file
    assert sum("truncated.mp4" in w for w in warnings) == 1 and sum("garbage.mp4" in w for w in warnings) == 1


def test_lora_saves_only_the_adapter_and_reloads(tmp_path, data):
    from videogen.models import VideoDiT
    from videogen.training.config import load_config
    from videogen.training.lora import load_lora
    from videogen.training.trainer import Trainer

    config = write_config(tmp_path, data={"root": str(data)}, lora={"rank": 4}, train={"max_steps": 3})
    cfg = load_config(config, [f"output_dir={tmp_path / 'run'}", "train.ema_decay=null"])
    trainer = Trainer(cfg)
    trainer.train()
    saved = load_file(str(tmp_path / "run" / "final" / "lora" / "pytorch_lora_weights.safetensors"))
    assert saved and all("lora_" in k and k.startswith("transformer.") for k in saved)  # diffusers' format
    trained = trainer.accelerator.unwrap_model(trainer.model).eval()
    assert any(t.abs().sum() > 0 for k, t in saved.items() if "lora_B" in k)  # the adapter really trained

    kwargs = {"in_channels": 4, "out_channels": 4, "text_dim": 16, **TINY_CONFIG["model"]["transformer"]}
    torch.manual_seed(0)
    fresh = load_lora(VideoDiT(**kwargs), tmp_path / "run" / "final" / "lora").eval()
    torch.manual_seed(0)
    base = VideoDiT(**kwargs).eval()
    x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 16, 16)
    with torch.no_grad():
        expected, got, plain = trained(x, t, ctx).sample, fresh(x, t, ctx).sample, base(x, t, ctx).sample
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got - plain).abs().max() > 1e-4
    # diffusers' own loader reads the file: the same model in diffusers' class, with the LoRA, gives the same output
    from diffusers import WanPipeline, WanTransformer3DModel

    from videogen.convert.wan import save_diffusers_transformer

    save_diffusers_transformer(base, tmp_path / "base_diffusers")
    ref = WanTransformer3DModel.from_pretrained(tmp_path / "base_diffusers").eval()
    state, metadata = WanPipeline.lora_state_dict(str(tmp_path / "run" / "final" / "lora"), return_lora_metadata=True)
    assert metadata and metadata["transformer.r"] == 4 and metadata["transformer.lora_alpha"] == 4
    ref.load_lora_adapter(state, prefix="transformer", metadata=metadata)
    with torch.no_grad():
        assert torch.allclose(ref(x, t, ctx).sample, expected, atol=1e-5)


def test_vae_training_reduces_reconstruction_loss(tmp_path, data):
    from videogen.models import CausalVideoVAE

    config = write_config(tmp_path, task="vae", data={"root": str(data)},
                          train={"max_steps": 12, "learning_rate": 2e-3, "ema_decay": None})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    log = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 12 and np.mean(log[-3:]) < 0.8 * np.mean(log[:3])
    vae = CausalVideoVAE.from_pretrained(tmp_path / "run" / "final" / "vae")
    assert vae.config.base_dim == 8
    # The saved config carries the latent statistics of this data, so normalised latents are ~N(0, 1) per channel.
    from videogen.data.video_dataset import VideoFolderDataset

    dataset = VideoFolderDataset(data, num_frames=5, size=(32, 32))
    with torch.no_grad():
        z = torch.cat([vae.encode(dataset[i]["video"][None]).latent_dist.mode() for i in range(len(dataset))])
    normalised = vae.normalize_latents(z).transpose(0, 1).flatten(1)
    assert normalised.mean(1).abs().max() < 1e-3 and (normalised.std(1, unbiased=False) - 1).abs().max() < 1e-3
    assert vae.config.latents_mean != [0.0] * 4


def test_decoder_only_vae_training_keeps_the_encoder_and_its_latent_statistics(tmp_path, data):
    from videogen.models import CausalVideoVAE

    start = CausalVideoVAE(**{**TINY_CONFIG["model"]["vae"], "latents_mean": [0.5] * 4, "latents_std": [2.0] * 4})
    start.save_pretrained(tmp_path / "start")
    config = write_config(tmp_path, task="vae", data={"root": str(data)}, model={"vae": str(tmp_path / "start")},
                          train={"max_steps": 4, "learning_rate": 2e-3, "ema_decay": None,
                                 "vae_trainable": "decoder"})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    before, after = start.state_dict(), CausalVideoVAE.from_pretrained(tmp_path / "run" / "final" / "vae").state_dict()
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    saved = json.loads((tmp_path / "run" / "final" / "vae" / "config.json").read_text())
    assert saved["latents_mean"] == [0.5] * 4 and saved["latents_std"] == [2.0] * 4  # the DiT's normalisation

    bad = write_config(tmp_path, task="vae", data={"root": str(data)}, train={"vae_trainable": "encoder"})
    proc = run_cli("train", "--config", str(bad), f"output_dir={tmp_path / 'bad'}")
    assert proc.returncode != 0 and "vae_trainable" in proc.stderr


def test_latent_thumbnail_and_color_anchor():
    from videogen.training.losses import latent_color_anchor, latent_thumbnail

    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    thumb = latent_thumbnail(video, temporal=4, spatial=8)
    assert thumb.shape == (2, 3, 3, 2, 2)
    assert torch.allclose(thumb[:, :, 0, 1, 0], video[:, :, 0, 8:, :8].mean((2, 3)))  # frame 0 alone
    assert torch.allclose(thumb[:, :, 2, 0, 1], video[:, :, 5:9, :8, 8:].mean((2, 3, 4)))  # frames 5-8
    latents = torch.randn(2, 4, 3, 2, 2)
    latents[:, :3] = 2.0 * thumb
    assert latent_color_anchor(latents, video) == 0  # only channels 0-2 are anchored
    latents[:, 0] += 0.5
    assert torch.isclose(latent_color_anchor(latents, video), torch.tensor(0.5 / 3))
    assert latent_color_anchor(latents, video, foreground_weight=5.0) > 0


def test_vae_training_with_the_color_anchor_moves_latents_towards_it(tmp_path, data):
    from videogen.data.video_dataset import VideoFolderDataset
    from videogen.models import CausalVideoVAE
    from videogen.training.losses import latent_color_anchor

    start = CausalVideoVAE(**TINY_CONFIG["model"]["vae"])
    start.save_pretrained(tmp_path / "start")
    config = write_config(tmp_path, task="vae", data={"root": str(data)}, model={"vae": str(tmp_path / "start")},
                          train={"max_steps": 8, "learning_rate": 2e-3, "ema_decay": None, "vae_posterior": "mode",
                                 "latent_color_weight": 3.0})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    video = torch.stack([VideoFolderDataset(data, num_frames=5, size=(32, 32))[i]["video"] for i in range(4)])

    def anchor_error(vae):
        with torch.no_grad():
            return latent_color_anchor(vae.encode(video).latent_dist.mode(), video).item()

    trained = CausalVideoVAE.from_pretrained(tmp_path / "run" / "final" / "vae")
    assert anchor_error(trained) < 0.7 * anchor_error(start)


def test_two_processes_match_one(tmp_path, data):
    config = write_config(tmp_path, data={"root": str(data)}, train={"max_steps": 4, "ema_decay": None})
    one = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "videogen.cli", "train",
         "--config", str(config), f"output_dir={tmp_path / 'two'}"],
        capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    loss = lambda d: [json.loads(line)["loss"] for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]  # noqa: E731
    l1, l2 = loss("one"), loss("two")
    assert len(l1) == len(l2) == 4
    assert np.allclose(l1, l2, rtol=1e-4, atol=1e-6), (l1, l2)
    a, b = final_tensors(tmp_path / "one"), final_tensors(tmp_path / "two")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_training_from_the_cache_equals_training_from_videos(tmp_path):
    """`videogen cache` output trains exactly like the videos it was built from (same latents, same text states)."""
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline

    clips = make_clips(tmp_path / "clips", count=1)
    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    cached = run_cli("cache", "--data", str(clips), "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "cache"),
                     "--num-frames", "5", "--height", "32", "--width", "32", "--max-sequence-length", "16")
    assert cached.returncode == 0, cached.stderr
    common = ["model.pretrained=" + str(tmp_path / "pipe"), "model.vae=null", "data.batch_size=1", "train.max_steps=3",
              "train.caption_dropout=0.5", "train.ema_decay=null"]
    config = write_config(tmp_path, data={"root": str(clips)})
    from_videos = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'videos'}", *common)
    from_cache = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'cached'}",
                         f"data.cache={tmp_path / 'cache'}", *common)
    assert from_videos.returncode == 0 and from_cache.returncode == 0, from_cache.stderr[-2000:]
    loss = lambda d: [json.loads(line)["loss"] for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert np.allclose(loss("videos"), loss("cached"), rtol=1e-5), (loss("videos"), loss("cached"))


def test_validation_videos_and_tensorboard(tmp_path, data):
    from videogen.io import load_video

    config = write_config(tmp_path, data={"root": str(data)},
                          train={"max_steps": 2},
                          validation={"every": 2, "prompts": ["a red square moving right"], "seeds": [0, 1],
                                      "num_inference_steps": 2},
                          log={"every": 1, "tensorboard": True})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    videos = sorted((tmp_path / "run" / "validation" / "step-00000002").glob("*.mp4"))
    assert [v.name for v in videos] == ["prompt00-seed0.mp4", "prompt00-seed1.mp4"]
    assert load_video(videos[0]).shape == (5, 32, 32, 3)
    assert list((tmp_path / "run").rglob("events.out.tfevents.*")), "tensorboard wrote no event file"
    assert (tmp_path / "run" / "final" / "model_index.json").exists()
    # what it was trained at, for generate / eval / export (the text length matters: see videogen/cli.py)
    trained = json.loads((tmp_path / "run" / "final" / "generation_config.json").read_text())
    cfg = yaml.safe_load(config.read_text())
    from videogen.training.config import DEFAULTS

    text_length = cfg.get("data", {}).get("max_sequence_length", DEFAULTS["data"]["max_sequence_length"])
    assert trained == {"height": 32, "width": 32, "num_frames": 5, "max_sequence_length": text_length}


def test_training_options_and_text_encoder_training(tmp_path, data):
    """Gradient accumulation, checkpointing, a warmup+cosine schedule, bf16 autocast and a trained text encoder
    in one run: the schedule is followed, only the last checkpoints are kept, and the saved pipeline (with its
    trained tokenizer and T5 encoder in the transformers format) reloads and differs from the initial encoder."""
    from transformers import AutoTokenizer, T5EncoderModel

    config = write_config(tmp_path, data={"root": str(data)},
                          train={"max_steps": 4, "gradient_accumulation_steps": 2, "gradient_checkpointing": True,
                                 "lr_scheduler": "cosine", "lr_warmup_steps": 2, "mixed_precision": "bf16",
                                 "train_text_encoder": True, "learning_rate": 1e-2},
                          checkpoint={"every": 1, "keep_last": 2})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    lrs = [r["lr"] for r in log]
    assert lrs[0] == pytest.approx(0.005) and lrs[1] == pytest.approx(0.01) and lrs[2] < lrs[1] and lrs[3] == pytest.approx(0)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-00000003", "step-00000004"]
    final = tmp_path / "run" / "final"
    tokenizer = AutoTokenizer.from_pretrained(final / "tokenizer")
    assert tokenizer("a red square moving right").input_ids[-1] == tokenizer.eos_token_id
    encoder = T5EncoderModel.from_pretrained(final / "text_encoder")
    assert encoder.config.d_model == 16
    # The same run with a frozen encoder saves the initial encoder: training must have moved it.
    frozen = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'frozen'}", "train.max_steps=1",
                     "train.train_text_encoder=false", "checkpoint.every=0")
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    initial = T5EncoderModel.from_pretrained(tmp_path / "frozen" / "final" / "text_encoder")
    assert (encoder.shared.weight - initial.shared.weight).abs().max() > 1e-4


def test_ema_averages_and_saves_the_trained_text_encoder_too(tmp_path, data):
    """With ``train_text_encoder`` the EMA covers the text encoder as well as the DiT: both are stepped, and the
    saved pipeline holds the EMA weights of both (a DiT averaged over the last steps beside a text encoder that is
    not would pair weights that never trained together)."""
    from transformers import T5EncoderModel

    from videogen.training.config import load_config
    from videogen.training.trainer import Trainer

    config = write_config(tmp_path, data={"root": str(data)},
                          train={"max_steps": 3, "train_text_encoder": True, "learning_rate": 1e-2, "ema_decay": 0.5},
                          checkpoint={"every": 0})
    trainer = Trainer(load_config(config, [f"output_dir={tmp_path / 'run'}"]))
    initial = [p.detach().clone() for p in trainer.text_encoder.parameters()]
    trainer.train()
    n_dit = sum(1 for p in trainer.accelerator.unwrap_model(trainer.model).parameters() if p.requires_grad)
    shadow = trainer.ema.shadow_params[n_dit:]
    assert len(shadow) == len(initial)
    assert max((s - p).abs().max().item() for s, p in zip(shadow, initial)) > 1e-4  # the encoder's EMA moved
    saved = T5EncoderModel.from_pretrained(tmp_path / "run" / "final" / "text_encoder")
    for s, p in zip(shadow, saved.parameters()):
        torch.testing.assert_close(p, s.to(p.dtype), rtol=0, atol=0)


def test_widen_input_channels_keeps_the_model():
    """A T2V DiT widened to I2V channels computes the same thing whatever the new channels hold."""
    from videogen.models import VideoDiT
    from videogen.training.components import widen_input_channels

    torch.manual_seed(0)
    dit = VideoDiT(in_channels=4, out_channels=4, text_dim=16, num_heads=2, dim=24, ffn_dim=32, num_layers=2,
                   freq_dim=32).eval()
    x, t, text = torch.randn(1, 4, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 3, 16)
    with torch.no_grad():
        before = dit(x, t, text).sample
        widen_input_channels(dit, 12)
        after = dit(torch.cat([x, torch.randn(1, 8, 2, 4, 4)], dim=1), t, text).sample
    assert dit.config.in_channels == 12 and dit.patch_embedding.in_channels == 12
    assert torch.equal(before, after)
    with pytest.raises(ValueError, match="only widen"):
        widen_input_channels(dit, 4)


def test_i2v_finetune_from_t2v_on_videos_and_cache(tmp_path):
    """`train.i2v` widens a T2V pipeline's DiT, trains on first-frame conditions (encoded from the videos, or read
    from a `videogen cache --image-latents` cache: the same losses) and saves an ImageToVideoPipeline that animates
    an image."""
    from _tiny import tiny_pipeline_parts
    from pipelines import ImageToVideoPipeline, TextToVideoPipeline

    clips = make_clips(tmp_path / "clips", count=2)
    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    cached = run_cli("cache", "--data", str(clips), "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "cache"),
                     "--num-frames", "5", "--height", "32", "--width", "32", "--max-sequence-length", "16",
                     "--image-latents")
    assert cached.returncode == 0, cached.stderr
    common = ["model.pretrained=" + str(tmp_path / "pipe"), "model.vae=null", "data.batch_size=2", "train.max_steps=3",
              "train.i2v=true", "train.ema_decay=null", "train.learning_rate=1e-2"]
    config = write_config(tmp_path, data={"root": str(clips)})
    runs = {}
    for name, extra in (("videos", []), ("cached", [f"data.cache={tmp_path / 'cache'}"])):
        proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / name}", *common, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = [json.loads(line)["loss"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert np.allclose(runs["videos"], runs["cached"], rtol=1e-5), runs
    index = json.loads((tmp_path / "cached" / "final" / "model_index.json").read_text())
    assert index["_class_name"] == "ImageToVideoPipeline"
    pipe = ImageToVideoPipeline.from_pretrained(tmp_path / "cached" / "final")
    assert pipe.transformer.config.in_channels == 2 * 4 + 4
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[8:16, 8:16] = (230, 30, 30)
    out = pipe(image=image, prompt="a red square moving right", height=32, width=32, num_frames=5,
               num_inference_steps=2, max_sequence_length=16, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 5, 32, 32, 3)
    # Without --image-latents the cache cannot feed I2V training: a clear error.
    proc = run_cli("cache", "--data", str(clips), "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "plain"),
                   "--num-frames", "5", "--height", "32", "--width", "32", "--max-sequence-length", "16")
    assert proc.returncode == 0
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'bad'}", *common,
                   f"data.cache={tmp_path / 'plain'}")
    assert proc.returncode != 0 and "--image-latents" in proc.stderr


def test_vae_loss_terms():
    """L1 + mse_weight x MSE + kl_weight x KL, each term as documented."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from videogen.training.losses import vae_loss

    video = torch.zeros(1, 3, 1, 2, 2)
    recon = torch.zeros_like(video)
    recon[..., 0, 0] = 1.0  # 3 of 12 elements off by 1
    posterior = DiagonalGaussianDistribution(torch.zeros(1, 8, 1, 2, 2))  # N(0, I): KL 0
    l1, parts = vae_loss(recon, video, posterior, kl_weight=1.0)
    assert l1.item() == pytest.approx(0.25) and parts["kl"].item() == pytest.approx(0.0)
    both, _ = vae_loss(recon * 2, video, posterior, kl_weight=1.0, mse_weight=0.5)
    assert both.item() == pytest.approx(0.5 + 0.5 * 1.0)  # L1 0.5, MSE 3 * 4 / 12 = 1


def test_foreground_weights_mark_objects():
    """Pixels unlike their frame's median background get 1 + weight; the loss weighs them that much more."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from videogen.training.losses import foreground_weights, vae_loss

    video = -torch.ones(1, 3, 2, 8, 8)
    video[:, 0, :, 2:4, 2:4] = 1.0  # a red 2x2 object on black
    w = foreground_weights(video, 20.0)
    assert w.shape == (1, 1, 2, 8, 8)
    assert (w[0, 0, :, 2:4, 2:4] == 21).all() and w.sum() == 2 * (60 + 4 * 21)
    posterior = DiagonalGaussianDistribution(torch.zeros(1, 8, 1, 2, 2))
    recon = video.clone()
    recon[:, 0, :, 2:4, 2:4] = -1.0  # the object missing: error 2 on 8 of 384 elements
    plain, _ = vae_loss(recon, video, posterior, kl_weight=0.0)
    weighted, _ = vae_loss(recon, video, posterior, kl_weight=0.0, foreground_weight=20.0)
    assert plain.item() == pytest.approx(16 / 384) and weighted.item() == pytest.approx(21 * 16 / 384)


def test_clean_first_frame_replaces_frame_zero_and_drops_it_from_the_loss():
    """Chosen samples get their clean latent frame 0 in the input and weight 0 on that frame; the rest are untouched,
    and the weighted loss is the mean over the kept frames only."""
    from videogen.training.losses import clean_first_frame, flow_matching_loss

    latents, x_t = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    out, weights = clean_first_frame(x_t, latents, torch.tensor([True, False]))
    assert torch.equal(out[0, :, 0], latents[0, :, 0]) and torch.equal(out[0, :, 1:], x_t[0, :, 1:])
    assert torch.equal(out[1], x_t[1])
    assert weights.shape == (2, 1, 4, 1, 1) and weights.sum() == 7 and weights[0, 0, 0] == 0
    prediction, target = torch.zeros(2, 3, 4, 2, 2), torch.zeros(2, 3, 4, 2, 2)
    prediction[0, :, 0] = 10.0  # a large error on the dropped frame costs nothing
    prediction[1, :, 2] = 1.0  # an error of 1 on one of the 7 kept frames
    assert flow_matching_loss(prediction, target, weights).item() == pytest.approx(1 / 7)
    assert flow_matching_loss(prediction, target).item() == pytest.approx((100 + 1) / 8)


def test_clean_first_frame_prob_changes_training(tmp_path, data):
    """train.clean_first_frame_prob is wired into the DiT loss: the same run with it ends with different weights."""
    config = write_config(tmp_path, data={"root": str(data)}, train={"max_steps": 1})
    for name, prob in (("plain", 0.0), ("clean", 1.0)):
        result = run_cli("train", "--config", str(config), f"output_dir={tmp_path / name}",
                         f"train.clean_first_frame_prob={prob}")
        assert result.returncode == 0, result.stderr[-2000:]
    plain, clean = final_tensors(tmp_path / "plain"), final_tensors(tmp_path / "clean")
    assert plain.keys() == clean.keys()
    assert any(not torch.equal(plain[k], clean[k]) for k in plain)


def test_joint_text_and_image_to_video_training(tmp_path):
    """`train.image_dropout` (with i2v): that share of samples trains with the all-zero condition, so the saved
    ImageToVideoPipeline (image_optional) also generates from text alone; the dropout changes the losses; the cache
    trains the text encoder too when asked (its captions encoded every step)."""
    from _tiny import tiny_pipeline_parts
    from pipelines import ImageToVideoPipeline, TextToVideoPipeline

    clips = make_clips(tmp_path / "clips", count=2)
    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    cached = run_cli("cache", "--data", str(clips), "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "cache"),
                     "--num-frames", "5", "--height", "32", "--width", "32", "--max-sequence-length", "16",
                     "--image-latents")
    assert cached.returncode == 0, cached.stderr
    common = ["model.pretrained=" + str(tmp_path / "pipe"), "model.vae=null", "data.batch_size=2", "train.max_steps=3",
              "train.i2v=true", "train.ema_decay=null", "train.learning_rate=1e-2", f"data.cache={tmp_path / 'cache'}"]
    config = write_config(tmp_path, data={"root": str(clips)})
    losses = {}
    for name, extra in (("plain", []), ("joint", ["train.image_dropout=0.5", "train.train_text_encoder=true"]),
                        ("text", ["train.image_dropout=1.0"])):
        proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / name}", *common, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        losses[name] = [json.loads(line)["loss"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert not np.allclose(losses["plain"], losses["joint"]), losses
    # 1.0: every sample text-only, so the widened (zero-initialised) image channels never see a non-zero input
    z = parts["vae"].config.z_dim
    for name, untouched in (("text", True), ("joint", False)):
        w = load_file(str(tmp_path / name / "final" / "transformer" / "diffusion_pytorch_model.safetensors"))
        assert torch.equal(w["patch_embedding.weight"][:, z:], torch.zeros_like(w["patch_embedding.weight"][:, z:])) \
            == untouched, name
    plain = ImageToVideoPipeline.from_pretrained(tmp_path / "plain" / "final")
    joint = ImageToVideoPipeline.from_pretrained(tmp_path / "joint" / "final")
    assert plain.config.image_optional is False and joint.config.image_optional is True
    before = load_file(str(tmp_path / "pipe" / "text_encoder" / "model.safetensors"))
    after = load_file(str(tmp_path / "joint" / "final" / "text_encoder" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the text encoder trained (from the cache)
    args = dict(prompt="a red square moving right", height=32, width=32, num_frames=5, num_inference_steps=2,
                max_sequence_length=16, generator=torch.Generator().manual_seed(0))
    assert joint(**args).frames.shape == (1, 5, 32, 32, 3)  # text alone
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[8:16, 8:16] = (230, 30, 30)
    assert joint(image=image, **args).frames.shape == (1, 5, 32, 32, 3)
    with pytest.raises(ValueError, match="not trained to generate from text alone"):
        plain(**args)
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'bad'}", *common[:-1],
                   "train.i2v=false", "train.image_dropout=0.5")
    assert proc.returncode != 0 and "image_dropout" in proc.stderr


def test_fp16_checkpoint_trains_in_float32(tmp_path, data):
    """A pipeline saved in fp16 (as the committed warm starts are) trains: the trained transformer and text encoder
    are cast to float32 (AdamW on fp16 weights turned the loss NaN after one update), the frozen VAE is not."""
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline

    _, parts = tiny_pipeline_parts(tmp_path)
    for name in ("transformer", "text_encoder"):
        parts[name] = parts[name].to(torch.float16)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    config = write_config(tmp_path, data={"root": str(data)}, train={"max_steps": 3, "train_text_encoder": True})
    proc = run_cli("train", "--config", str(config), f"output_dir={tmp_path / 'run'}", "checkpoint.every=0",
                   "model.pretrained=" + str(tmp_path / "pipe"), "model.vae=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(np.isfinite(losses)), losses
    weights = final_tensors(tmp_path / "run")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())
