"""videogen.data: video-folder dataset, buckets and the latent cache, on real files written in tmp_path."""

import argparse
import csv
import json
import os
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader

from videogen.conditioning.text import encode_prompts
from videogen.data import (
    BucketBatchSampler,
    CachedDataset,
    SkippedVideoWarning,
    VideoFolderDataset,
    build_cache,
    collate_videos,
    content_key,
)
from videogen.data.cache import add_cli, load_cache_models, model_identity
from videogen.data.video_dataset import resize_and_crop
from videogen.io import save_video

H, W = 32, 48


def clip(frames=21, height=H, width=W, seed=0):
    """Random uint8 frames [F, H, W, 3] (for lossless PNG-folder checks)."""
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def flat_clip(frames=21, height=H, width=W):
    """Frame k is a uniform grey of value 10 + 10k (survives H.264 nearly exactly)."""
    values = 10 + 10 * np.arange(frames, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy()


def smooth_clip(frames=21, height=H, width=W, seed=0):
    """A smooth moving gradient (compresses well, still content-rich)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 6.28, 3)
    out = [np.stack([127 + 100 * np.sin(x / 7 + y / 11 + k / 3 + p) for p in phase], -1) for k in range(frames)]
    return np.clip(out, 0, 255).astype(np.uint8)


def to_unit(frames):
    """uint8 [F, H, W, 3] as the dataset's [3, F, H, W] in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1


def load_all(ds, batch_size=1):
    """Every sample a DataLoader yields over ``ds`` (one epoch)."""
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate_videos)
    return [(p, i) for batch in loader for p, i in zip(batch["path"], batch["index"].tolist())]


# ----------------------------------------------------------------------------------------------
# Sources and samples
# ----------------------------------------------------------------------------------------------


def test_folder_with_txt_captions_mp4_gif_png(tmp_path):
    save_video(smooth_clip(), tmp_path / "a.mp4", fps=8)
    (tmp_path / "a.txt").write_text("a red circle\n")
    save_video(smooth_clip(seed=1), tmp_path / "sub" / "b.gif", fps=8)
    (tmp_path / "sub" / "b.txt").write_text("a blue square")
    frames = clip(9)
    save_video(frames, tmp_path / "c", fps=8)  # PNG folder, no caption
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W))
    assert [os.path.relpath(e.video, tmp_path) for e in ds.entries] == ["a.mp4", "c", os.path.join("sub", "b.gif")]
    samples = [ds[i] for i in range(len(ds))]
    assert [s["caption"] for s in samples] == ["a red circle", "", "a blue square"]
    for i, s in enumerate(samples):
        assert s["video"].dtype == torch.float32 and s["video"].shape == (3, 9, H, W)
        assert -1 <= s["video"].min() and s["video"].max() <= 1 and s["video"].std() > 0.1
        assert s["metadata"] is None and s["index"] == i
    torch.testing.assert_close(samples[1]["video"], to_unit(frames))  # PNG: lossless, same size: exact
    smooth = to_unit(smooth_clip()[:10])  # H.264 of the same frames: close to frames 0..8, far from 1..9
    assert (samples[0]["video"] - smooth[:, :9]).abs().mean() < 0.06 < (samples[0]["video"] - smooth[:, 1:]).abs().mean()
    assert ds.summary()["missing_captions"] == 1 and ds.summary()["skipped"] == 0


def write_metadata_clip(root, name, frames=21):
    """An MP4 plus metadata with per-frame arrays (trajectory, bbox, intrinsics, c2w) in shapes-world layout."""
    save_video(smooth_clip(frames), root / "clips" / f"{name}.mp4", fps=8)
    meta = dict(
        num_frames=frames, height=H, width=W, note="kept",
        camera=dict(intrinsics=[[W, W, W / 2, H / 2]] * frames,
                    c2w=[np.diag([1.0, 1.0, 1.0, 1.0]).tolist() for _ in range(frames)]),
        objects=[dict(trajectory=[[10.0 + k, 5.0 + 0.5 * k] for k in range(frames)],
                      bbox=[[k, 1.0, k + 4.0, 6.0] for k in range(frames)])],
    )
    for k in range(frames):
        meta["camera"]["c2w"][k][0][3] = float(k)  # camera x = frame number
    (root / "clips" / f"{name}.json").write_text(json.dumps(meta))
    return meta


