"""The trajectory evaluation: the held-out paths (kinds, unseen speeds and directions, in frame, deterministic), the
ground truth drawn on its tracks, TrajError against a hand computation on rendered clips (the true track ~0 px, a
shifted one its shift, a frame without the object the penalty), and a run of ``run_trajectory_eval`` /
``videogen eval --task trajectory`` on a tiny trajectory pipeline."""

import json
import math

import numpy as np
import pytest
import torch

from videogen.data.synthetic import BACKGROUNDS, SPEEDS, ObjectSpec
from videogen.evaluation.trajectory import (
    EVAL_SPEEDS, KINDS, NOT_FOUND_PENALTY, arc_path, format_trajectory_table, ground_truth, held_out_cases,
    make_case, off_axis, path_length, polyline_path, render_tracks, run_trajectory_eval, score_clip_tracks,
    summarize_trajectory, track_boxes, trajectory_errors, zigzag_vertices,
)

H = W = 64
DIAGONAL = math.hypot(H, W)


@pytest.fixture(scope="module")
def cases():
    return held_out_cases(12, seed=0, num_frames=17, height=H, width=W)


def hand_centroid(frame: np.ndarray, background) -> tuple[float, float]:
    """The coverage-weighted centroid of every non-background pixel, by hand (one object on a solid background)."""
    f = frame.astype(float)
    alpha = (f.max(-1) - f.min(-1)) / 255.0  # grey background: chroma = coverage * 255
    assert np.allclose(f[alpha == 0], background)
    ys, xs = np.mgrid[0:frame.shape[0], 0:frame.shape[1]] + 0.5
    return float((alpha * xs).sum() / alpha.sum()), float((alpha * ys).sum() / alpha.sum())


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------


def test_path_pieces_by_hand():
    track = polyline_path([[0, 0], [4, 0], [4, 4]], 5)  # 8 px at 2 px per frame
    assert np.allclose(track, [[0, 0], [2, 0], [4, 0], [4, 2], [4, 4]])
    v = zigzag_vertices(0.0, [math.pi / 2], [3.0, 2.0])
    assert np.allclose(v, [[0, 0], [3, 0], [3, 2]])
    arc = arc_path(0.0, math.pi, math.pi * 5, 3)  # half a circle of radius 5 from angle 0: (5,0) -> (0,5) -> (-5,0)
    assert np.allclose(arc, [[0, 0], [-5, 5], [-10, 0]])
    assert off_axis(math.radians(45)) and off_axis(math.radians(200)) and not off_axis(math.radians(92))


def test_held_out_cases_kinds_speeds_and_counts(cases):
    assert [c.kind for c in cases] == list(KINDS) * 4
    assert {c.speed for c in cases} == set(EVAL_SPEEDS) and [len(c.objects) for c in cases] == [1] * 6 + [2] * 6
    assert min(EVAL_SPEEDS.values()) < min(SPEEDS.values()) and max(EVAL_SPEEDS.values()) > max(SPEEDS.values())
    for c in cases:
        assert c.tracks.shape == (len(c.objects), 17, 2) and c.background in BACKGROUNDS
        assert len({o.color for o in c.objects}) == len(c.objects)
        for track in c.tracks:
            length = EVAL_SPEEDS[c.speed] * W
            # Lines exactly; arcs and zigzags sampled at 17 frames cut their curves and corners a little.
            assert length * (0.999 if c.kind == "line" else 0.9) <= path_length(track) <= length * 1.001
            steps = np.linalg.norm(np.diff(track, axis=0), axis=1)
            if c.kind == "line":  # constant speed in an off-axis direction: never training's left/right/up/down
                assert np.allclose(steps, steps[0]) and off_axis(math.atan2(*(track[-1] - track[0])[::-1]))
            elif c.kind == "arc":  # constant speed and turning the same way by the same angle every frame
                assert np.allclose(steps, steps[0])
                d = np.diff(track, axis=0)
                turns = np.arctan2(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0], (d[:-1] * d[1:]).sum(1))
                assert np.allclose(turns, turns[0]) and abs(turns.sum()) > math.radians(80)
            else:  # sharp turns: at least one step turns by more than 45 degrees
                d = np.diff(track, axis=0)
                cos = (d[:-1] * d[1:]).sum(1) / (np.linalg.norm(d[:-1], axis=1) * np.linalg.norm(d[1:], axis=1))
                assert cos.min() < math.cos(math.radians(45))
        boxes = [track_boxes(o, t, H, W) for o, t in zip(c.objects, c.tracks)]
        for b in boxes:  # at least MARGIN (1 px) inside the frame
            assert b[:, :2].min() >= 1.0 - 1e-9 and b[:, 2].max() <= W - 1 + 1e-9 and b[:, 3].max() <= H - 1 + 1e-9
        if len(boxes) == 2:
            a, b = boxes
            apart_x = (a[:, 2] + 2 <= b[:, 0]) | (b[:, 2] + 2 <= a[:, 0])  # GAP (2 px) between the boxes
            apart_y = (a[:, 3] + 2 <= b[:, 1]) | (b[:, 3] + 2 <= a[:, 1])
            assert (apart_x | apart_y).all()
    one, two = cases[0].prompt, cases[6].prompt
    o = cases[6].objects
    assert one == f"a {cases[0].objects[0].color} {cases[0].objects[0].shape} moving along a curved path on a " \
                  f"{cases[0].background} background"
    assert two.startswith(f"a {o[0].color} {o[0].shape} moving along a curved path and a {o[1].color} {o[1].shape}")


