"""Trajectory conditioning: track readers, resampling, the inline form, checks, Tora's flow maps, ATI and Wan-Move."""

import contextlib
import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from videogen.conditioning.trajectory import (
    ati_condition,
    check_tracks,
    flow_to_rgb,
    gaussian_blur_flow,
    middlebury_color_wheel,
    parse_inline_track,
    read_tracks,
    resample_track,
    tora_flow_video,
    track_flow,
    wan_move_condition,
    write_tracks,
)


@contextlib.contextmanager
def no_warnings():
    """A context in which any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------------------------------
# Resampling and the inline form
# ----------------------------------------------------------------------------------------------


def test_resample_track_spreads_points_from_first_to_last_frame():
    p = [[0.0, 0.0], [4.0, 8.0], [10.0, 8.0]]
    # 3 points over 5 frames: at frames 0, 2, 4; frames 1 and 3 halfway
    expected = [[0, 0], [2, 4], [4, 8], [7, 8], [10, 8]]
    assert resample_track(p, 5).tolist() == expected
    # 2 points over 4 frames: thirds
    out = resample_track([[0.0, 3.0], [3.0, 0.0]], 4)
    torch.testing.assert_close(out, torch.tensor([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]]))
    # 5 points over 3 frames: frames at point 0, 2, 4
    five = [[k, 10 * k] for k in range(5)]
    assert resample_track(five, 3).tolist() == [[0, 0], [2, 20], [4, 40]]
    assert resample_track(five, 5).tolist() == five  # one per frame: unchanged
    assert resample_track([[7.0, 9.0]], 3).tolist() == [[7, 9]] * 3  # a still point
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        resample_track([1.0, 2.0], 5)


def test_parse_inline_track_moves_at_constant_speed_along_the_polyline():
    tracks, visible = parse_inline_track("0,0 30,0 30,40", 8)  # 70 px in 7 steps of 10 px
    expected = [[0, 0], [10, 0], [20, 0], [30, 0], [30, 10], [30, 20], [30, 30], [30, 40]]
    torch.testing.assert_close(tracks, torch.tensor([expected], dtype=torch.float32), atol=1e-5, rtol=0)
    assert tracks.shape == (1, 8, 2) and visible.shape == (1, 8) and visible.all()
    line, _ = parse_inline_track("10,10 54,40", 5)  # the example: a straight line over the clip
    torch.testing.assert_close(line[0], torch.tensor([[10 + 11.0 * f, 10 + 7.5 * f] for f in range(5)]))
    # a repeated point adds no length; one point is still
    torch.testing.assert_close(parse_inline_track("0,0 0,0 8,0", 3)[0][0], torch.tensor([[0.0, 0], [4, 0], [8, 0]]))
    assert parse_inline_track("5,6", 4)[0][0].tolist() == [[5, 6]] * 4


@pytest.mark.parametrize("text", ["10,10 54", "a,b", "", "1,2,3", "nan,1", "1,inf 2,2"])
def test_parse_inline_track_rejects_bad_points(text):
    with pytest.raises(ValueError):
        parse_inline_track(text, 5)


def test_parse_inline_track_clips_to_the_frame_when_given_one():
    with pytest.warns(UserWarning, match="clipped"):
        tracks, _ = parse_inline_track("-8,10 40,10", 3, height=32, width=32)
    assert tracks[0, :, 0].tolist() == [0.0, 16.0, 32.0]


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def test_points_outside_the_frame_are_clipped_with_one_warning():
    tracks = torch.tensor([[[-3.0, 5.0], [10.0, 40.0], [70.0, -1.0]], [[1.0, 1.0], [2.0, 2.0], [99.0, 2.0]]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, visible = check_tracks(tracks, None, height=32, width=64)
    assert len(caught) == 1 and "4 of 6 track points" in str(caught[0].message)
    assert out.tolist() == [[[0, 5], [10, 32], [64, 0]], [[1, 1], [2, 2], [64, 2]]]
    assert visible.dtype == torch.bool and visible.all()
    with no_warnings():
        check_tracks(out, visible, height=32, width=64)  # the edges themselves are inside


def test_bad_tracks_are_errors_that_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"\[N, F, 2\]"):
        check_tracks(torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"\[N, F, 2\]"):
        check_tracks(torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match=r"visible must have shape \[N, F\] = \(2, 5\)"):
        check_tracks(torch.zeros(2, 5, 2), torch.ones(2, 4, dtype=torch.bool))
    bad = torch.zeros(2, 5, 2)
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite.*track 1, frame 3"):
        check_tracks(bad)
    bad[1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_tracks(bad, height=8, width=8)


# ----------------------------------------------------------------------------------------------
# Track files
# ----------------------------------------------------------------------------------------------


def test_json_round_trip_and_resampling(tmp_path):
    tracks = torch.tensor([[[1.0, 2.0], [3.5, 4.0], [6.0, 7.25]], [[10.0, 0.0], [11.0, 1.0], [12.0, 2.0]]])
    visible = torch.tensor([[True, False, True], [True, True, True]])
    write_tracks(tmp_path / "t.json", tracks, visible)
    with no_warnings():
        out, vis = read_tracks(tmp_path / "t.json", 3, 16, 16)
    assert torch.equal(out, tracks) and torch.equal(vis, visible)

    # fewer points than frames, no "visible": spread over the clip, all visible; tracks of any lengths
    (tmp_path / "short.json").write_text(json.dumps({"tracks": [[[0, 0], [8, 4]], [[2, 2], [2, 6], [6, 6]]]}))
    out, vis = read_tracks(tmp_path / "short.json", 5, 16, 16)
    assert out.tolist() == [[[0, 0], [2, 1], [4, 2], [6, 3], [8, 4]], [[2, 2], [2, 4], [2, 6], [4, 6], [6, 6]]]
    assert vis.all()
    # a resampled frame is visible when the points it is interpolated from are: 3 points over 5 frames put
    # frames 1 and 3 between a visible and a hidden point; 5 points over 3 frames land on points 0, 2 and 4
    (tmp_path / "vis.json").write_text(json.dumps({"tracks": [[[0, 0], [2, 0], [4, 0]], [[0, 0], [1, 0], [1, 1]]],
                                                   "visible": [[True, False, True], [True, True, True]]}))
    assert read_tracks(tmp_path / "vis.json", 5, 8, 8)[1].tolist() == [[True, False, False, False, True], [True] * 5]
    (tmp_path / "vis5.json").write_text(json.dumps({"tracks": [[[0, 0]] * 5], "visible": [[1, 0, 1, 0, 0]]}))
    assert read_tracks(tmp_path / "vis5.json", 3, 8, 8)[1].tolist() == [[True, True, False]]


@pytest.mark.parametrize("data, match", [
    ({"paths": []}, "at least one track"),
    ({"tracks": [[[0, 0], [1]]]}, "track 0"),
    ({"tracks": [[[0, 0]]], "visible": [[True, True]]}, r"visible\[0\]"),
    ({"tracks": [[[0, 0]], [[1, 1]]], "visible": [[True]]}, "one list per track"),
    ({"tracks": [[[0, float("nan")]]]}, "NaN"),
])
def test_bad_json_track_files(tmp_path, data, match):
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        read_tracks(tmp_path / "bad.json", 5, 16, 16)


def test_unknown_or_missing_track_files(tmp_path):
    (tmp_path / "t.csv").write_text("0,0\n")
    with pytest.raises(ValueError, match="unknown track format"):
        read_tracks(tmp_path / "t.csv", 5, 16, 16)
    with pytest.raises(ValueError, match="does not exist"):
        read_tracks(tmp_path / "none.json", 5, 16, 16)


def write_ati(path, arr):
    """ATI's editor format (tools/trajectory_editor/app.py): torch.save of the bytes of
    np.savez_compressed(array=8 * arr) as float32."""
    bio = io.BytesIO()
    np.savez_compressed(bio, array=(8 * arr).astype(np.float32))
    torch.save(bio.getvalue(), path)


def test_ati_track_file_round_trip(tmp_path):
    # two tracks of 121 frames at 24 fps drawn on a 416x240 image; the second has 30 points, then zero padding
    t = np.arange(121, dtype=np.float64)
    arr = np.zeros((2, 121, 1, 3))
    arr[0, :, 0] = np.stack([100 + t, 50 + 0.5 * t, np.ones(121)], -1)
    arr[1, :30, 0] = np.stack([300 - 2 * t[:30], 200 - t[:30], np.ones(30)], -1)
    write_ati(tmp_path / "a.pth", arr)

    # ATI retimes to 16 fps: frame 0, then every 24 fps frame twice, every third from the second on
    source = [0] + [f for f in range(1, 121) for _ in (0, 1)][1::3]
    assert len(source) == 81 and source[:5] == [0, 1, 3, 4, 6] and source[-1] == 120
    with no_warnings():
        tracks, visible = read_tracks(tmp_path / "a.pth", 81, 120, 208, source_size=(416, 240))
    src = np.array(source, dtype=np.float64)
    expected0 = np.stack([(100 + src) / 2, (50 + 0.5 * src) / 2], -1)
    torch.testing.assert_close(tracks[0], torch.tensor(expected0, dtype=torch.float32))
    assert visible[0].all()
    drawn = src < 30
    assert visible[1].tolist() == drawn.tolist()
    last = (300 - 2 * 29) / 2, (200 - 29) / 2  # hidden points hold the last drawn position, not (0, 0)
    expected1 = np.where(drawn[:, None], np.stack([(300 - 2 * src) / 2, (200 - src) / 2], -1), last)
    torch.testing.assert_close(tracks[1], torch.tensor(expected1, dtype=torch.float32))

    # fewer frames: the 81 spread over the clip (frame f of 21 is frame 4f of 81)
    short, short_vis = read_tracks(tmp_path / "a.pth", 21, 120, 208, source_size=(416, 240))
    assert torch.equal(short, tracks[:, ::4]) and torch.equal(short_vis, visible[:, ::4])
    # ATI's process_tracks also takes [121, N, 1, 3]
    write_ati(tmp_path / "b.pth", arr.transpose(1, 0, 2, 3))
    assert torch.equal(read_tracks(tmp_path / "b.pth", 81, 120, 208, source_size=(416, 240))[0], tracks)
    # a track hidden on its first frames starts at its first visible point
    late = arr[:1].copy()
    late[0, :3, 0] = 0
    write_ati(tmp_path / "late.pth", late)
    late_tracks, late_visible = read_tracks(tmp_path / "late.pth", 81, 120, 208, source_size=(416, 240))
    assert late_visible[0, :2].tolist() == [False, False] and late_visible[0, 2:].all()  # frame 2 is source 3
    assert late_tracks[0, 0].tolist() == [(100 + 3) / 2, (50 + 1.5) / 2]
    write_ati(tmp_path / "c.pth", arr[:, :100])
    with pytest.raises(ValueError, match="ATI tracks must have shape"):
        read_tracks(tmp_path / "c.pth", 81, 120, 208)


def test_wan_move_npy_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tracks = rng.uniform(0, 400, size=(1, 81, 3, 2)).astype(np.float32)  # pixels of an 800x400 input image
    vis = rng.uniform(size=(1, 81, 3)) > 0.3
    np.save(tmp_path / "clip_tracks.npy", tracks)
    np.save(tmp_path / "clip_visibility.npy", vis)
    with no_warnings():
        out, out_vis = read_tracks(tmp_path / "clip_tracks.npy", 81, 200, 400, source_size=(800, 400))
    expected = tracks[0].transpose(1, 0, 2) * np.array([0.5, 0.5], dtype=np.float32)
    torch.testing.assert_close(out, torch.from_numpy(expected))
    assert out_vis.tolist() == vis[0].T.tolist()
    # an explicit visibility file, [F, N] layouts; no visibility file: all visible
    np.save(tmp_path / "t.npy", tracks[0])
    np.save(tmp_path / "v.npy", ~vis[0])
    same, inverted = read_tracks(tmp_path / "t.npy", 81, 400, 800, visibility_path=tmp_path / "v.npy")
    torch.testing.assert_close(same, torch.from_numpy(tracks[0].transpose(1, 0, 2)))
    assert inverted.tolist() == (~vis[0]).T.tolist()
    np.save(tmp_path / "lone.npy", tracks)
    assert read_tracks(tmp_path / "lone.npy", 81, 400, 800)[1].all()
    np.save(tmp_path / "bad_tracks.npy", tracks[..., :1])
    with pytest.raises(ValueError, match="Wan-Move tracks must have shape"):
        read_tracks(tmp_path / "bad_tracks.npy", 81, 400, 800)


def test_tora_text_round_trip(tmp_path):
    (tmp_path / "traj.txt").write_text("0,128\n64,128\n\n128,64\n")  # Tora's 256x256 canvas
    with no_warnings():
        tracks, visible = read_tracks(tmp_path / "traj.txt", 5, 32, 64)
    assert tracks.tolist() == [[[0, 16], [8, 16], [16, 16], [24, 12], [32, 8]]] and visible.all()
    (tmp_path / "bad.txt").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_tracks(tmp_path / "bad.txt", 5, 32, 64)


# ----------------------------------------------------------------------------------------------
# Tora's flow maps
# ----------------------------------------------------------------------------------------------


def test_track_flow_writes_displacement_at_the_previous_position():
    tracks = torch.tensor([[[10.5, 20.25], [12.5, 20.25], [15.0, 20.25], [15.0, 22.0]]])
    flow = track_flow(tracks, None, 32, 32)
    assert flow.shape == (2, 4, 32, 32) and not flow[:, 0].any()  # frame 0 is zero
    expected = torch.zeros_like(flow)
    expected[:, 1, 20, 10] = torch.tensor([2.0, 0.0])
    expected[:, 2, 20, 12] = torch.tensor([2.5, 0.0])
    expected[:, 3, 20, 15] = torch.tensor([0.0, 1.75])
    assert torch.equal(flow, expected)
    # a point hidden on either frame writes nothing; a later track overwrites an earlier one
    visible = torch.tensor([[True, True, False, True]])
    assert torch.equal(track_flow(tracks, visible, 32, 32), torch.where(
        torch.arange(4).view(1, 4, 1, 1) == 1, expected, torch.zeros(())))
    two = torch.cat([tracks, torch.tensor([[[10.9, 20.9], [9.9, 20.9], [9.9, 20.9], [9.9, 20.9]]])])
    assert track_flow(two, None, 32, 32)[:, 1, 20, 10].tolist() == pytest.approx([-1.0, 0.0])


def test_gaussian_blur_keeps_the_peak_and_uses_tora_parameters():
    flow = torch.zeros(2, 2, 120, 120)
    flow[0, 1, 60, 60] = 1.0
    flow[1, 1, 60, 60] = -3.0
    out = gaussian_blur_flow(flow)  # Tora: 99 x 99, sigma 10, centre weight 1
    assert out[0, 1, 60, 60] == 1.0 and out[1, 1, 60, 60] == -3.0
    assert not out[:, 0].any()
    for dr, dc in [(0, 10), (10, 0), (6, -8), (0, 49), (-49, 49)]:
        g = math.exp(-(dr * dr + dc * dc) / (2 * 10.0**2))
        assert out[0, 1, 60 + dr, 60 + dc].item() == pytest.approx(g, rel=1e-5)
    assert out[0, 1, 60, 60 + 50] == 0 and out[0, 1, 60 - 50, 60] == 0  # the kernel's radius is 49


def test_gaussian_blur_reflects_at_the_border_like_opencv():
    # BORDER_REFLECT_101: row/column -1 reads row/column 1, so a point next to the edge also sees its mirror
    flow = torch.zeros(1, 1, 21, 21)
    flow[0, 0, 10, 1] = 1.0
    out = gaussian_blur_flow(flow, sigma=2.0, kernel_size=11)
    g = lambda d: math.exp(-d * d / 8.0)  # noqa: E731
    assert out[0, 0, 10, 0].item() == pytest.approx(2 * g(1), rel=1e-6)  # taps -1 and +1 both land on column 1
    assert out[0, 0, 10, 1].item() == pytest.approx(1 + g(2), rel=1e-6)  # its own tap and the mirror of column -1
    assert out[0, 0, 10, 2].item() == pytest.approx(g(1) + g(3), rel=1e-6)
    assert out[0, 0, 13, 0].item() == pytest.approx(2 * g(1) * g(3), rel=1e-6)
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur_flow(flow, kernel_size=10)


def expected_wheel():
    """The Middlebury wheel written out from its definition (Baker et al. 2007): 55 colours in six ramps."""
    rows = []
    rows += [(255, math.floor(255 * i / 15), 0) for i in range(15)]  # RY
    rows += [(255 - math.floor(255 * i / 6), 255, 0) for i in range(6)]  # YG
    rows += [(0, 255, math.floor(255 * i / 4)) for i in range(4)]  # GC
    rows += [(0, 255 - math.floor(255 * i / 11), 255) for i in range(11)]  # CB
    rows += [(math.floor(255 * i / 13), 0, 255) for i in range(13)]  # BM
    rows += [(255, 0, 255 - math.floor(255 * i / 6)) for i in range(6)]  # MR
    return rows


def rgb(levels):
    return [x / 127.5 - 1 for x in levels]


def test_middlebury_wheel_and_hues():
    wheel = expected_wheel()
    assert middlebury_color_wheel().tolist() == [list(map(float, c)) for c in wheel]
    # four unit flows in one clip (so the largest length is 1), at four pixels of frame 1
    flow = torch.zeros(2, 2, 2, 3)
    flow[:, 1, 0, 0] = torch.tensor([1.0, 0.0])  # +x
    flow[:, 1, 0, 1] = torch.tensor([0.0, 1.0])  # +y (down)
    flow[:, 1, 0, 2] = torch.tensor([-1.0, 0.0])  # -x
    flow[:, 1, 1, 0] = torch.tensor([0.5, 0.0])  # +x at half the largest length
    out = flow_to_rgb(flow)
    assert out.shape == (3, 2, 2, 3)
    # the wheel position is (atan2(-dy, -dx) / pi + 1) / 2 * 54: +x -> 0, +y -> 13.5, -x -> 27
    assert out[:, 1, 0, 0].tolist() == rgb(wheel[0])  # red
    between = [math.floor((a + b) / 2) for a, b in zip(wheel[13], wheel[14])]  # (255, 229, 0): yellow-orange
    assert between == [255, 229, 0]
    assert out[:, 1, 0, 1].tolist() == pytest.approx(rgb(between), abs=1e-6)
    assert out[:, 1, 0, 2].tolist() == pytest.approx(rgb(wheel[27]), abs=1e-6)  # (0, 209, 255): cyan-blue
    half = [math.floor(255 * (1 - 0.5 * (1 - c / 255))) for c in wheel[0]]  # faded half way to white
    assert out[:, 1, 1, 0].tolist() == pytest.approx(rgb(half), abs=1e-6)
    assert (out[:, 0] == 1).all() and (out[:, 1, 1, 1:] == 1).all()  # no flow: white
    negative_zero = torch.zeros(2, 1, 1, 1)
    negative_zero[:, 0, 0, 0] = torch.tensor([2.0, -0.0])  # still +x: red, not the wheel's last colour
    assert flow_to_rgb(negative_zero)[:, 0, 0, 0].tolist() == rgb(wheel[0])


def test_tora_flow_video_of_a_track_moving_right():
    x = torch.arange(5, dtype=torch.float32) + 50.5  # one pixel right per frame
    tracks = torch.stack([x, torch.full_like(x, 60.5)], -1)[None]
    flow = track_flow(tracks, None, 120, 120)
    blurred = gaussian_blur_flow(flow)
    video = tora_flow_video(tracks, None, 120, 120)
    assert video.shape == (3, 5, 120, 120) and video.min() >= -1 and video.max() <= 1
    assert (video[:, 0] == 1).all()  # frame 0: no motion, white
    for t in range(1, 5):
        col = 50 + t - 1  # the previous position
        assert blurred[0, t, 60, col] == 1.0 and blurred[1, t, 60, col] == 0.0  # the peak keeps the displacement
        assert blurred[0, t].max() == 1.0 and (blurred[0, t] >= 0).all() and not blurred[1, t].any()  # +x only
        assert video[:, t, 60, col].tolist() == rgb(expected_wheel()[0])  # pure red
        # around the peak the colour fades towards white but keeps the hue (red held at 255, blue = green)
        near = video[:, t, 60, col + 5]
        assert near[0] == 1 and near[1] == near[2] and -1 < near[1] < 1


# ----------------------------------------------------------------------------------------------
# ATI and Wan-Move
# ----------------------------------------------------------------------------------------------


def bilinear(image, x, y):
    """``image [C, h, w]`` sampled at continuous pixel coordinates (pixel centres at integers), zeros outside."""
    c, h, w = image.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = [0.0] * c
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= xx < w and 0 <= yy < h:
                for k in range(c):
                    out[k] += wy * wx * float(image[k, yy, xx])
    return out


def ati_by_hand(condition, tracks, visible, temperature, topk):
    """ATI's patch_motion written out per latent pixel, from its published formula, in float64."""
    y = condition.double()
    m4 = 4
    _, T, h, w = y.shape
    H, W = 8 * h, 8 * w
    short, m = min(H, W), min(h, w)
    unit = lambda px, py: ((px - W / 2) / short * 2, (py - H / 2) / short * 2)  # noqa: E731
    out = y.clone()
    out[:m4, 0] = 1
    feats = []
    for n in range(len(tracks)):  # frame-0 feature: grid_sample(align_corners=False) = pixel x * w / W - 0.5
        x0, y0 = (float(v) for v in tracks[n, 0])
        feats.append(bilinear(y[m4:, 0], x0 * w / W - 0.5, y0 * h / H - 0.5))
    for t in range(1, T):
        places = []
        for n in range(len(tracks)):
            frames = range(4 * (t - 1) + 1, 4 * t + 1)
            count = sum(bool(visible[n, f]) for f in frames)
            sx = sum(unit(*map(float, tracks[n, f]))[0] for f in frames if visible[n, f])
            sy = sum(unit(*map(float, tracks[n, f]))[1] for f in frames if visible[n, f])
            places.append((sx / (count + 1e-5), sy / (count + 1e-5), 1.0 if count else 0.0))
        for i in range(h):
            gy = -h / m + i * (2 * h / m) / (h - 1)
            for j in range(w):
                gx = -w / m + j * (2 * w / m) / (w - 1)
                weights = sorted(((math.exp(-temperature * ((px - gx) ** 2 + (py - gy) ** 2)) * seen, n)
                                  for n, (px, py, seen) in enumerate(places)), reverse=True)[:topk]
                total = sum(wt for wt, _ in weights)
                for k in range(y.shape[0] - m4):
                    splat = sum(wt * feats[n][k] for wt, n in weights)
                    out[m4 + k, t, i, j] = splat + y[m4 + k, t, i, j] * (1 - min(max(total, 0.0), 1.0))
                out[:m4, t, i, j] = total
    return out


