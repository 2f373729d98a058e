"""Camera conditioning: VideoX-Fun's golden values, the Plücker formula, packing, pose files, slerp and presets."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from videogen.conditioning.camera import (
    CAMERA_PRESETS,
    ORBIT_RADIUS,
    camera_condition,
    camera_preset,
    pack_camera,
    plucker_rays,
    read_pose_file,
    relative_poses,
    resample_poses,
    write_pose_file,
)

ASSET_PREFIX = "0 0.532139961 0.946026558 0.5 0.5 0 0 "  # every line of VideoX-Fun's asset/*.txt starts so


def asset_file(tmp_path, name, w2c_rows):
    """A pose file laid out as VideoX-Fun's assets: an empty first line, then one line per w2c 3x4 (12 numbers)."""
    path = tmp_path / f"{name}.txt"
    path.write_text("\n" + "".join(ASSET_PREFIX + " ".join(map(repr, row)) + "\n" for row in w2c_rows))
    return path


def pan_left_rows(n=81):
    """VideoX-Fun asset/Pan_Left.txt: identity rotation, w2c t_x = k/54 (k = 0..80)."""
    return [[1.0, 0.0, 0.0, k / 54, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0] for k in range(n)]


def rotation(axis, angle):
    """Rodrigues' formula in numpy: rotation by ``angle`` about the unit ``axis``."""
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def random_poses(n, seed):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    for k in range(n):
        c2w[k, :3, :3] = rotation(rng.normal(size=3), rng.uniform(-1.5, 1.5))
        c2w[k, :3, 3] = rng.normal(size=3)
    return torch.tensor(c2w)


def ray_at(K, c2w, i, j):
    """The CameraCtrl ray of pixel (column i, row j), written out per pixel in plain Python."""
    fx, fy, cx, cy = K
    x, y, z = (i + 0.5 - cx) / fx, (j + 0.5 - cy) / fy, 1.0
    n = math.sqrt(x * x + y * y + z * z)
    dc = (x / n, y / n, z / n)
    d = [sum(c2w[r][k] * dc[k] for k in range(3)) for r in range(3)]
    o = [c2w[0][3], c2w[1][3], c2w[2][3]]
    m = [o[1] * d[2] - o[2] * d[1], o[2] * d[0] - o[0] * d[2], o[0] * d[1] - o[1] * d[0]]
    return m + d


def project(K, c2w, point):
    """Pixel (u, v) of a world point seen by camera ``c2w`` with intrinsics ``K``."""
    w2c = np.linalg.inv(np.asarray(c2w, dtype=float))
    x, y, z = w2c[:3, :3] @ np.asarray(point) + w2c[:3, 3]
    return K[0] * x / z + K[2], K[1] * y / z + K[3]


# ----------------------------------------------------------------------------------------------
# Golden values (notes: VideoX-Fun run on its own assets)
# ----------------------------------------------------------------------------------------------


def test_asset_intrinsics_and_pan_left_golden(tmp_path):
    K, c2w = read_pose_file(asset_file(tmp_path, "Pan_Left", pan_left_rows()), 480, 832)
    assert K.shape == (81, 4) and c2w.shape == (81, 4, 4) and K.dtype == torch.float32
    assert K[0].tolist() == pytest.approx([454.09, 454.09, 416.0, 240.0], abs=0.01)
    assert torch.equal(c2w[0], torch.eye(4))
    assert c2w[-1, 0, 3].item() == pytest.approx(-1.4815, abs=1e-4)


def test_aspect_fix_both_branches(tmp_path):
    path = asset_file(tmp_path, "Pan_Left", pan_left_rows(5))
    wide = read_pose_file(path, 256, 832)[0][0]  # 832/256 > 16/9: fy is corrected, fx kept
    assert wide[:2].tolist() == pytest.approx([0.532139961 * 832] * 2, rel=1e-6)
    raw = read_pose_file(path, 480, 832, original_size=None)[0][0]  # no correction at all
    assert raw[:2].tolist() == pytest.approx([0.532139961 * 832, 0.946026558 * 480], rel=1e-6)


# Last camera centre of each VideoX-Fun asset at 81 frames (w2c t = 1.5*80/81 per unit, zoom 2 units).
ASSET_LAST_CENTRES = {
    "static": (0, 0, 0), "pan-left": (-1, 0, 0), "pan-right": (1, 0, 0), "pan-up": (0, -1, 0),
    "pan-down": (0, 1, 0), "pan-left-up": (-1, -1, 0), "pan-left-down": (-1, 1, 0), "pan-right-up": (1, -1, 0),
    "pan-right-down": (1, 1, 0), "zoom-in": (0, 0, 2), "zoom-out": (0, 0, -2),
}