def check_adapted(meta, src, frame_indices, sy, sx, top, left):
    """Metadata sliced to ``frame_indices`` with pixel quantities moved through the resize+crop."""
    assert meta["note"] == "kept" and meta["num_frames"] == src["num_frames"]
    assert meta["sampling"]["frame_indices"] == frame_indices
    assert [m[0][3] for m in meta["camera"]["c2w"]] == [float(k) for k in frame_indices]
    for got, k in zip(meta["objects"][0]["trajectory"], frame_indices):
        x, y = src["objects"][0]["trajectory"][k]
        assert got == pytest.approx([x * sx - left, y * sy - top])
    for got, k in zip(meta["objects"][0]["bbox"], frame_indices):
        x0, y0, x1, y1 = src["objects"][0]["bbox"][k]
        assert got == pytest.approx([x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top])
    assert len(meta["camera"]["intrinsics"]) == len(frame_indices)
    assert meta["camera"]["intrinsics"][0] == pytest.approx([W * sx, W * sy, W / 2 * sx - left, H / 2 * sy - top])


def test_jsonl_manifest_metadata_sliced_and_adjusted(tmp_path):
    src = write_metadata_clip(tmp_path, "00000")
    line = dict(video="clips/00000.mp4", caption="a clip", metadata="clips/00000.json", source="web")
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(16, 16), fps=4)  # 8 fps -> 4 fps: every 2nd frame
    sample = ds[0]
    assert sample["caption"] == "a clip" and sample["video"].shape == (3, 9, 16, 16)
    meta = sample["metadata"]
    assert meta["source"] == "web"  # extra manifest fields are passed through
    # 32x48 -> shorter side 16: resized 16x24, centre crop starts at column 4
    assert meta["sampling"]["resized_size"] == [16, 24] and meta["sampling"]["crop_top_left"] == [0, 4]
    check_adapted(meta, src, list(range(0, 18, 2)), 0.5, 0.5, 0, 4)


def test_csv_manifest_and_synthetic_layout(tmp_path):
    src = write_metadata_clip(tmp_path, "00000")
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["video", "caption", "metadata", "split"])
        writer.writeheader()
        writer.writerow(dict(video="clips/00000.mp4", caption="from csv", metadata="clips/00000.json", split="train"))
    ds = VideoFolderDataset(tmp_path, num_frames=5, size=(H, W), manifest="list.csv")
    sample = ds[0]
    assert sample["caption"] == "from csv" and sample["metadata"]["split"] == "train"
    check_adapted(sample["metadata"], src, [0, 1, 2, 3, 4], 1.0, 1.0, 0, 0)


def test_synthetic_world_folder_loads(tmp_path):
    synthetic = pytest.importorskip("videogen.data.synthetic")
    synthetic.write_dataset(tmp_path, 2, seed=0, frames=17, height=32, width=32, progress=False)
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(32, 32))
    assert len(ds) == 2
    for i in range(2):
        s = ds[i]
        source = json.loads((tmp_path / "clips" / f"{i:05d}.json").read_text())
        assert s["caption"] == source["caption"] and s["video"].shape == (3, 9, 32, 32)
        assert s["metadata"]["objects"][0]["trajectory"] == source["objects"][0]["trajectory"][:9]
        assert len(s["metadata"]["camera"]["c2w"]) == 9


def test_fps_resampling_and_stride(tmp_path):
    save_video(flat_clip(21), tmp_path / "v.mp4", fps=16)
    source_values = 10 + 10 * np.arange(21)
    for kwargs in (dict(fps=8), dict(frame_stride=2), dict(fps=16, frame_stride=2)):
        ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W), **kwargs)
        grey = (ds[0]["video"].mean(dim=(0, 2, 3)) + 1) * 127.5
        assert grey.numpy() == pytest.approx(source_values[0:18:2], abs=2), kwargs
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W))  # the file's own 16 fps
    assert ((ds[0]["video"].mean(dim=(0, 2, 3)) + 1) * 127.5).numpy() == pytest.approx(source_values[:9], abs=2)
    with pytest.warns(SkippedVideoWarning, match="too short video .*v.mp4: 11 frames at 8 fps but a sample needs 13"):
        assert VideoFolderDataset(tmp_path, num_frames=13, size=(H, W), fps=8).scan()["too_short"] == 1