def test_held_out_cases_are_deterministic(cases):
    again = held_out_cases(12, seed=0)
    assert all(a == b and np.array_equal(a.tracks, b.tracks) for a, b in zip(cases, again))
    assert make_case(7, seed=0) == cases[7] and np.array_equal(make_case(7, seed=0).tracks, cases[7].tracks)
    other = held_out_cases(3, seed=1)
    assert not any(np.allclose(a.tracks, b.tracks) for a, b in zip(cases, other))
    json.dumps([c.to_dict() for c in cases])
    with pytest.raises(ValueError, match="num_cases"):
        held_out_cases(0)


# ----------------------------------------------------------------------------------------------
# Ground truth and TrajError
# ----------------------------------------------------------------------------------------------


def test_ground_truth_draws_the_tracks(cases):
    for c in cases[:6]:  # one object: its centroid, by hand, is the requested point
        frames = ground_truth(c, H, W)
        got = np.array([hand_centroid(f, BACKGROUNDS[c.background]) for f in frames])
        assert np.abs(got - c.tracks[0]).max() < 0.1
    with pytest.raises(ValueError, match="leaves"):
        render_tracks([ObjectSpec("circle", "red")], np.full((1, 3, 2), 2.0), "gray", H, W)


def test_trajectory_errors_by_hand():
    tracks = np.zeros((2, 3, 2))
    centroids = np.array([[[3, 4], [0, 1], [np.nan, np.nan]], [[0, 0], [0, 0], [6, 8]]], dtype=float)
    got = trajectory_errors(centroids, tracks, penalty=100.0)
    assert math.isclose(got["traj_err"], (5 + 1 + 100 + 0 + 0 + 10) / 6)
    assert math.isclose(got["endpoint_err"], (100 + 10) / 2) and math.isclose(got["found"], 5 / 6)
    assert math.isclose(got["traj_err_found"], 16 / 5) and np.allclose(got["per_object"], [106 / 3, 10 / 3])
    assert trajectory_errors(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2)), 7.0)["traj_err_found"] is None


def test_trajerr_on_rendered_clips(cases):
    c = cases[3]  # one object, a fast diagonal line
    frames = ground_truth(c, H, W)
    truth = score_clip_tracks(frames, c.objects, c.tracks)
    assert truth["traj_err"] < 0.1 and truth["endpoint_err"] < 0.1 and truth["found"] == 1.0
    assert truth["color_ok"] and truth["shape_ok"] and truth["count_ok"]
    # Against a track shifted by (3, 4) px: the error is the shift, as the hand-measured centroids give it.
    shifted = c.tracks + np.array([3.0, 4.0])
    hand = np.array([hand_centroid(f, BACKGROUNDS[c.background]) for f in frames])
    expected = np.linalg.norm(hand - shifted[0], axis=1)
    got = score_clip_tracks(frames, c.objects, shifted)
    assert abs(got["traj_err"] - 5.0) < 0.1 and math.isclose(got["traj_err"], expected.mean(), abs_tol=0.01)
    # The object gone from frame 5: that frame counts the frame diagonal.
    frames = frames.copy()
    frames[5] = BACKGROUNDS[c.background]
    lost = score_clip_tracks(frames, c.objects, c.tracks)
    hand_lost = (np.delete(np.linalg.norm(hand - c.tracks[0], axis=1), 5).sum() + NOT_FOUND_PENALTY * DIAGONAL) / 17
    assert math.isclose(lost["traj_err"], hand_lost, abs_tol=0.01) and math.isclose(lost["found"], 16 / 17)
    # Two objects: each track is scored against the object of its colour; swapped tracks are far off.
    two = cases[9]
    frames = ground_truth(two, H, W)
    assert score_clip_tracks(frames, two.objects, two.tracks)["traj_err"] < 0.1
    swapped = score_clip_tracks(frames, two.objects, two.tracks[::-1])
    hand_swap = np.linalg.norm(two.tracks[::-1] - two.tracks, axis=-1).mean()
    assert math.isclose(swapped["traj_err"], hand_swap, abs_tol=0.1)
    # A wrong shape and a missing colour are kept.
    wrong = score_clip_tracks(ground_truth(c, H, W), (ObjectSpec("circle" if c.objects[0].shape != "circle"
                                                                 else "square", c.objects[0].color),), c.tracks)
    assert not wrong["shape_ok"] and wrong["color_ok"]