@pytest.mark.parametrize("name", sorted(ASSET_LAST_CENTRES))
def test_presets_reproduce_videox_fun_assets(name):
    K, c2w = camera_preset(name, 81, height=480, width=832)
    assert K[40].tolist() == pytest.approx([454.09, 454.09, 416.0, 240.0], abs=0.01)
    assert torch.equal(c2w[0], torch.eye(4))
    expected = [1.4814814814814814 * v for v in ASSET_LAST_CENTRES[name]]
    assert c2w[-1, :3, 3].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(c2w[-1, :3, :3], torch.eye(3))


def test_pan_left_preset_equals_the_asset_file(tmp_path):
    asset = read_pose_file(asset_file(tmp_path, "Pan_Left", pan_left_rows()), 480, 832)
    preset = camera_preset("pan-left", 81, height=480, width=832)
    assert torch.allclose(asset[0], preset[0], atol=1e-4) and torch.allclose(asset[1], preset[1], atol=1e-6)


def test_roll_presets_match_cw_and_acw_assets():
    # asset/CW.txt last line: w2c rotation rows (0.51115, 0.85949, 0), (-0.85949, 0.51115, 0), (0, 0, 1)
    c, s = 0.5111541954058733, 0.8594890275733451
    cw = camera_preset("roll-cw", 81)[1][-1, :3, :3]
    assert torch.allclose(cw, torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]]), atol=1e-6)  # c2w = w2c transposed
    ccw = camera_preset("roll-ccw", 81)[1][-1, :3, :3]
    assert torch.allclose(ccw, torch.tensor([[c, s, 0], [-s, c, 0], [0, 0, 1]]), atol=1e-6)
    assert math.degrees(math.acos(c)) == pytest.approx(59.26, abs=0.01)


def test_preset_aliases_and_speed():
    assert torch.equal(camera_preset("Pan_Left", 9)[1], camera_preset("pan-left", 9)[1])
    assert torch.equal(camera_preset("CW", 9)[1], camera_preset("roll-cw", 9)[1])
    assert torch.equal(camera_preset("pan-up-left", 9)[1], camera_preset("pan-left-up", 9)[1])
    slow, fast = camera_preset("pan-right", 9, speed=0.5)[1], camera_preset("pan-right", 9, speed=2.0)[1]
    assert fast[-1, 0, 3].item() == pytest.approx(4 * slow[-1, 0, 3].item()) and slow[-1, 0, 3] > 0


# ----------------------------------------------------------------------------------------------
# Preset signs
# ----------------------------------------------------------------------------------------------


def test_pan_left_moves_the_camera_left_and_the_scene_right():
    K, c2w = camera_preset("pan-left", 17, height=64, width=96)
    x = c2w[:, 0, 3]
    assert (x[1:] < x[:-1]).all()
    u, v = zip(*(project(K[k].tolist(), c2w[k], (0.3, -0.2, 4.0)) for k in range(17)))
    assert all(b > a for a, b in zip(u, u[1:])) and max(v) - min(v) < 1e-4


def test_vertical_zoom_and_roll_signs():
    _, up = camera_preset("pan-up", 9)
    assert (up[1:, 1, 3] < up[:-1, 1, 3]).all()  # OpenCV y is down: up is decreasing y
    K, zoom = camera_preset("zoom-in", 9, height=64, width=96)
    assert (zoom[1:, 2, 3] > zoom[:-1, 2, 3]).all()
    u = [project(K[k].tolist(), zoom[k], (0.5, 0.0, 5.0))[0] - K[k, 2].item() for k in range(9)]
    assert all(b > a > 0 for a, b in zip(u, u[1:]))  # an off-axis point moves outwards
    _, cw = camera_preset("roll-cw", 9)
    assert (cw[1:, 1, 0] > 0).all()  # the camera x axis turns towards +y (down): clockwise on screen


@pytest.mark.parametrize("name, sign", [("orbit-left", -1), ("orbit-right", 1)])
def test_orbit_keeps_the_pivot_centred(name, sign):
    K, c2w = camera_preset(name, 17, height=64, width=96)
    x = sign * c2w[:, 0, 3]
    assert (x[1:] > x[:-1]).all()
    R = c2w[:, :3, :3].double()
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(17, 3, 3), atol=1e-6)
    for k in range(17):
        u, v = project(K[k].tolist(), c2w[k], (0.0, 0.0, ORBIT_RADIUS))
        assert (u, v) == pytest.approx((48.0, 32.0), abs=1e-3)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown camera preset 'dolly-zoom'.*pan-left.*orbit-right"):
        camera_preset("dolly-zoom", 9)
    assert len(CAMERA_PRESETS) == 15 and "pan-left-up" in CAMERA_PRESETS
    with pytest.raises(ValueError, match="neither a preset"):
        camera_condition("dolly-zoom", 9, 16, 16)