def test_center_and_random_crop(tmp_path):
    frames = clip(21)
    save_video(frames, tmp_path / "v", fps=8)
    (tmp_path / "v.json").write_text(json.dumps(dict(timestamps=list(range(21)))))
    center = VideoFolderDataset(tmp_path, num_frames=9, size=(H, H))[0]
    torch.testing.assert_close(center["video"], to_unit(frames[:9, :, 8:8 + H]))
    assert center["metadata"]["timestamps"] == list(range(9))

    def random_view(seed, epoch):
        ds = VideoFolderDataset(tmp_path, num_frames=9, size=(24, 24), crop="random", seed=seed)
        ds.set_epoch(epoch)
        s = ds[0]
        idx, (top, left) = s["metadata"]["sampling"]["frame_indices"], s["metadata"]["sampling"]["crop_top_left"]
        assert idx == list(range(idx[0], idx[0] + 9)) and s["metadata"]["timestamps"] == idx
        # 32x48 -> 24x36 (bilinear); the crop must be that resize at the reported offset
        expected = resize_and_crop(frames[idx], (24, 36), top, left, (24, 24))
        torch.testing.assert_close(s["video"], to_unit(expected))
        return idx[0], top, left

    views = [random_view(0, epoch) for epoch in range(6)]
    assert views == [random_view(0, epoch) for epoch in range(6)]  # reproducible per (seed, epoch)
    assert len(set(views)) > 1  # changes with the epoch
    assert [random_view(1, epoch) for epoch in range(6)] != views  # and with the seed


def test_num_frames_rule():
    with pytest.raises(ValueError, match=r"num_frames must be 1 \+ 4k.*got 10.*9, 13"):
        VideoFolderDataset(".", num_frames=10)
    with pytest.raises(ValueError, match=r"1 \+ 4k"):
        VideoFolderDataset(".", num_frames=[9, 12])
    with pytest.raises(ValueError, match="crop"):
        VideoFolderDataset(".", crop="left")


# ----------------------------------------------------------------------------------------------
# Bad files
# ----------------------------------------------------------------------------------------------


def write_bad_folder(root):
    """Two good clips, a truncated MP4 (half its bytes) and random bytes named .mp4; returns the bad paths."""
    save_video(smooth_clip(), root / "good1.mp4", fps=8)
    save_video(smooth_clip(seed=2), root / "good2.gif", fps=8)
    save_video(smooth_clip(seed=3), root / "truncated.mp4", fps=8)
    data = (root / "truncated.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    for name in ("good1", "good2", "truncated", "noise"):
        (root / f"{name}.txt").write_text(f"caption {name}")
    return [str(root / "truncated.mp4"), str(root / "noise.mp4")]


def test_bad_files_skipped_counted_and_warned_once(tmp_path):
    bad = write_bad_folder(tmp_path)
    good = {str(tmp_path / "good1.mp4"), str(tmp_path / "good2.gif")}
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            seen += load_all(ds, batch_size=2)
    assert len(seen) == 8 and {p for p, _ in seen} == good  # bad indices are replaced by the next good sample
    summary = ds.summary()
    assert summary["skipped"] == 2 and summary["unreadable"] == 2 and summary["usable"] == 2
    assert sorted(summary["skipped_files"]) == sorted(bad)
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedVideoWarning)]
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    for path in bad:
        assert sum(path in m for m in messages) == 1
    assert not any(g in m for g in good for m in messages)

    # after scan(), a bucket sampler leaves the bad files out: every good sample exactly once
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W), warn=False)
    assert ds.scan()["skipped"] == 2 and ds.captions() == ["caption good1", "caption good2"]
    loader = DataLoader(ds, batch_sampler=BucketBatchSampler(ds, 1, seed=0), collate_fn=collate_videos)
    assert sorted(p for batch in loader for p in batch["path"]) == sorted(good)


def test_missing_metadata_file_and_short_clip_are_skipped(tmp_path):
    save_video(smooth_clip(), tmp_path / "ok.mp4", fps=8)
    save_video(smooth_clip(5), tmp_path / "short.mp4", fps=8)
    lines = [dict(video="ok.mp4", caption="ok"), dict(video="short.mp4", caption="short"),
             dict(video="ok.mp4", caption="m", metadata="nothing.json"), dict(video="gone.mp4", caption="gone")]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W))
    with pytest.warns(SkippedVideoWarning) as caught:
        summary = ds.scan()
    assert summary["skipped"] == 3 and summary["too_short"] == 1 and summary["unreadable"] == 2
    assert len(caught) == 3 and "nothing.json" in str(caught[1].message) and "gone.mp4" in str(caught[2].message)
    assert [ds[i]["caption"] for i in range(4)] == ["ok"] * 4


# ----------------------------------------------------------------------------------------------
# Buckets
# ----------------------------------------------------------------------------------------------


