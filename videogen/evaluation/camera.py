"""``videogen eval --task camera``: camera poses estimated from generated shapes-world frames, scored as CamI2V does.

The shapes world films a plane from a known camera, so no structure from motion is needed. The estimator tracks
the objects lying still on the plane (one per colour, ``metrics.measure_components``) and fits, frame 0 to frame
k, the image similarity ``u_k - c = s Rot(-theta) (u_0 - c) + tau`` (``c`` the principal point; least squares
over the objects seen in both frames, Umeyama; one object: the translation, with the scale from its area). For a
camera that does not tilt over a plane at depth 1 (the shapes world's reference distance) with the known, constant
intrinsics, that similarity is exactly the camera motion: ``d = 1 / s`` (so the camera moved ``1 - d`` forward),
roll ``theta``, centre ``(x, y) = -(d / f) Rot(theta) tau`` (``pose_from_similarity``). From there a 6-DOF pose
(centre, roll, and the tilts an orbit adds) is refined so that the plane homography it induces maps the objects'
centroids and their area scales (``fit_plane_pose``, Levenberg-Marquardt, a weak prior on the tilts). A zoom
(focal length) reads as the equivalent forward motion (``apparent_poses``).

Scores (CamI2V's ``evaluation/glomap_evaluation.py``): poses relative to frame 0, translations divided per
trajectory by their largest norm (at least 0.05: see ``normalised_translations``); RotErr = sum_i arccos((tr(R_gen^T R_gt) - 1) / 2) in radians;
TransErr = sum_i ||t_gt - t_gen||; CamMC = sum_i ||[R|t]_gen - [R|t]_gt||_F; plus, per camera motion, the share of
clips moving the named way (``direction_correct``). The same estimator runs on rendered ground truth (the
ceiling: its own error) and on the model with the camera off (strength 0: the floor).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from videogen.data.synthetic import (
    boxes_inside, camera_setup, image_geometry, object_track, render_clip,
)
from videogen.evaluation.metrics import measure_components, score_clip, summarize

EVAL_MOTIONS = ("pan_left", "pan_right", "pan_up", "pan_down", "dolly_in", "dolly_out", "roll_clockwise",
                "roll_counterclockwise", "zoom_in", "zoom_out", "orbit_left", "orbit_right")
# The axis and sign a motion moves the camera along (relative to frame 0, OpenCV axes): x right, y down, z forward,
# roll about z (x towards y). A zoom's apparent motion is forward (back), an orbit's sideways.
DIRECTIONS = {"pan_left": ("x", -1), "pan_right": ("x", 1), "pan_up": ("y", -1), "pan_down": ("y", 1),
              "dolly_in": ("z", 1), "dolly_out": ("z", -1), "zoom_in": ("z", 1), "zoom_out": ("z", -1),
              "roll_clockwise": ("roll", 1), "roll_counterclockwise": ("roll", -1), "orbit_left": ("x", -1),
              "orbit_right": ("x", 1)}
# Below these final-frame magnitudes a clip counts as not moving (plane-depth units; degrees for roll).
DIRECTION_THRESHOLDS = {"x": 0.02, "y": 0.02, "z": 0.02, "roll": 2.0}
DEFAULT_CAMERA_PROMPTS = ("a red circle and a blue square staying still on a gray background",
                          "a green triangle, a yellow circle and a magenta square staying still on a gray background")

# ----------------------------------------------------------------------------------------------
# Small pure functions: similarity fit, decomposition, scores
# ----------------------------------------------------------------------------------------------


def rotation_2d(theta: float) -> np.ndarray:
    """``[[cos, -sin], [sin, cos]]``."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def fit_similarity(src: np.ndarray, dst: np.ndarray, scale: float | None = None) -> tuple[float, float, np.ndarray]:
    """``(s, theta, tau)`` minimising ``sum ||dst - (s Rot(theta) src + tau)||^2`` over points ``[N, 2]`` (Umeyama;
    N = 1: ``theta = 0``, ``s = scale`` or 1, the translation exact)."""
    src, dst = np.asarray(src, dtype=float), np.asarray(dst, dtype=float)
    if len(src) == 1:
        s = 1.0 if scale is None else float(scale)
        return s, 0.0, dst[0] - s * src[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cross = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()
    dot = (a * b).sum()
    theta = math.atan2(cross, dot)
    s = math.hypot(cross, dot) / max((a * a).sum(), 1e-12)
    return s, theta, mu_d - s * rotation_2d(theta) @ mu_s


def pose_from_similarity(s: float, theta: float, tau: np.ndarray, focal: float) -> np.ndarray:
    """The relative camera-to-world pose ``[4, 4]`` (camera 0's axes) that moves a plane at depth 1 seen by a camera
    of focal length ``focal`` (pixels) by the image similarity ``u_k - c = s Rot(theta) (u_0 - c) + tau``: the
    camera rolled by ``-theta``, at depth ``d = 1 / s``, centre ``-(d / f) Rot(-theta) tau``."""
    d = 1.0 / s
    roll = -theta
    centre = -(d / focal) * rotation_2d(roll) @ np.asarray(tau, dtype=float)
    c2w = np.eye(4)
    c2w[:2, :2] = rotation_2d(roll)
    c2w[:3, 3] = (centre[0], centre[1], 1.0 - d)
    return c2w


def axis_rotation(axis: int, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about camera axis 0 (x), 1 (y) or 2 (z), right-handed."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def pose_of(params: np.ndarray) -> np.ndarray:
    """The relative c2w of ``(x, y, z, roll, yaw, pitch)``: centre ``(x, y, z)``, ``R = R_y(yaw) R_x(pitch) R_z(roll)``."""
    x, y, z, roll, yaw, pitch = params
    c2w = np.eye(4)
    c2w[:3, :3] = axis_rotation(1, yaw) @ axis_rotation(0, pitch) @ axis_rotation(2, roll)
    c2w[:3, 3] = (x, y, z)
    return c2w


def plane_homography_of(c2w: np.ndarray, focal: float) -> np.ndarray:
    """The homography from frame-0 pixels (relative to the principal point) to those of camera ``c2w`` (relative,
    camera 0's axes) for the plane at depth 1: ``K R^T [[1, 0, -x], [0, 1, -y], [0, 0, 1 - z]] K^-1``."""
    K = np.diag([focal, focal, 1.0])
    x, y, z = c2w[:3, 3]
    A = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0.0, 0.0, 1.0 - z]])
    return K @ c2w[:3, :3].T @ A @ np.linalg.inv(K)