# ----------------------------------------------------------------------------------------------
# Plücker rays
# ----------------------------------------------------------------------------------------------


def test_plucker_frame0_moment_is_zero_and_directions_are_unit():
    K, c2w = camera_preset("pan-left-up", 9, height=24, width=40)
    P = plucker_rays(K, c2w, 24, 40)
    assert P.shape == (6, 9, 24, 40) and P.dtype == torch.float32
    assert torch.equal(P[:3, 0], torch.zeros(3, 24, 40))
    assert torch.allclose(P[3:].norm(dim=0), torch.ones(9, 24, 40), atol=1e-6)
    assert P[:3, -1].abs().max() > 0.1  # a moved camera has moments


@pytest.mark.parametrize("frames, height, width", [(3, 3, 3), (3, 1, 3), (2, 5, 7)])
def test_plucker_matches_the_per_pixel_formula(frames, height, width):
    K = torch.tensor([[5.0, 4.0, 1.7, 1.1], [3.0, 6.0, 2.0, 0.4], [4.5, 4.5, 1.5, 1.5]])[:frames]
    c2w = random_poses(frames, seed=frames + height).float()
    P = plucker_rays(K, c2w, height, width)
    for f in range(frames):
        for j in range(height):
            for i in range(width):
                expected = ray_at(K[f].tolist(), c2w[f].tolist(), i, j)
                assert P[:, f, j, i].tolist() == pytest.approx(expected, abs=1e-5), (f, j, i)


# ----------------------------------------------------------------------------------------------
# Packing
# ----------------------------------------------------------------------------------------------


def test_pack_channel_map():
    F, H, W = 13, 2, 3
    P = torch.zeros(6, F, H, W)
    for k in range(6):
        for f in range(F):
            P[k, f] = 100 * k + f
    packed = pack_camera(P)
    assert packed.shape == (24, 4, H, W)
    for k in range(6):
        for j in range(4):
            for t in range(4):
                assert packed[4 * k + j, t, 0, 0].item() == 100 * k + max(4 * t + j - 3, 0), (k, j, t)
    batched = pack_camera(torch.stack([P, -P]))
    assert batched.shape == (2, 24, 4, H, W) and torch.equal(batched[1], -packed)


def test_pack_golden_shape():
    assert pack_camera(torch.empty(6, 81, 480, 832, device="meta")).shape == (24, 21, 480, 832)
    assert pack_camera(torch.empty(1, 6, 81, 480, 832, device="meta")).shape == (1, 24, 21, 480, 832)
    assert pack_camera(torch.ones(6, 1, 2, 2)).shape == (24, 1, 2, 2)


def test_pack_rejects_frame_counts_not_1_plus_4k():
    with pytest.raises(ValueError, match=r"1 \+ 4k.*got 80.*77, 81"):
        pack_camera(torch.zeros(6, 80, 2, 2))
    with pytest.raises(ValueError, match="6, F, H, W"):
        pack_camera(torch.zeros(5, 81, 2, 2))


# ----------------------------------------------------------------------------------------------
# Pose files
# ----------------------------------------------------------------------------------------------


def test_relative_poses():
    c2w = random_poses(4, seed=3)
    rel = relative_poses(c2w)
    assert torch.equal(rel[0], torch.eye(4, dtype=torch.float64))
    assert torch.allclose(rel[2], torch.linalg.inv(c2w[0]) @ c2w[2], atol=1e-12)


@pytest.mark.parametrize("height, width", [(480, 832), (256, 832), (720, 1280), (64, 48)])
def test_text_round_trip(tmp_path, height, width):
    c2w = random_poses(6, seed=height)
    K = torch.tensor([[0.9 * width, 0.8 * width, width / 2 + 3, height / 2 - 2]], dtype=torch.float64).repeat(6, 1)
    K = K + torch.arange(6)[:, None]
    path = tmp_path / "poses.txt"
    write_pose_file(path, K, c2w, height, width)
    assert path.read_text().splitlines()[0].startswith("#") and len(path.read_text().splitlines()) == 7
    K2, c2w2 = read_pose_file(path, height, width)
    assert torch.allclose(K2.double(), K, rtol=1e-6)
    assert torch.allclose(c2w2.double(), relative_poses(c2w), atol=1e-5)