def test_buckets_by_aspect_and_frame_count(tmp_path):
    for i in range(3):
        save_video(clip(9, 32, 32, seed=i), tmp_path / f"square{i}", fps=8)
        save_video(clip(9, 24, 64, seed=10 + i), tmp_path / f"wide{i}", fps=8)
    save_video(clip(7, 32, 32, seed=20), tmp_path / "square_short", fps=8)
    ds = VideoFolderDataset(tmp_path, num_frames=[5, 9], size=[(32, 32), (16, 48)])
    keys = {os.path.basename(e.video): ds.bucket_key(i) for i, e in enumerate(ds.entries)}
    assert keys["square0"] == (9, 32, 32) and keys["wide0"] == (9, 16, 48) and keys["square_short"] == (5, 32, 32)
    sampler = BucketBatchSampler(ds, batch_size=2, seed=3, drop_last=True)
    assert len(sampler) == 2  # 3 square, 3 wide, 1 short: one full pair from each of the two big buckets
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_videos)
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == 2
        for batch in batches:
            assert batch["video"].shape[0] == 2 and len({ds.bucket_key(i) for i in batch["index"].tolist()}) == 1
            assert tuple(batch["video"].shape[2:]) == ds.bucket_key(batch["index"][0].item())
        orders.append([b["index"].tolist() for b in batches])
    again = BucketBatchSampler(ds, batch_size=2, seed=3, drop_last=True)
    again.set_epoch(2)
    assert list(again) == orders[2]  # deterministic per (seed, epoch)
    assert len({json.dumps(o) for o in orders}) > 1  # and reshuffled between epochs
    full = BucketBatchSampler(ds, batch_size=2, seed=3)
    assert len(full) == len(list(full)) == 5 and sorted(i for b in full for i in b) == list(range(7))


