"""videogen.io: real MP4/GIF/PNG files written and read back in tmp_path; layouts, options and errors."""

import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from videogen.io import (
    as_uint8_frames,
    frames_to_numpy,
    load_video,
    numpy_to_pil,
    resample_indices,
    save_video,
    video_info,
)

F, H, W = 17, 48, 64
SIZE = 12  # the moving square's side


def square_x(i):
    """Left edge of the red square in frame i: it moves right 3 px per frame."""
    return 2 + 3 * i


def make_clip():
    """17 frames of 48x64: dark blue background, a red square moving right, a green one moving down."""
    frames = np.zeros((F, H, W, 3), np.uint8)
    frames[..., 2] = 60
    for i in range(F):
        frames[i, 6 : 6 + SIZE, square_x(i) : square_x(i) + SIZE] = (230, 30, 30)
        frames[i, 2 + 2 * i : 2 + 2 * i + 8, 50:58] = (30, 200, 30)
    return frames


@pytest.fixture(scope="module")
def clip():
    return make_clip()


def red_centre_x(frame):
    """Mean column of the clearly red pixels in rows 6..17 (where the red square lives)."""
    band = frame[6 : 6 + SIZE].astype(int)
    red = (band[..., 0] > 150) & (band[..., 1] < 100) & (band[..., 2] < 120)
    return np.nonzero(red)[1].mean()


def mean_abs_error(a, b):
    return np.abs(a.astype(float) - b.astype(float)).mean()


def listing(folder):
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------------------------- MP4


def test_mp4_round_trip_keeps_count_size_order_and_pixels(clip, tmp_path):
    path = save_video(clip, tmp_path / "clip.mp4", fps=16)
    assert path == str(tmp_path / "clip.mp4")
    assert video_info(path) == dict(num_frames=F, fps=16.0, height=H, width=W)
    video = load_video(path)
    assert video.shape == (F, H, W, 3) and video.dtype == np.uint8
    # Measured 1.28/255 at the default quality (CRF 16); per frame at most ~1.6/255.
    assert mean_abs_error(video, clip) < 3.0
    assert max(mean_abs_error(v, c) for v, c in zip(video, clip)) < 4.0
    for i, frame in enumerate(video):  # frames come back in order: the square is where frame i put it
        assert abs(red_centre_x(frame) - (square_x(i) + (SIZE - 1) / 2)) < 1.0, i


def test_mp4_quality_trades_size_for_error(clip, tmp_path):
    low = save_video(clip, tmp_path / "low.mp4", quality=2)
    high = save_video(clip, tmp_path / "high.mp4", quality=10)
    assert os.path.getsize(high) > os.path.getsize(low)
    assert mean_abs_error(load_video(high), clip) < mean_abs_error(load_video(low), clip)
    with pytest.raises(ValueError, match="quality must be a number from 0"):
        save_video(clip, tmp_path / "bad.mp4", quality=11)


def test_mp4_fractional_fps_is_reported(clip, tmp_path):
    assert video_info(save_video(clip[:5], tmp_path / "a.mp4", fps=12.5))["fps"] == 12.5