@pytest.mark.parametrize("temperature", [3.0, 220.0])
def test_ati_condition_matches_the_published_formula(temperature):
    torch.manual_seed(0)
    condition = torch.randn(4 + 3, 3, 4, 5)  # 3 latent frames = 9 pixel frames of 32 x 40
    tracks = torch.stack([
        torch.stack([torch.linspace(4, 36, 9), torch.linspace(5, 12, 9)], -1),
        torch.stack([torch.linspace(30, 10, 9), torch.full((9,), 20.0)], -1),
        torch.stack([torch.full((9,), 21.0), torch.linspace(28, 2, 9)], -1),
    ])
    visible = torch.ones(3, 9, dtype=torch.bool)
    visible[1, 5:] = False  # track 1 gone from latent frame 2
    visible[2, 1:3] = False  # track 2 seen in 2 of latent frame 1's 4 frames
    out = ati_condition(condition, tracks, visible, temperature=temperature)
    expected = ati_by_hand(condition, tracks, visible, temperature, topk=2)
    assert out.shape == condition.shape and out.dtype == condition.dtype
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[4:, 0], condition[4:, 0])  # the image's own latent frame is kept
    # top-1 keeps only the strongest track per pixel
    torch.testing.assert_close(ati_condition(condition, tracks, visible, temperature=3.0, topk=1).double(),
                               ati_by_hand(condition, tracks, visible, 3.0, topk=1), atol=1e-5, rtol=1e-5)