def test_summary_and_table():
    records = [dict(kind="line", speed="dash", num_objects=1, traj_err=2.0, endpoint_err=3.0, found=1.0,
                    traj_err_found=2.0, color_ok=True, shape_ok=False, count_ok=True),
               dict(kind="arc", speed="crawl", num_objects=2, traj_err=4.0, endpoint_err=5.0, found=0.5,
                    traj_err_found=None, color_ok=False, shape_ok=False, count_ok=True)]
    s = summarize_trajectory(records)
    assert s["traj_err"] == 3.0 and s["traj_err_found"] == 2.0 and s["color_accuracy"] == 50.0
    assert s["per_kind"] == {"line": 2.0, "arc": 4.0} and s["per_num_objects"] == {"1": 2.0, "2": 4.0}
    table = format_trajectory_table({"model": s, "floor (adapter off)": dict(s, traj_err=12.0)})
    assert "TrajErr" in table and "0.250" in table


# ----------------------------------------------------------------------------------------------
# The evaluation on a tiny pipeline, and the command line
# ----------------------------------------------------------------------------------------------


def test_run_trajectory_eval_and_the_cli(tmp_path):
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline, TrajectoryControlPipeline
    from test_trajectory_adapter import trained_adapter
    from test_training import run_cli

    _, parts = tiny_pipeline_parts(tmp_path / "parts")
    pipe = TrajectoryControlPipeline(**parts, trajectory_adapter=trained_adapter(parts["transformer"]))
    pipe.set_progress_bar_config(disable=True)
    chosen = [make_case(0, num_frames=9), make_case(10, num_frames=9)]
    result = run_trajectory_eval(pipe, chosen, [0], 64, 64, 9, steps=2, max_sequence_length=16,
                                 out_dir=tmp_path / "out", progress=False)
    summary = result["summary"]
    assert list(summary) == ["ceiling", "model", "floor (adapter off)"]
    assert summary["ceiling"]["traj_err"] < 0.1 and summary["ceiling"]["count_accuracy"] == 100.0
    saved = json.loads((tmp_path / "out" / "trajectory_eval.json").read_text())
    assert len(saved["records"]["model"]) == 2 and len(saved["config"]["cases"]) == 2
    assert saved["records"]["floor (adapter off)"][1]["num_objects"] == 2
    # The adapter off is the base model: the floor's clip is the base pipeline's.
    base = TextToVideoPipeline(**parts)
    base.set_progress_bar_config(disable=True)
    kw = dict(height=64, width=64, num_frames=9, num_inference_steps=2, max_sequence_length=16, output_type="np")
    off = pipe(chosen[0].prompt, trajectory=chosen[0].tracks, trajectory_strength=0.0,
               generator=torch.Generator().manual_seed(0), **kw).frames[0]
    assert np.allclose(off, base(chosen[0].prompt, generator=torch.Generator().manual_seed(0), **kw).frames[0],
                       atol=1e-5)
    # The command line, on an adapter-only directory over a saved base; a model without an adapter is an error.
    base.save_pretrained(tmp_path / "base")
    pipe.save_adapter(tmp_path / "traj", base=tmp_path / "base")
    small = ["--num-cases", "1", "--seeds", "1", "--steps", "2", "--num-frames", "9", "--max-sequence-length", "16",
             "--no-progress"]
    proc = run_cli("eval", "--task", "trajectory", "--model", str(tmp_path / "traj"), *small,
                   "--out", str(tmp_path / "cli"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "cli" / "trajectory_eval.json").read_text())
    assert list(saved["summary"]) == ["ceiling", "model", "floor (adapter off)"] and "TrajErr" in proc.stdout
    assert saved["config"]["model"] == str(tmp_path / "traj") and saved["config"]["steps"] == 2
    proc = run_cli("eval", "--task", "trajectory", "--model", str(tmp_path / "base"), *small)
    assert proc.returncode != 0 and "needs a trajectory-control model" in proc.stderr