def test_mkv_and_webm_written_by_pyav_are_read(clip, tmp_path):
    for name, fmt, codec in (("v.mkv", "matroska", "libx264"), ("v.webm", "webm", "libvpx-vp9")):
        with av.open(str(tmp_path / name), "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=16)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            for frame in clip:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        # Matroska stores no frame count: video_info counts packets instead.
        assert video_info(tmp_path / name) == dict(num_frames=F, fps=16.0, height=H, width=W), name
        video = load_video(tmp_path / name)
        assert video.shape == (F, H, W, 3)
        assert mean_abs_error(video, clip) < 6.0, name


# ---------------------------------------------------------------------------------------------- GIF


def test_gif_round_trip_is_exact_for_few_colours_and_loops(clip, tmp_path):
    path = save_video(clip, tmp_path / "clip.gif", fps=10)
    assert video_info(path) == dict(num_frames=F, fps=10.0, height=H, width=W)
    np.testing.assert_array_equal(load_video(path), clip)
    with Image.open(path) as gif:
        assert gif.info["loop"] == 0  # loop forever
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations == [100] * F


def test_gif_fps_is_rounded_to_whole_centiseconds(clip, tmp_path):
    path = save_video(clip[:3], tmp_path / "clip.gif", fps=16)  # 6.25 cs -> 6 cs
    with Image.open(path) as gif:
        assert gif.info["duration"] == 60
    assert video_info(path)["fps"] == pytest.approx(1000 / 60)


def test_gif_keeps_repeated_frames(clip, tmp_path):
    still = np.repeat(clip[:1], 5, axis=0)  # Pillow's own writer would merge these into one frame
    path = save_video(still, tmp_path / "still.gif", fps=10)
    assert video_info(path)["num_frames"] == 5
    np.testing.assert_array_equal(load_video(path), still)


# ---------------------------------------------------------------------------------------------- PNG


@pytest.mark.parametrize("name, kwargs", [("frames", {}), ("frames/", {}), ("frames.v2", {"format": "png"})])
def test_png_folder_round_trip_is_exact(clip, tmp_path, name, kwargs):
    path = save_video(clip, os.path.join(tmp_path, name), **kwargs)
    assert listing(path) == [f"{i:05d}.png" for i in range(F)]
    assert video_info(path) == dict(num_frames=F, fps=None, height=H, width=W)
    np.testing.assert_array_equal(load_video(path), clip)


def test_png_folder_is_replaced_but_foreign_files_are_never_deleted(clip, tmp_path):
    folder = tmp_path / "frames"
    save_video(clip, folder)
    save_video(clip[:3], folder)  # a shorter video: the old frames 3.. must be gone
    assert listing(folder) == ["00000.png", "00001.png", "00002.png"]
    np.testing.assert_array_equal(load_video(folder), clip[:3])
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to replace.*notes.txt"):
        save_video(clip, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert listing(tmp_path) == ["frames"]


def test_image_folder_is_read_in_natural_order(clip, tmp_path):
    for i in (0, 1, 2, 10):  # 10 must come after 2
        Image.fromarray(clip[i]).save(tmp_path / f"{i}.jpg" if i == 10 else tmp_path / f"{i}.png", quality=100)
    video = load_video(tmp_path)
    np.testing.assert_array_equal(video[:3], clip[:3])
    assert mean_abs_error(video[3], clip[10]) < 3.0


# ---------------------------------------------------------------------------------------------- options


def test_num_frames_takes_the_first_frames(clip, tmp_path):
    path = save_video(clip, tmp_path / "clip.mp4")
    full = load_video(path)
    np.testing.assert_array_equal(load_video(path, num_frames=5), full[:5])
    np.testing.assert_array_equal(load_video(tmp_path / "clip.mp4", num_frames=F), full)
    with pytest.raises(ValueError, match=f"asked for {F + 1} frames but .*clip.mp4 has only {F}"):
        load_video(path, num_frames=F + 1)


def test_size_resizes_with_pil_bilinear(clip, tmp_path):
    folder = save_video(clip, tmp_path / "frames")
    video = load_video(folder, size=(24, 40))
    assert video.shape == (F, 24, 40, 3)
    expected = np.stack([np.asarray(Image.fromarray(f).resize((40, 24), Image.Resampling.BILINEAR)) for f in clip])
    np.testing.assert_array_equal(video, expected)
    assert load_video(save_video(clip, tmp_path / "c.mp4"), size=(96, 128), num_frames=2).shape == (2, 96, 128, 3)


def test_resample_indices_pick_the_nearest_source_frame():
    assert resample_indices(17, 16, 8) == list(range(0, 17, 2))
    assert resample_indices(5, 8, 16) == [0, 1, 1, 2, 2, 3, 3, 4, 4]  # ties go to the later frame
    assert resample_indices(4, 10, 10) == [0, 1, 2, 3]
    assert resample_indices(11, 10, 4) == [0, 3, 5, 8, 10]  # times 0, .25, .5, .75, 1.0 s


def test_fps_resamples_mp4_and_gif(clip, tmp_path):
    mp4 = save_video(clip, tmp_path / "clip.mp4", fps=16)
    full = load_video(mp4)
    np.testing.assert_array_equal(load_video(mp4, fps=8), full[::2])
    up = load_video(mp4, fps=32)
    assert len(up) == 2 * F - 1
    np.testing.assert_array_equal(up[::2], full)
    gif = save_video(clip, tmp_path / "clip.gif", fps=10)
    np.testing.assert_array_equal(load_video(gif, fps=5), clip[::2])


@pytest.mark.parametrize("fps", [5, 11, 24])
def test_fps_with_num_frames_equals_the_prefix_of_the_full_resample(clip, tmp_path, fps):
    path = save_video(clip, tmp_path / "clip.mp4", fps=16)
    resampled = load_video(path, fps=fps)
    assert len(resampled) == len(resample_indices(F, 16, fps))
    for n in (1, 3, len(resampled)):
        np.testing.assert_array_equal(load_video(path, fps=fps, num_frames=n), resampled[:n])
    with pytest.raises(ValueError, match=f"has only {len(resampled)} at {fps} fps"):
        load_video(path, fps=fps, num_frames=len(resampled) + 1)


def test_fps_on_an_image_folder_is_an_error(clip, tmp_path):
    folder = save_video(clip[:2], tmp_path / "frames")
    with pytest.raises(ValueError, match="reports no frame rate"):
        load_video(folder, fps=8)


# ---------------------------------------------------------------------------------------------- layouts


def accepted_layouts(clip):
    """The same clip in every accepted input layout."""
    unit = clip.astype(np.float32) / 255
    signed = torch.from_numpy(unit * 2 - 1).permute(3, 0, 1, 2)  # [C, F, H, W] in [-1, 1]
    rgba = np.concatenate([clip, np.full(clip.shape[:-1] + (1,), 7, np.uint8)], axis=-1)
    return {
        "numpy uint8 [F,H,W,C]": clip,
        "numpy float [F,H,W,C]": unit,
        "numpy float64 [1,F,H,W,C]": unit[None].astype(np.float64),
        "numpy uint8 RGBA": rgba,
        "torch float [F,H,W,C]": torch.from_numpy(unit),
        "torch uint8 [F,H,W,C]": torch.from_numpy(clip),
        "torch float [C,F,H,W]": signed,
        "torch float [1,C,F,H,W]": signed[None],
        "torch float64 [1,C,F,H,W]": signed[None].double(),
        "PIL RGB": [Image.fromarray(f) for f in clip],
        "PIL RGBA": [Image.fromarray(f, "RGBA") for f in rgba],
    }


def test_every_layout_gives_the_same_files(clip, tmp_path):
    # 64x48: with libx264's macroblock tree on, the bytes of a clip this small varied from run to run.
    clip = clip[:5]
    reference = {}
    for k, (label, frames) in enumerate(accepted_layouts(clip).items()):
        np.testing.assert_array_equal(as_uint8_frames(frames), clip, err_msg=label)
        folder = save_video(frames, tmp_path / f"png{k}")
        mp4 = save_video(frames, tmp_path / f"v{k}.mp4")
        contents = [(tmp_path / f"png{k}" / n).read_bytes() for n in listing(folder)]
        contents.append(open(mp4, "rb").read())
        reference.setdefault("files", contents)
        assert contents == reference["files"], label


def test_grey_frames_become_rgb(clip, tmp_path):
    grey = clip[:3, :, :, :1]
    out = load_video(save_video(grey, tmp_path / "g"))
    np.testing.assert_array_equal(out, np.repeat(grey, 3, axis=-1))
    pil = [Image.fromarray(f[..., 0], "L") for f in grey]
    np.testing.assert_array_equal(as_uint8_frames(pil), out)


def test_ambiguous_and_out_of_range_inputs_are_errors(clip, tmp_path):
    with pytest.raises(ValueError, match=r"ambiguous 4-D tensor of shape \(3, 48, 64, 3\)"):
        save_video(torch.rand(3, 48, 64, 3), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got values in \[0, 230\]"):
        save_video(clip.astype(np.float32), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match=r"channels-last tensor .* must lie in \[0, 1\]; got values in \[-1"):
        save_video(torch.from_numpy(clip / 127.5 - 1), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="B = 1"):
        save_video(torch.zeros(2, 3, F, H, W), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="channels-last"):
        save_video(np.zeros((F, 3, H, W), np.uint8), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="NaN"):
        save_video(torch.full((1, 3, 2, 4, 4), float("nan")), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="same size"):
        save_video([Image.new("RGB", (8, 8)), Image.new("RGB", (8, 6))], tmp_path / "a.gif")
    with pytest.raises(TypeError, match="got str"):
        save_video("frames", tmp_path / "a.gif")
    assert listing(tmp_path) == []  # nothing was written by any failed call


def test_small_overshoot_is_clamped_like_diffusers(clip):
    signed = torch.from_numpy(clip[:2].astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)
    signed[0, 0, 0, 0] = 1.05
    assert as_uint8_frames(signed)[0, 0, 0, 0] == 255


# ---------------------------------------------------------------------------------------------- errors


def test_odd_size_for_mp4_names_the_rule_and_nearest_even_sizes(clip, tmp_path):
    with pytest.raises(ValueError, match=r"4:2:0.*even height and width; got height 47.*height 46 or 48, width 64"):
        save_video(clip[:, :47], tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match=r"got height 48, width 63; nearest even sizes: height 48, width 62 or 64"):
        save_video(clip[:, :, :63] / 255.0, tmp_path / "odd.mp4")
    assert listing(tmp_path) == []
    assert load_video(save_video(clip[:, :47], tmp_path / "odd.gif")).shape == (F, 47, W, 3)  # GIF has no such rule


def test_unknown_suffixes_list_the_supported_ones(clip, tmp_path):
    with pytest.raises(ValueError, match=r"x\.avi.*\.mp4.*\.gif.*PNG"):
        save_video(clip, tmp_path / "x.avi")
    with pytest.raises(ValueError, match="format must be one of mp4, gif, png"):
        save_video(clip, tmp_path / "x", format="webp")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"cannot read .*notes\.txt: supported are \.mp4"):
        load_video(tmp_path / "notes.txt")


def test_missing_paths_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_video(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.gif"):
        video_info(tmp_path / "nope.gif")


def test_truncated_and_corrupt_files_are_value_errors_naming_the_file(clip, tmp_path):
    path = save_video(clip, tmp_path / "clip.mp4")
    data = open(path, "rb").read()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    for read in (load_video, video_info):
        with pytest.raises(ValueError, match=r"could not read video .*half\.mp4"):
            read(tmp_path / "half.mp4")
    (tmp_path / "junk.gif").write_bytes(b"GIF89a" + b"\x00" * 5)
    with pytest.raises(ValueError, match=r"junk\.gif"):
        load_video(tmp_path / "junk.gif")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no"):
        load_video(empty)


def test_truncated_faststart_mp4_is_caught_while_decoding(clip, tmp_path):
    """With the index (moov) first, a cut file opens fine; the missing frames must still be an error."""
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and data.index(b"moov") < data.index(b"mdat")
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.8)])  # mid-packet: the decoder fails
    with pytest.raises(ValueError, match=r"cut\.mp4"):
        load_video(tmp_path / "cut.mp4")
    with av.open(str(path)) as container:  # on a packet boundary every packet left decodes cleanly
        pos, size = [(p.pos, p.size) for p in container.demux(video=0) if p.size][8]
    (tmp_path / "clean_cut.mp4").write_bytes(data[: pos + size])
    with pytest.raises(ValueError, match=rf"clean_cut\.mp4 is truncated: the container states {F} frames, 9 decode"):
        load_video(tmp_path / "clean_cut.mp4")
    assert load_video(tmp_path / "clean_cut.mp4", num_frames=3).shape == (3, H, W, 3)  # the intact start still reads


