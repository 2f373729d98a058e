"""Shapes-world camera clips: zooms and orbits (added), objects lying on the plane, per-frame K and c2w in the
metadata, rendered pixels against poses projected by hand, and the sampler options that keep older seeds' clips."""

import json
import math

import numpy as np
import pytest

from videogen.data.synthetic import BackgroundSpec, ClipSpec, ObjectSpec, make_clip, render_clip, write_dataset
from videogen.data.synthetic_geometry import ALL_CAMERA_MOTIONS, CAMERA_MOTIONS, ORBIT_DEGREES, ZOOM


def measured_centroid(frame: np.ndarray) -> np.ndarray:
    """Area centroid (pixel centres at +0.5) of the red object on a grey background, from the pixels alone."""
    f = frame.astype(float)
    alpha = (f.max(-1) - f.min(-1)) / 255.0
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    return np.array([(alpha * (xs + 0.5)).sum(), (alpha * (ys + 0.5)).sum()]) / alpha.sum()


def project(c2w: np.ndarray, k, point) -> np.ndarray:
    """Pixel of the world point ``point`` seen by camera ``c2w`` with intrinsics ``k``, written out."""
    w2c = np.linalg.inv(c2w)
    x, y, z = w2c[:3, :3] @ np.asarray(point, dtype=float) + w2c[:3, 3]
    return np.array([k[0] * x / z + k[2], k[1] * y / z + k[3]])


def clip(camera, start=(32.0, 32.0), size="small"):
    obj = ObjectSpec(shape="square", color="red", size=size, motion="still", start=start)
    return render_clip(ClipSpec((obj,), BackgroundSpec("solid", "gray"), camera, 9, 64, 64))


@pytest.mark.parametrize("camera", ["zoom_in", "zoom_out"])
def test_zoom_changes_the_focal_length_only(camera):
    frames, meta = clip(camera, start=(40.0, 36.0))
    k = np.array(meta["camera"]["intrinsics"])
    assert np.allclose(k[0], [64, 64, 32, 32]) and np.allclose(k[-1, :2], 64 * ZOOM[camera])
    reference = np.eye(4)
    reference[2, 3] = -1.0
    assert np.allclose(np.array(meta["camera"]["c2w"]), reference)  # the reference pose every frame
    # The object's image offset from the centre scales with the focal length: (p - c) * f_k / f_0 + c.
    track = np.array(meta["objects"][0]["trajectory"])
    expected = (np.array([40.0, 36.0]) - 32.0) * (k[:, :1] / 64.0) + 32.0
    assert np.abs(track - expected).max() < 1e-9
    assert np.abs(measured_centroid(frames[-1]) - track[-1]).max() < 0.15


@pytest.mark.parametrize("camera", ["orbit_left", "orbit_right"])
def test_orbit_circles_the_pivot_and_renders_the_recorded_poses(camera):
    frames, meta = clip(camera, start=(28.0, 30.0))
    c2w = np.array(meta["camera"]["c2w"])
    k = meta["camera"]["intrinsics"][0]
    centres = c2w[:, :3, 3]
    assert np.allclose(np.linalg.norm(centres, axis=1), 1.0)  # distance 1 from the pivot (0, 0, 0)
    assert np.allclose([project(c, k, (0, 0, 0)) for c in c2w], 32.0)  # the pivot stays at the image centre
    turn = math.degrees(math.atan2(-centres[-1, 0], -centres[-1, 2]))
    assert math.isclose(abs(turn), ORBIT_DEGREES) and (turn > 0) == (camera == "orbit_left")  # left: x < 0
    assert (centres[-1, 0] < 0) == (camera == "orbit_left")
    # The object lies on the plane z = 0: its recorded plane point, projected by hand, is where the pixels put it.
    plane = np.array(meta["objects"][0]["plane_trajectory"])
    assert np.allclose(plane, plane[0])  # still on the plane
    for f in (0, 4, 8):
        seen = project(c2w[f], k, (*plane[f], 0.0))
        assert np.abs(seen - meta["objects"][0]["trajectory"][f]).max() < 1e-9
        assert np.abs(measured_centroid(frames[f]) - seen).max() < 0.25  # projected centroid vs image centroid


def test_camera_clips_keep_objects_still_on_the_plane_and_old_seeds():
    for index in range(6):
        spec, _ = make_clip(index, seed=3, camera_fraction=1.0, camera_motions=ALL_CAMERA_MOTIONS,
                            camera_texture_fraction=0.0)
        assert spec.camera in ALL_CAMERA_MOTIONS and spec.background.kind == "solid"
        assert all(o.motion == "still" for o in spec.objects)
    # The defaults draw exactly what they drew before zooms, orbits and solid camera clips existed.
    for index in range(20):
        old, _ = make_clip(index, seed=0)
        assert old.camera in ("static",) + CAMERA_MOTIONS
        again, _ = make_clip(index, seed=0, camera_motions=CAMERA_MOTIONS, camera_texture_fraction=1.0)
        assert again == old


def test_synth_cli_writes_zoom_and_orbit_clips(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "videogen.cli", "synth", "--out", str(tmp_path / "w"), "--num", "6",
                           "--frames", "5", "--height", "32", "--width", "32", "--camera-fraction", "1",
                           "--camera-motions", "zoom_in,orbit_left", "--camera-texture-fraction", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    world = json.loads((tmp_path / "w" / "world.json").read_text())
    assert set(world["counts"]["camera"]) <= {"zoom_in", "orbit_left"} and world["camera_texture_fraction"] == 0.5
    meta = json.loads((tmp_path / "w" / "clips" / "00000.json").read_text())
    assert len(meta["camera"]["intrinsics"]) == 5 and len(meta["camera"]["c2w"]) == 5
    captions = [(tmp_path / "w" / "clips" / f"{i:05d}.txt").read_text() for i in range(6)]
    assert any("zooms in" in c or "orbits left" in c for c in captions)
    with pytest.raises(ValueError, match="camera_motions must be"):
        make_clip(0, seed=0, camera_motions=("spin",))
    write_dataset(tmp_path / "x", 1, frames=5, height=32, width=32, progress=False)  # defaults still work