def test_preset_written_as_pose_file_reads_back(tmp_path):
    K, c2w = camera_preset("orbit-right", 21, height=64, width=96)
    write_pose_file(tmp_path / "orbit.txt", K, c2w, 64, 96)
    K2, c2w2 = read_pose_file(tmp_path / "orbit.txt", 64, 96)
    assert torch.allclose(K2, K, rtol=1e-6) and torch.allclose(c2w2, c2w, atol=1e-6)


def test_shapes_world_metadata_round_trip(tmp_path):
    from videogen.data.synthetic import BackgroundSpec, ClipSpec, render_clip

    spec = ClipSpec(objects=(), background=BackgroundSpec("texture", "checker", 0), camera="pan_left",
                    num_frames=5, height=32, width=48)
    meta = render_clip(spec)[1]
    path = tmp_path / "00000.json"
    path.write_text(json.dumps(meta))
    K, c2w = read_pose_file(path, 32, 48)
    expected = torch.tensor(meta["camera"]["c2w"], dtype=torch.float64)
    assert torch.allclose(K.double(), torch.tensor(meta["camera"]["intrinsics"], dtype=torch.float64), rtol=1e-6)
    assert torch.allclose(c2w.double(), torch.linalg.inv(expected[0]) @ expected, atol=1e-6)
    assert (c2w[1:, 0, 3] < c2w[:-1, 0, 3]).all()  # the shapes world's pan_left agrees with ours
    K_big, _ = read_pose_file(path, 64, 72)  # per-axis rescale from the clip's 32x48
    assert K_big[0].tolist() == pytest.approx([48 * 1.5, 48 * 2, 24 * 1.5, 16 * 2], rel=1e-6)


def test_plain_json_round_trip(tmp_path):
    c2w = random_poses(3, seed=7)
    data = {"intrinsics": [[50.0, 40.0, 32.0, 24.0]] * 3, "c2w": c2w.tolist()}
    (tmp_path / "a.json").write_text(json.dumps(data))
    K, rel = read_pose_file(tmp_path / "a.json", 48, 64)
    assert K[2].tolist() == [50.0, 40.0, 32.0, 24.0]
    assert torch.allclose(rel.double(), relative_poses(c2w), atol=1e-6)
    # one intrinsics row for all frames, 3x4 matrices, and a "size" [height, width] that rescales per axis
    data = {"intrinsics": [25.0, 20.0, 16.0, 12.0], "c2w": c2w[:, :3].tolist(), "size": [24, 32]}
    (tmp_path / "b.json").write_text(json.dumps(data))
    K, rel = read_pose_file(tmp_path / "b.json", 48, 96)
    assert K.shape == (3, 4) and K[1].tolist() == [75.0, 40.0, 48.0, 24.0]
    assert torch.allclose(rel.double(), relative_poses(c2w), atol=1e-6)


def test_malformed_line_names_file_and_line(tmp_path):
    good = ASSET_PREFIX + "1 0 0 0 0 1 0 0 0 0 1 0"
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(["https://www.youtube.com/watch?v=x", good, good, good[:-2]]) + "\n")
    with pytest.raises(ValueError, match=r"bad\.txt:4: expected 19 numbers.*got 18"):
        read_pose_file(path, 32, 32)
    path.write_text("\n".join(["", good, good.replace(" 1 0 0 0 0", " 1 0 abc 0 0", 1)]) + "\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: 'abc' is not a number"):
        read_pose_file(path, 32, 32)
    (tmp_path / "bad.json").write_text('{"intrinsics": [[1, 1, 1, 1]]}')
    with pytest.raises(ValueError, match=r"bad\.json.*'c2w'"):
        read_pose_file(tmp_path / "bad.json", 32, 32)


def test_non_finite_values_are_rejected(tmp_path):
    line = ASSET_PREFIX + "1 0 0 {} 0 1 0 0 0 0 1 0"
    (tmp_path / "nan.txt").write_text("\n" + line.format(0) + "\n" + line.format("nan") + "\n")
    with pytest.raises(ValueError, match=r"nan\.txt:3: non-finite"):
        read_pose_file(tmp_path / "nan.txt", 32, 32)
    (tmp_path / "inf.json").write_text('{"intrinsics": [1, 1, 1, 1], "c2w": [[[1,0,0,Infinity],[0,1,0,0],[0,0,1,0]]]}')
    with pytest.raises(ValueError, match="non-finite"):
        read_pose_file(tmp_path / "inf.json", 32, 32)
    K, c2w = camera_preset("pan-left", 5)
    c2w[2, 0, 3] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        camera_condition((K, c2w), 5, 16, 16)


