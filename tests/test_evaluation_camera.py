"""The camera evaluation: the similarity fit and its decomposition against poses projected by hand, the estimator
on rendered shapes-world clips against their recorded poses, CamI2V's scores on hand-computed trajectories, and a
run of ``run_camera_eval`` / ``videogen eval --task camera`` on a tiny camera pipeline."""

import json
import math

import numpy as np
import pytest
import torch

from videogen.evaluation.camera import (
    DIRECTIONS, EVAL_MOTIONS, apparent_poses, camera_errors, direction_correct, estimate_poses, final_motion,
    fit_similarity, ground_truth, pose_from_similarity, run_camera_eval,
)


def project(rel_c2w: np.ndarray, focal: float, centre, points) -> np.ndarray:
    """Pixels of plane points ``(X, Y)`` at depth 1 in camera 0's frame, seen by the camera ``rel_c2w``."""
    w2c = np.linalg.inv(rel_c2w)
    world = np.concatenate([points, np.ones((len(points), 1))], 1)
    cam = world @ w2c[:3, :3].T + w2c[:3, 3]
    return focal * cam[:, :2] / cam[:, 2:] + np.asarray(centre)


def pose(x, y, forward, roll_degrees):
    c2w = np.eye(4)
    a = math.radians(roll_degrees)
    c2w[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    c2w[:3, 3] = (x, y, forward)
    return c2w


def test_fit_similarity_recovers_a_known_one():
    src = np.array([[3.0, -1.0], [-4.0, 2.5], [1.0, 6.0], [0.5, 0.2]])
    s, theta, tau = 1.3, math.radians(-17.0), np.array([2.0, -5.5])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    got = fit_similarity(src, src @ rot.T * s + tau)
    assert np.allclose([got[0], got[1]], [s, theta]) and np.allclose(got[2], tau)
    one = fit_similarity(src[:1], src[:1] + [1.0, 2.0], scale=1.5)
    assert one[0] == 1.5 and one[1] == 0.0 and np.allclose(one[0] * src[0] + one[2], src[0] + [1.0, 2.0])


@pytest.mark.parametrize("truth", [(0.2, -0.1, 0.0, 0.0), (0.0, 0.0, 0.3, 0.0), (0.0, 0.0, 0.0, 25.0),
                                   (-0.15, 0.05, -0.4, -12.0)])
def test_pose_from_similarity_inverts_the_projection(truth):
    focal, centre = 64.0, (32.0, 32.0)
    rel = pose(*truth)
    plane = np.array([[-0.2, -0.1], [0.25, 0.05], [0.0, 0.3]])
    before, after = project(np.eye(4), focal, centre, plane), project(rel, focal, centre, plane)
    got = pose_from_similarity(*fit_similarity(before - centre, after - centre), focal)
    assert np.allclose(got, rel, atol=1e-9)


@pytest.mark.parametrize("motion", EVAL_MOTIONS)
def test_estimator_on_rendered_clips(motion):
    frames, intrinsics, c2w = ground_truth(DEFAULT_PROMPT, 0, motion, 17, 64, 64)
    poses, lost = estimate_poses(frames, intrinsics[0])
    truth = apparent_poses(intrinsics, c2w)
    assert lost == 0 and direction_correct(poses, motion)
    err = np.abs(poses - truth)
    # Two objects fix a pan, dolly, zoom or roll to 0.03 plane-depth units; an orbit's tilt only loosely.
    tolerance = 0.1 if motion.startswith("orbit") else 0.03
    assert err[:, :3, 3].max() < tolerance and err[:, :3, :3].max() < 2 * tolerance, err.max()
    assert direction_correct(truth, motion)
    errors = camera_errors(poses, truth)
    # Per moved frame (16): radians, and normalised translation.
    rot, trans = (0.1, 0.2) if motion.startswith("orbit") else (0.0125, 0.1)
    assert errors["rot_err"] < 16 * rot and errors["trans_err"] < 16 * trans, errors


DEFAULT_PROMPT = "a red circle and a blue square staying still on a gray background"


def test_apparent_poses_of_a_zoom():
    k = np.array([[64.0, 64.0, 32.0, 32.0], [80.0, 80.0, 32.0, 32.0]])
    rel = apparent_poses(k, np.stack([np.eye(4), np.eye(4)]))
    assert math.isclose(rel[1, 2, 3], 1 - 64 / 80) and np.allclose(rel[:, :3, :3], np.eye(3))


def test_cami2v_scores_by_hand():
    truth = np.stack([np.eye(4), pose(2.0, 0.0, 0.0, 0.0), pose(4.0, 0.0, 0.0, 0.0)])
    alpha = math.radians(10.0)
    generated = np.stack([np.eye(4), pose(0.5, 0.0, 0.0, 10.0), pose(1.0, 0.5, 0.0, 0.0)])
    got = camera_errors(generated, truth)
    # Normalised per trajectory: truth t = (0.5, 0, 0), (1, 0, 0); generated (0.5, 0, 0)/|(1, .5)|, (1, .5)/|(1, .5)|.
    n = math.hypot(1.0, 0.5)
    t_gen = np.array([[0.5 / n, 0, 0], [1 / n, 0.5 / n, 0]])
    t_gt = np.array([[0.5, 0, 0], [1.0, 0, 0]])
    trans = sum(np.linalg.norm(a - b) for a, b in zip(t_gt, t_gen))
    rot_frob = math.sqrt(4 - 4 * math.cos(alpha))  # ||R_z(alpha) - I||_F
    cammc = math.sqrt(rot_frob**2 + np.sum((t_gen[0] - t_gt[0]) ** 2)) + np.linalg.norm(t_gen[1] - t_gt[1])
    assert math.isclose(got["rot_err"], alpha, rel_tol=1e-9)
    assert math.isclose(got["trans_err"], trans, rel_tol=1e-6) and math.isclose(got["cam_mc"], cammc, rel_tol=1e-6)
    assert camera_errors(truth, truth) == dict(rot_err=0.0, trans_err=0.0, cam_mc=0.0)


def test_direction_thresholds_and_final_motion():
    still = np.stack([np.eye(4)] * 3)
    assert not any(direction_correct(still, m) for m in DIRECTIONS)
    rolled = np.stack([np.eye(4), pose(0, 0, 0, 5.0)])
    assert math.isclose(final_motion(rolled)["roll"], 5.0) and direction_correct(rolled, "roll_clockwise")
    assert not direction_correct(rolled, "roll_counterclockwise")


def test_run_camera_eval_and_the_cli(tmp_path):
    from _tiny import tiny_pipeline_parts
    from pipelines import CameraControlPipeline
    from test_camera_adapter import trained_adapter

    _, parts = tiny_pipeline_parts(tmp_path / "parts")
    pipe = CameraControlPipeline(**parts, camera_adapter=trained_adapter(parts["transformer"]))
    pipe.set_progress_bar_config(disable=True)
    result = run_camera_eval(pipe, [DEFAULT_PROMPT], [0], ("pan_left", "roll_clockwise"),
                             settings=({}, {"camera_guidance_scale": 2.0, "camera_null": "zeros"}), height=64,
                             width=64, num_frames=9, steps=2, max_sequence_length=16, out_dir=tmp_path / "out",
                             progress=False)
    summary = result["summary"]
    assert list(summary) == ["ceiling", "defaults", "camera_guidance_scale=2.0, camera_null=zeros",
                             "floor (camera off)"]
    assert summary["ceiling"]["direction_accuracy"] == 1.0 and summary["ceiling"]["rot_err"] < 0.05
    assert set(summary["defaults"]["per_motion"]) == {"pan_left", "roll_clockwise"}
    # The scene kept: the text-to-video eval's colour / shape / count judges, on every run; the rendered truth
    # passes the count (two objects named, two drawn).
    from videogen.evaluation.metrics import score_clip

    video = ground_truth(DEFAULT_PROMPT, 0, "pan_left", 9, 64, 64)[0]
    assert summary["ceiling"]["count_accuracy"] == 100.0 == 100.0 * score_clip(video, DEFAULT_PROMPT)["count_ok"]
    records = result["records"]["defaults"]
    judged = [r["count_ok"] for r in records if r["count_ok"] is not None]
    assert summary["defaults"]["count_accuracy"] == (100.0 * sum(judged) / len(judged) if judged else None)
    saved = json.loads((tmp_path / "out" / "camera_eval.json").read_text())
    assert len(saved["records"]["floor (camera off)"]) == 2
    # The command line: the same evaluation from a saved pipeline, with a sweep.
    pipe.save_pretrained(tmp_path / "cam")
    from test_training import run_cli

    proc = run_cli("eval", "--task", "camera", "--model", str(tmp_path / "cam"), "--camera-motions", "pan_up",
                   "--prompts", "camera", "--limit", "1", "--seeds", "1", "--steps", "2", "--num-frames", "9",
                   "--max-sequence-length", "16", "--camera-scales", "0,3", "--camera-windows", "0:1,0:0.5",
                   "--out", str(tmp_path / "cli"), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "cli" / "camera_eval.json").read_text())["summary"]
    assert len(runs) == 1 + 4 + 1 and "RotErr" in proc.stdout
    torch.manual_seed(0)