def _map(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``[N, 2]`` through ``H`` with the perspective divide."""
    p = points @ H[:2, :2].T + H[:2, 2]
    return p / (points @ H[2, :2] + H[2, 2])[:, None]


def _local_scale(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``sqrt |det J|`` of ``H`` at ``points``: how much it scales lengths there (det J = det H / w^3)."""
    w = points @ H[2, :2] + H[2, 2]
    return np.sqrt(np.abs(np.linalg.det(H)) / np.abs(w) ** 3)


def fit_plane_pose(src: np.ndarray, dst: np.ndarray, scales: np.ndarray, focal: float, init: np.ndarray,
                   scale_weight: float = 64.0, tilt_prior: float = 2.0, iterations: int = 30) -> np.ndarray:
    """The 6-DOF relative pose (``pose_of`` parameters) whose plane homography best maps the objects' centroids
    ``src -> dst`` (``[N, 2]``, relative to the principal point) and their length scales ``scales`` (``sqrt`` of the
    area ratios), by Levenberg-Marquardt from ``init``; the tilts (yaw, pitch) are pulled towards 0 by a weak prior
    (``tilt_prior`` px per radian), which only decides when too few objects constrain them."""
    def residuals(q):
        H = plane_homography_of(pose_of(q), focal)
        r = [(_map(H, src) - dst).ravel(), scale_weight * (_local_scale(H, src) - scales), tilt_prior * q[4:6]]
        return np.concatenate(r)

    q, damping = np.asarray(init, dtype=float).copy(), 1e-3
    cost = float(np.sum(residuals(q) ** 2))
    for _ in range(iterations):
        r = residuals(q)
        J = np.stack([(residuals(q + e) - r) / 1e-6 for e in np.eye(6) * 1e-6], 1)
        A, g = J.T @ J, J.T @ r
        step = -np.linalg.solve(A + damping * np.diag(np.diag(A) + 1e-9), g)
        new_cost = float(np.sum(residuals(q + step) ** 2))
        if new_cost < cost:
            q, cost, damping = q + step, new_cost, damping * 0.3
            if np.abs(step).max() < 1e-10:
                break
        else:
            damping *= 10
    return q


def relative_to_first(c2w: np.ndarray) -> np.ndarray:
    """``inv(c2w[0]) @ c2w[i]`` for poses ``[F, 4, 4]``."""
    c2w = np.asarray(c2w, dtype=float)
    return np.linalg.inv(c2w[0]) @ c2w


def normalised_translations(c2w: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """The translations ``[F, 3]`` divided by the trajectory's largest norm, CamI2V's "rel" scale, but at least by
    ``floor`` (plane-depth units; CamI2V adds 1e-9): a rotation-only path's translation noise would otherwise be
    blown up to unit length."""
    t = np.asarray(c2w, dtype=float)[:, :3, 3]
    return t / max(float(np.linalg.norm(t, axis=1).max()), floor)


def apparent_poses(intrinsics: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """The poses relative to frame 0 that a constant frame-0 focal length sees for a (possibly zooming) camera
    over a plane at depth 1: a focal length ``f_k = z f_0`` looks like depth ``d / z``, so the centre's z becomes
    ``1 - d f_0 / f_k`` (x, y and the rotation are unchanged). Without a zoom they are just the relative poses."""
    rel = relative_to_first(c2w).copy()
    k = np.asarray(intrinsics, dtype=float)
    zoom = np.sqrt(k[:, 0] * k[:, 1]) / math.sqrt(k[0, 0] * k[0, 1])
    rel[:, 2, 3] = 1.0 - (1.0 - rel[:, 2, 3]) / zoom
    return rel


def camera_errors(generated: np.ndarray, truth: np.ndarray) -> dict:
    """CamI2V's RotErr (radians), TransErr and CamMC of two trajectories ``[F, 4, 4]`` (made relative to their
    frame 0 and scale-normalised here: ``normalised_translations``)."""
    gen, gt = relative_to_first(generated), relative_to_first(truth)
    cos = (np.einsum("fji,fji->f", gen[:, :3, :3], gt[:, :3, :3]) - 1) / 2  # tr(R_gen^T R_gt)
    rot = float(np.arccos(np.clip(cos, -1.0, 1.0)).sum())
    t_gen, t_gt = normalised_translations(gen), normalised_translations(gt)
    trans = float(np.linalg.norm(t_gt - t_gen, axis=1).sum())
    m_gen = np.concatenate([gen[:, :3, :3], t_gen[:, :, None]], -1)
    m_gt = np.concatenate([gt[:, :3, :3], t_gt[:, :, None]], -1)
    cammc = float(np.linalg.norm((m_gen - m_gt).reshape(len(gen), -1), axis=1).sum())
    return dict(rot_err=rot, trans_err=trans, cam_mc=cammc)


def final_motion(c2w: np.ndarray) -> dict:
    """The last frame's motion relative to frame 0: centre ``x, y, z`` and ``roll`` in degrees (x towards y)."""
    rel = relative_to_first(c2w)[-1]
    return dict(x=float(rel[0, 3]), y=float(rel[1, 3]), z=float(rel[2, 3]),
                roll=math.degrees(math.atan2(rel[1, 0], rel[0, 0])))


def direction_correct(c2w: np.ndarray, motion: str) -> bool:
    """Whether the trajectory moves along ``motion``'s axis in its direction, by more than the axis threshold."""
    axis, sign = DIRECTIONS[motion]
    return bool(sign * final_motion(c2w)[axis] > DIRECTION_THRESHOLDS[axis])


# ----------------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------------


def track_objects(frames: np.ndarray) -> list[dict]:
    """Per frame ``{colour: (centroid (x, y), area)}`` of the largest component of each colour."""
    out = []
    for frame in frames:
        seen = {}
        for obj in measure_components(frame):  # largest first: the first of a colour wins
            seen.setdefault(obj["color"], (np.array(obj["centroid"]), obj["area"]))
        out.append(seen)
    return out


def estimate_poses(frames: np.ndarray, intrinsics) -> tuple[np.ndarray, int]:
    """Camera poses ``[F, 4, 4]`` relative to frame 0 from frames ``uint8 [F, H, W, 3]`` and the known frame-0
    intrinsics ``(fx, fy, cx, cy)``, and how many frames had no object in common with frame 0 (they repeat the
    previous pose)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    focal, centre = math.sqrt(fx * fy), np.array([cx, cy])
    tracks = track_objects(frames)
    poses, lost = [np.eye(4)], 0
    for seen in tracks[1:]:
        common = [c for c in tracks[0] if c in seen]
        if not common:
            poses.append(poses[-1])
            lost += 1
            continue
        src = np.stack([tracks[0][c][0] for c in common]) - centre
        dst = np.stack([seen[c][0] for c in common]) - centre
        scales = np.array([math.sqrt(seen[c][1] / max(tracks[0][c][1], 1e-9)) for c in common])
        similar = pose_from_similarity(*fit_similarity(src, dst, scales[0] if len(common) == 1 else None), focal)
        init = np.array([*similar[:3, 3], math.atan2(similar[1, 0], similar[0, 0]), 0.0, 0.0])
        poses.append(pose_of(fit_plane_pose(src, dst, scales, focal, init)))
    return np.stack(poses), lost


# ----------------------------------------------------------------------------------------------
# Ground truth and the evaluation
# ----------------------------------------------------------------------------------------------


def camera_spec(prompt: str, seed: int, motion: str, frames: int = 17, height: int = 64, width: int = 64,
                attempts: int = 200):
    """A ``ClipSpec`` of ``prompt``'s still objects filmed by ``motion``, every object inside every frame."""
    from videogen.evaluation.evaluate import spec_for_prompt

    for attempt in range(attempts):
        spec = spec_for_prompt(prompt, seed * attempts + attempt, frames, height, width)
        still = tuple(replace(o, motion="still", speed=None, path=None) for o in spec.objects)  # lying on the plane
        spec = replace(spec, objects=still, camera=motion)
        warps = camera_setup(spec)[3]
        boxes = [image_geometry(o, object_track(o, frames, height, width), warps, height, width)[1]
                 for o in spec.objects]
        if all(boxes_inside(b, height, width) for b in boxes):
            return spec
    raise ValueError(f"cannot keep the objects of {prompt!r} inside a {height}x{width} clip under {motion}")


def ground_truth(prompt: str, seed: int, motion: str, frames: int = 17, height: int = 64, width: int = 64):
    """``(frames uint8 [F, H, W, 3], intrinsics [F, 4], c2w [F, 4, 4])`` of the rendered clip."""
    video, meta = render_clip(camera_spec(prompt, seed, motion, frames, height, width))
    return video, np.array(meta["camera"]["intrinsics"]), np.array(meta["camera"]["c2w"])


def score(frames: np.ndarray, intrinsics: np.ndarray, c2w: np.ndarray, motion: str) -> dict:
    """The estimator on one clip against the true poses (as a constant focal length sees them: ``apparent_poses``):
    errors, direction, final motion, frames lost."""
    poses, lost = estimate_poses(frames, intrinsics[0])
    return dict(**camera_errors(poses, apparent_poses(intrinsics, c2w)), direction_correct=direction_correct(poses, motion),
                motion=final_motion(poses), lost_frames=lost)


def scene_kept(frames: np.ndarray, prompt: str) -> dict:
    """``color_ok``, ``shape_ok``, ``count_ok`` of a clip against its prompt (``metrics.score_clip``, the
    text-to-video eval's judges): whether the scene survives the camera."""
    judged = score_clip(frames, prompt)
    return {f"{k}_ok": judged[f"{k}_ok"] for k in ("color", "shape", "count")}


def summarize_camera(records: list[dict]) -> dict:
    """Means of the errors and the direction accuracy overall and per camera motion."""
    def mean(rs, key):
        return float(np.mean([r[key] for r in rs])) if rs else float("nan")

    out = {k: mean(records, k) for k in ("rot_err", "trans_err", "cam_mc")}
    out["direction_accuracy"] = mean(records, "direction_correct")
    kept = summarize(records)  # the scene kept: the text-to-video eval's accuracies, where judged
    out.update({f"{name}_accuracy": kept[f"{name}_accuracy"] for name in ("color", "shape", "count")})
    out["per_motion"] = {m: mean([r for r in records if r["camera"] == m], "direction_correct")
                         for m in dict.fromkeys(r["camera"] for r in records)}
    return out


def sweep_settings(scales=None, nulls=None, windows=None) -> list[dict]:
    """Every combination of the given CMG scales, null cameras and camera windows (None: left at the default)."""
    import itertools

    axes = [("camera_guidance_scale", scales), ("camera_null", nulls), ("camera_window", windows)]
    given = [(k, list(v)) for k, v in axes if v]
    return [dict(zip([k for k, _ in given], combo)) for combo in itertools.product(*[v for _, v in given])] or [{}]


def call_arguments(setting: dict, guidance_scale: float, stg: dict) -> dict:
    """A sweep entry as ``CameraControlPipeline`` arguments: its CMG scale and window become the ``guidance`` chain
    (``camera_guidance``, with ``stg``'s ``stg_scale``/``stg_blocks``/``stg_mode``), the rest pass through."""
    from videogen.guidance import camera_guidance

    extra = dict(setting)
    scale = extra.pop("camera_guidance_scale", 0.0)
    window = tuple(extra.get("camera_window", (0.0, 1.0)))
    extra["guidance"] = camera_guidance(guidance_scale, scale, camera_window=window, **stg)
    return extra


def run_camera_eval(pipe, prompts, seeds, motions=EVAL_MOTIONS, settings=({},), height: int = 64, width: int = 64,
                    num_frames: int = 17, steps: int = 20, guidance_scale: float = 5.0, max_sequence_length: int = 512,
                    out_dir=None, floor: bool = True, progress: bool = True, stg=None) -> dict:
    """Generate every prompt x seed x camera motion with ``pipe`` (a ``CameraControlPipeline``) under each entry of
    ``settings`` (``camera_guidance_scale``, ``camera_null``, ``camera_window``, ``camera_strength``: the sweep;
    ``stg`` adds STG to every run), and with the camera off (``camera_strength=0``: the floor); score each against
    the rendered ground truth's poses, and the ground truth itself (the ceiling). Writes ``camera_eval.json``."""
    import torch
    from tqdm.auto import tqdm

    from videogen.evaluation.evaluate import to_uint8, write_result

    runs = {"ceiling": []}
    named = {_setting_name(s): s for s in settings}
    if floor:
        named["floor (camera off)"] = {"camera_strength": 0.0}
    for name in named:
        runs[name] = []
    jobs = [(p, s, m) for p in prompts for s in seeds for m in motions]
    for prompt, seed, motion in tqdm(jobs, desc="camera eval", disable=not progress):
        video, intrinsics, c2w = ground_truth(prompt, seed, motion, num_frames, height, width)
        runs["ceiling"].append(dict(prompt=prompt, seed=seed, camera=motion, **score(video, intrinsics, c2w, motion),
                                    **scene_kept(video, prompt)))
        camera = (torch.tensor(intrinsics, dtype=torch.float32), torch.tensor(c2w, dtype=torch.float32))
        for name, setting in named.items():
            frames = pipe(prompt, camera=camera, height=height, width=width, num_frames=num_frames,
                          num_inference_steps=steps, max_sequence_length=max_sequence_length, output_type="np",
                          generator=torch.Generator().manual_seed(seed),
                          **call_arguments(setting, guidance_scale, stg or {})).frames[0]
            clip = to_uint8(frames)
            runs[name].append(dict(prompt=prompt, seed=seed, camera=motion, **score(clip, intrinsics, c2w, motion),
                                   **scene_kept(clip, prompt)))
    result = dict(config=dict(prompts=list(prompts), seeds=list(seeds), motions=list(motions), steps=steps,
                              guidance_scale=guidance_scale, stg=stg or {}, settings={k: _jsonable(v) for k, v in named.items()}),
                  summary={name: summarize_camera(records) for name, records in runs.items()}, records=runs)
    if out_dir is not None:
        write_result(out_dir, "camera_eval.json", result)
    print(format_camera_table(result["summary"]))
    return result


def _setting_name(setting: dict) -> str:
    """A short label for one sweep entry."""
    return ", ".join(f"{k}={v}" for k, v in sorted(setting.items())) or "defaults"


def _jsonable(value):
    """Tuples as lists, recursively (for eval.json)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def format_camera_table(summary: dict) -> str:
    """One row per run (ceiling, each setting, the floor): RotErr, TransErr, CamMC, direction accuracy."""
    def pct(value):
        return f"{value:7.1f}" if value is not None else f"{'-':>7s}"

    lines = [f"{'run':40s} {'RotErr':>8s} {'TransErr':>9s} {'CamMC':>8s} {'dir acc':>8s} {'colour':>7s} "
             f"{'shape':>7s} {'count':>7s}"]
    for name, s in summary.items():
        lines.append(f"{name[:40]:40s} {s['rot_err']:8.3f} {s['trans_err']:9.3f} {s['cam_mc']:8.3f} "
                     f"{s['direction_accuracy']:8.2%} {pct(s.get('color_accuracy'))} {pct(s.get('shape_accuracy'))} "
                     f"{pct(s.get('count_accuracy'))}")
    return "\n".join(lines)