def test_bucket_sampler_from_keys():
    keys = ["a", "b", None, "a", "a", "b"]
    sampler = BucketBatchSampler(keys, batch_size=2, shuffle=False)
    assert list(sampler) == [[0, 3], [4], [1, 5]] and len(sampler) == 3
    with pytest.raises(ValueError, match="no batch of 4"):
        BucketBatchSampler(keys, batch_size=4, drop_last=True)


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A saved tiny pipeline directory and its (vae, tokenizer, text_encoder), loaded as the CLI loads them."""
    import pipelines
    from _tiny import tiny_pipeline_parts

    root = tmp_path_factory.mktemp("tiny")
    _, ours = tiny_pipeline_parts(root / "parts")
    pipelines.TextToVideoPipeline(**ours).save_pretrained(root / "pipe")
    return root / "pipe", load_cache_models(root / "pipe")


def test_cache_latents_resume_and_keys(tmp_path, tiny_models):
    _, (vae, tokenizer, text_encoder) = tiny_models
    data = tmp_path / "data"
    write_bad_folder(data)
    ds = VideoFolderDataset(data, num_frames=9, size=(H, W), warn=False)
    out = tmp_path / "cache"
    first = build_cache(ds, out, vae, tokenizer, text_encoder, max_sequence_length=16, progress=False)
    assert (first["written"], first["reused"], first["skipped"]) == (2, 0, 2)
    cached = CachedDataset(out)
    assert len(cached) == 2 and [c["caption"] for c in (cached[0], cached[1])] == ["caption good1", "caption good2"]
    with torch.no_grad():
        for i, entry in zip((0, 1), cached.entries):
            sample = ds[i]
            assert entry["path"] == sample["path"]
            latents = vae.normalize_latents(vae.encode(sample["video"][None]).latent_dist.mode())[0]
            embeds = encode_prompts(tokenizer, text_encoder, [sample["caption"]], 16)[0]
            torch.testing.assert_close(cached[i]["latents"], latents)
            torch.testing.assert_close(cached[i]["prompt_embeds"], embeds)
    assert cached[0]["latents"].shape == (4, 3, 4, 6) and cached[0]["prompt_embeds"].shape == (16, 16)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]

    again = build_cache(VideoFolderDataset(data, num_frames=9, size=(H, W), warn=False), out, vae, tokenizer,
                        text_encoder, max_sequence_length=16, progress=False)
    assert (again["written"], again["reused"]) == (0, 2)  # resumable: nothing recomputed
    files = sorted(p for p in os.listdir(out) if p.endswith(".safetensors"))
    assert len(files) == 2

    params = dict(model="m")
    key_before = content_key(data / "good1.mp4", params)
    assert content_key(data / "good1.mp4", params) == key_before != content_key(data / "good1.mp4", dict(model="n"))
    save_video(smooth_clip(seed=7), data / "good1.mp4", fps=8)  # edit one clip
    assert content_key(data / "good1.mp4", params) != key_before
    third = build_cache(VideoFolderDataset(data, num_frames=9, size=(H, W), warn=False), out, vae, tokenizer,
                        text_encoder, max_sequence_length=16, progress=False)
    assert (third["written"], third["reused"]) == (1, 1)
    assert len(CachedDataset(out)) == 2  # the index lists the current dataset only
    assert len([p for p in os.listdir(out) if p.endswith(".safetensors")]) == 3  # the stale file stays on disk

    # batched encoding gives the same latents
    batched = build_cache(VideoFolderDataset(data, num_frames=9, size=(H, W), warn=False), tmp_path / "cache2", vae,
                          tokenizer, text_encoder, batch_size=2, max_sequence_length=16, progress=False)
    assert batched["written"] == 2
    for a, b in zip(CachedDataset(out), CachedDataset(tmp_path / "cache2")):
        assert a["key"] == b["key"]
        torch.testing.assert_close(a["latents"], b["latents"], atol=1e-5, rtol=1e-5)


def test_cache_cli(tmp_path, tiny_models, capsys):
    pipe_dir, (vae, tokenizer, text_encoder) = tiny_models
    data = tmp_path / "data"
    write_metadata_clip(data, "00000")
    (data / "manifest.jsonl").write_text(json.dumps(dict(video="clips/00000.mp4", caption="a red circle",
                                                         metadata="clips/00000.json")) + "\n")
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    argv = ["cache", "--data", str(data), "--model", str(pipe_dir), "--num-frames", "5", "--height", "16",
            "--width", "32", "--max-sequence-length", "8"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "1 written" in capsys.readouterr().out
    cached = CachedDataset(data / "cache")
    assert len(cached) == 1
    sample = cached[0]
    assert sample["latents"].shape == (4, 2, 2, 4) and sample["prompt_embeds"].shape == (8, 16)
    assert sample["caption"] == "a red circle" and len(sample["metadata"]["objects"][0]["trajectory"]) == 5
    # the CLI keys match the API's for the same models and settings
    ds = VideoFolderDataset(data, num_frames=5, size=(16, 32))
    api = build_cache(ds, data / "cache", vae, tokenizer, text_encoder, max_sequence_length=8, progress=False)
    assert (api["written"], api["reused"]) == (0, 1)
    with safe_open(data / "cache" / cached.entries[0]["file"], "pt") as f:
        assert json.loads(f.metadata()["params"])["model"] == model_identity(vae, tokenizer, text_encoder)
    args = parser.parse_args(argv)
    assert args.func(args) == 0 and "0 written, 1 reused" in capsys.readouterr().out


def test_scan_record_replays_unchanged_files_and_rescans_changed_ones(tmp_path, monkeypatch):
    """A second scan of an unchanged folder decodes nothing and reports the same skips (warnings included); a file
    changed since, or other dataset settings, are scanned again."""
    bad = write_bad_folder(tmp_path)
    first = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W), warn=False).scan()
    assert (tmp_path / ".videogen-scan.json").is_file() and first["skipped"] == 2

    loaded = []
    original = VideoFolderDataset.load_sample

    def counting(self, index, epoch=None):
        loaded.append(str(self.entries[index].video))
        return original(self, index, epoch=epoch)

    monkeypatch.setattr(VideoFolderDataset, "load_sample", counting)
    ds = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W))
    with pytest.warns(SkippedVideoWarning) as caught:
        again = ds.scan()
    assert loaded == [] and again == first
    assert sorted(str(w.message).split()[3].rstrip(":") for w in caught) == sorted(bad)

    save_video(smooth_clip(seed=5), tmp_path / "truncated.mp4", fps=8)  # repaired: this file alone is decoded again
    fixed = VideoFolderDataset(tmp_path, num_frames=9, size=(H, W), warn=False).scan()
    assert loaded == [str(tmp_path / "truncated.mp4")] and fixed["skipped"] == 1
    loaded.clear()
    VideoFolderDataset(tmp_path, num_frames=13, size=(H, W), warn=False).scan()  # new settings: everything
    assert len(loaded) == 4
    loaded.clear()
    VideoFolderDataset(tmp_path, num_frames=13, size=(H, W), warn=False).scan(record=False)
    assert len(loaded) == 4