def test_a_pose_on_line_1_warns_that_it_is_skipped(tmp_path):
    path = tmp_path / "noheader.txt"
    path.write_text("".join(ASSET_PREFIX + " ".join(map(repr, r)) + "\n" for r in pan_left_rows(3)))
    with pytest.warns(UserWarning, match="line 1 looks like a pose"):
        K, _ = read_pose_file(path, 32, 32)
    assert len(K) == 2


# ----------------------------------------------------------------------------------------------
# Resampling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [(0, 0, 1), (1, -2, 0.5)])
def test_slerp_follows_the_analytic_rotation(axis):
    a, n, m = 2.4, 5, 17  # 2.4 rad over 4 steps: 34 degrees between keyframes
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    for k in range(n):
        c2w[k, :3, :3] = torch.tensor(rotation(axis, a * k / (n - 1)))
        c2w[k, :3, 3] = torch.tensor([k, 2.0 * k, -k])
    K = torch.tensor([[10.0, 10.0, 5.0, 5.0]]) + torch.arange(n, dtype=torch.float32)[:, None] * 4
    out, K_out = resample_poses(c2w, m, K)
    assert out.shape == (m, 4, 4) and out.dtype == torch.float64 and K_out.shape == (m, 4)
    for s in range(m):
        t = s / (m - 1)
        assert torch.allclose(out[s, :3, :3], torch.tensor(rotation(axis, a * t)), atol=1e-9), s
        assert out[s, :3, 3].tolist() == pytest.approx([4 * t, 8 * t, -4 * t], abs=1e-9)
        assert K_out[s].tolist() == pytest.approx([10 + 16 * t, 10 + 16 * t, 5 + 16 * t, 5 + 16 * t], abs=1e-4)


def test_slerp_takes_the_short_arc():
    c2w = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    c2w[0, :3, :3] = torch.tensor(rotation((0, 0, 1), math.radians(170)))
    c2w[1, :3, :3] = torch.tensor(rotation((0, 0, 1), math.radians(-170)))
    out, none = resample_poses(c2w, 3)
    assert none is None
    assert torch.allclose(out[1, :3, :3], torch.tensor(rotation((0, 0, 1), math.pi)), atol=1e-9)


def test_downsampling_keeps_every_fourth_pose():
    K, c2w = camera_preset("roll-ccw", 81)
    out, K_out = resample_poses(c2w, 21, K)
    assert torch.allclose(out, c2w[::4], atol=1e-6) and torch.allclose(K_out, K[::4])


# ----------------------------------------------------------------------------------------------
# camera_condition
# ----------------------------------------------------------------------------------------------


def test_camera_condition_accepts_preset_path_and_pair(tmp_path):
    K, c2w = camera_preset("pan-right-down", 9, height=16, width=24)
    expected = pack_camera(plucker_rays(K, c2w, 16, 24))
    write_pose_file(tmp_path / "p.txt", K, c2w, 16, 24)
    world = random_poses(1, seed=5)[0].float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_name = camera_condition("pan-right-down", 9, 16, 24)
        by_path = camera_condition(tmp_path / "p.txt", 9, 16, 24)
        by_pair = camera_condition((K, world @ c2w), 9, 16, 24)  # another world frame: made relative to frame 0
    assert by_name.shape == (24, 3, 16, 24) and torch.equal(by_name, expected)
    assert torch.allclose(by_path, expected, atol=1e-5) and torch.allclose(by_pair, expected, atol=1e-5)


@pytest.mark.parametrize("poses", [81, 5])
def test_camera_condition_resamples_with_one_warning(tmp_path, poses):
    path = asset_file(tmp_path, "Pan_Left", pan_left_rows(poses))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = camera_condition(str(path), 9, 16, 24)
    assert len(caught) == 1 and f"{poses} poses for 9 frames" in str(caught[0].message)
    assert out.shape == (24, 3, 16, 24)
    K, c2w = read_pose_file(path, 16, 24)
    c2w, K = resample_poses(c2w, 9, K)
    assert torch.allclose(out, pack_camera(plucker_rays(K, c2w, 16, 24)), atol=1e-6)


def test_camera_condition_rejects_bad_frame_counts():
    with pytest.raises(ValueError, match=r"1 \+ 4k.*got 8.*5, 9"):
        camera_condition("static", 8, 16, 16)