def wan_move_by_hand(condition, tracks, visible):
    """Wan-Move's replace_feature written out: latent frame t reads pixel frame 4t, latent pixel (x // 8, y // 8),
    the frame-0 feature of each track copied in order."""
    out = condition.clone()
    _, T, h, w = condition.shape
    for n in range(len(tracks)):
        x0, y0 = (float(v) for v in tracks[n, 0])
        if not visible[n, 0]:
            continue
        source = condition[4:, 0, int(y0 // 8), int(x0 // 8)]
        for t in range(1, T):
            x, y = (float(v) for v in tracks[n, 4 * t])
            if visible[n, 4 * t] and 0 <= x < 8 * w and 0 <= y < 8 * h:
                out[4:, t, int(y // 8), int(x // 8)] = source
    return out


def test_wan_move_condition_matches_the_published_formula():
    torch.manual_seed(1)
    condition = torch.randn(4 + 2, 3, 4, 5)
    before = condition.clone()
    tracks = torch.zeros(4, 9, 2)
    tracks[0, :] = torch.stack([torch.linspace(3, 35, 9), torch.linspace(3, 27, 9)], -1)  # diagonal
    tracks[1, :] = torch.tensor([20.0, 9.0])
    tracks[1, 4] = torch.tensor([12.0, 30.0])
    tracks[2, :] = torch.tensor([39.0, 2.0])
    tracks[2, 8] = torch.tensor([36.0, 30.0])  # lands on track 0's pixel at latent frame 2: the later track wins
    tracks[3, :] = torch.tensor([9.0, 25.0])
    visible = torch.ones(4, 9, dtype=torch.bool)
    visible[1, 8] = False  # track 1 hidden at latent frame 2
    visible[3, 0] = False  # track 3 hidden on frame 0: skipped
    out = wan_move_condition(condition, tracks, visible)
    assert torch.equal(condition, before)  # a new tensor
    assert torch.equal(out, wan_move_by_hand(condition, tracks, visible))
    assert torch.equal(out[:4], condition[:4])  # mask unchanged
    assert torch.equal(out[4:, 2, 3, 4], condition[4:, 0, 0, 4])  # track 2's feature, copied from (39, 2)
    assert torch.equal(out[4:, 1, 3, 1], condition[4:, 0, 1, 2])  # track 1 at (12, 30) on frame 4
    assert torch.equal(out[4:, 2, 1, 1], condition[4:, 2, 1, 1])  # track 3 (hidden on frame 0) wrote nothing
    # a point on the closing edge belongs to the last pixel
    edge = torch.tensor([[[4.0, 4.0]] * 5 + [[40.0, 32.0]] * 4])
    assert torch.equal(wan_move_condition(condition, edge)[4:, 2, 3, 4], condition[4:, 0, 0, 0])


def test_condition_transforms_check_their_inputs():
    condition = torch.zeros(4 + 2, 3, 4, 5)
    with pytest.raises(ValueError, match="9 frames"):
        ati_condition(condition, torch.zeros(1, 8, 2))
    with pytest.raises(ValueError, match="9 frames"):
        wan_move_condition(condition, torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="mask 4 \\+ latent C"):
        ati_condition(condition[None], torch.zeros(1, 9, 2))
    with pytest.raises(ValueError, match=r"\[N, F, 2\]"):
        wan_move_condition(condition, torch.zeros(9, 2))