# ---------------------------------------------------------------------------------------------- atomicity


def test_writes_leave_no_temporary_files_and_create_parents(clip, tmp_path):
    out = tmp_path / "a" / "b"
    save_video(clip[:3], out / "v.mp4")
    save_video(clip[:3], out / "v.gif")
    save_video(clip[:3], out / "frames")
    save_video(clip[:3], out / "v.mp4")  # overwrite
    save_video(clip[:3], out / "frames")  # replace
    assert listing(out) == ["frames", "v.gif", "v.mp4"]


def test_failed_final_rename_cleans_up_and_keeps_what_was_there(clip, tmp_path):
    blocker = tmp_path / "v.mp4"  # a non-empty folder where the file should go: os.replace must fail
    blocker.mkdir()
    (blocker / "keep").write_text("keep")
    with pytest.raises(OSError):
        save_video(clip[:3], blocker)
    assert listing(tmp_path) == ["v.mp4"] and listing(blocker) == ["keep"]

    good = save_video(clip[:3], tmp_path / "good.gif")
    before = open(good, "rb").read()
    with pytest.raises(ValueError):
        save_video(torch.rand(3, 8, 8, 3), good)  # ambiguous: refused before anything is written
    assert open(good, "rb").read() == before
    assert listing(tmp_path) == ["good.gif", "v.mp4"]


# ---------------------------------------------------------------------------------------------- conversions


def test_frames_to_numpy_matches_the_library_convention():
    video = torch.rand(2, 3, 5, 8, 6) * 2.2 - 1.1
    out = frames_to_numpy(video)
    assert out.shape == (2, 5, 8, 6, 3) and out.dtype == np.float32
    expected = ((video.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B, C, F, H, W\]"):
        frames_to_numpy(torch.rand(3, 5, 8, 6))


def test_numpy_to_pil_gives_rgb_images(clip):
    images = numpy_to_pil(clip[:4] / 255.0)
    assert len(images) == 4 and all(im.mode == "RGB" and im.size == (W, H) for im in images)
    np.testing.assert_array_equal(np.asarray(images[2]), clip[2])
