"""``videogen eval --task trajectory``: TrajError (Tora's metric) of generated shapes-world objects on held-out paths.

Held-out paths (``held_out_cases``, deterministic in the seed): the trajectory adapter trains on the shapes world,
whose objects move left, right, up or down at ``SPEEDS`` (0.2, 0.35, 0.5 of the frame over the clip), stay still, or
follow cubic Bezier curves. The eval asks for what it never saw: ``line`` (straight, in directions at least
``AXIS_CLEARANCE`` degrees from either axis: diagonals), ``arc`` (a circular arc of 90-200 degrees, either way round)
and ``zigzag`` (a polyline of 2-3 segments turning sharply, alternately left and right), each at constant speed along
the path, at ``EVAL_SPEEDS`` (path length as a fraction of the frame side: slower than slow, faster than fast), for
one object or two (two tracks, the objects' boxes apart in every frame), every object at least ``MARGIN`` px inside
the frame. A case's prompt names its objects in the training captions' long style with the training world's word for
a free path ("a red circle moving along a curved path on a gray background"), so the text never contradicts the
track: the track alone says where to go.

Scores, per clip (``score_clip_tracks``): the i-th track's object is the i-th object the prompt names, found in each
frame by colour (the largest ``measure_components`` component of its colour). **TrajError** is the mean over objects
and frames (frame 0 included) of the Euclidean pixel distance between the requested point and that component's
centroid; a frame where the object is not found counts ``NOT_FOUND_PENALTY`` x the frame diagonal (90.5 px at 64x64):
a model that loses the object is not following the track. ``found`` is the share of (object, frame) pairs found,
``traj_err_found`` the mean over found frames only (a diagnosis, not the score), ``endpoint_err`` the same distance
in the last frame (mean over objects, with the same penalty). Kept from the text-to-video eval: ``color_ok`` (every
named colour found in more than half the frames), ``shape_ok`` (every found object's most common shape the one named)
and ``count_ok`` (the median number of components per frame equals the number of objects named:
``metrics.measure_clip``). The same scores run on the rendered ground truth of the case (``render_tracks``: the
objects drawn exactly on their tracks; the ceiling, the estimator's own error) and on the model with the adapter off
(``trajectory_strength=0``: the base model, the floor).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from videogen.data.synthetic import (
    BACKGROUNDS, COLORS, CURVE, MARGIN, OBJECT_COLORS, SHAPES, BackgroundSpec, ObjectSpec,
    background_phrase, boxes_apart, boxes_inside, coverage, image_geometry, object_phrase, object_radius,
)
from videogen.evaluation.metrics import measure_clip, measure_components

KINDS = ("line", "arc", "zigzag")
# Path length over the clip as a fraction of the frame side: training's straight motions cross 0.2-0.5 (SPEEDS).
EVAL_SPEEDS = {"crawl": 0.12, "dash": 0.65}
AXIS_CLEARANCE = 15.0  # degrees: a held-out line is at least this far from the x and y axes (training's directions)
ARC_SWEEP = (90.0, 200.0)  # degrees, either sign
ZIGZAG_TURN = (100.0, 150.0)  # degrees between consecutive segments, alternating sign
NOT_FOUND_PENALTY = 1.0  # x the frame diagonal: the distance a frame without the object counts
DEFAULT_NUM_CASES = 12  # 3 kinds x 2 speeds x (1, 2 objects)
SIZE = "medium"  # every object's size (the captions omit it)


@dataclass(frozen=True)
class TrajectoryCase:
    """One eval case: the objects (words only), their solid background, the prompt and ``tracks [N, F, 2]``."""

    index: int
    kind: str
    speed: str
    objects: tuple[ObjectSpec, ...]
    background: str
    prompt: str
    tracks: np.ndarray = field(compare=False, repr=False)

    def to_dict(self) -> dict:
        """A JSON-ready dict (tracks as nested lists, in output pixels)."""
        return dict(index=self.index, kind=self.kind, speed=self.speed, speed_fraction=EVAL_SPEEDS[self.speed],
                    objects=[dict(color=o.color, shape=o.shape, size=o.size) for o in self.objects],
                    background=self.background, prompt=self.prompt, tracks=np.round(self.tracks, 4).tolist())


# ----------------------------------------------------------------------------------------------
# Paths (relative to their first point, constant speed)
# ----------------------------------------------------------------------------------------------


def frame_times(num_frames: int) -> np.ndarray:
    """``t_k = k / (F - 1)``: the fraction of the clip at each frame (the shapes world's timing)."""
    return np.linspace(0.0, 1.0, num_frames)


def polyline_path(vertices, num_frames: int) -> np.ndarray:
    """Points ``[F, 2]`` at constant speed along the polyline ``vertices [V, 2]`` (first at frame 0, last at F-1)."""
    v = np.asarray(vertices, dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(v, axis=0), axis=1))])
    s = frame_times(num_frames) * cumulative[-1]
    return np.stack([np.interp(s, cumulative, v[:, 0]), np.interp(s, cumulative, v[:, 1])], -1)


def line_path(angle: float, length: float, num_frames: int) -> np.ndarray:
    """A straight path ``[F, 2]`` from the origin, ``length`` px in direction ``angle`` (radians, x right, y down)."""
    return frame_times(num_frames)[:, None] * length * np.array([math.cos(angle), math.sin(angle)])


def arc_path(start_angle: float, sweep: float, length: float, num_frames: int) -> np.ndarray:
    """A circular arc ``[F, 2]`` from the origin: ``length`` px of arc turning through ``sweep`` radians (signed;
    positive turns from x towards y), starting at angle ``start_angle`` on its circle (radius ``length / |sweep|``)."""
    radius = length / abs(sweep)
    a = start_angle + sweep * frame_times(num_frames)
    points = radius * np.stack([np.cos(a), np.sin(a)], -1)
    return points - points[0]


def zigzag_vertices(heading: float, turns, lengths) -> np.ndarray:
    """Vertices ``[S + 1, 2]`` of a polyline from the origin: the first segment along ``heading`` (radians), each next
    one turned by ``turns[i]`` (radians, signed), segment ``i`` ``lengths[i]`` px long."""
    points, angle = [np.zeros(2)], heading
    for i, length in enumerate(lengths):
        if i:
            angle += turns[i - 1]
        points.append(points[-1] + length * np.array([math.cos(angle), math.sin(angle)]))
    return np.stack(points)


def off_axis(angle: float, clearance: float = AXIS_CLEARANCE) -> bool:
    """Whether ``angle`` (radians) is at least ``clearance`` degrees from every multiple of 90 degrees."""
    d = math.degrees(angle) % 90.0
    return min(d, 90.0 - d) >= clearance


def draw_path(kind: str, rng: np.random.Generator, length: float, num_frames: int) -> np.ndarray:
    """A random path of ``kind`` (``KINDS``) ``length`` px long, relative to its first point, ``[F, 2]``."""
    if kind == "line":
        angle = rng.uniform(0.0, 2 * math.pi)
        while not off_axis(angle):
            angle = rng.uniform(0.0, 2 * math.pi)
        return line_path(angle, length, num_frames)
    if kind == "arc":
        sweep = math.radians(rng.uniform(*ARC_SWEEP)) * (1 if rng.random() < 0.5 else -1)
        return arc_path(rng.uniform(0.0, 2 * math.pi), sweep, length, num_frames)
    if kind == "zigzag":
        segments = int(rng.integers(2, 4))
        first = 1 if rng.random() < 0.5 else -1
        turns = [first * (-1) ** i * math.radians(rng.uniform(*ZIGZAG_TURN)) for i in range(segments - 1)]
        shares = rng.uniform(0.8, 1.2, segments)
        vertices = zigzag_vertices(rng.uniform(0.0, 2 * math.pi), turns, length * shares / shares.sum())
        return polyline_path(vertices, num_frames)
    raise ValueError(f"unknown path kind {kind!r}; expected one of {', '.join(KINDS)}")


def path_length(track: np.ndarray) -> float:
    """The length in px of the polyline through a track's points ``[F, 2]``."""
    return float(np.linalg.norm(np.diff(np.asarray(track, dtype=float), axis=0), axis=1).sum())


# ----------------------------------------------------------------------------------------------
# Placing objects on paths, and the cases
# ----------------------------------------------------------------------------------------------


def static_warps(num_frames: int) -> np.ndarray:
    """Identity reference-to-image warps ``[F, 3, 3]``: a static camera."""
    return np.tile(np.eye(3), (num_frames, 1, 1))


def track_boxes(obj: ObjectSpec, track: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bounding boxes ``[F, 4]`` (x0, y0, x1, y1) of ``obj`` drawn with its centroid on ``track`` (static camera)."""
    return image_geometry(obj, np.asarray(track, dtype=float), static_warps(len(track)), height, width)[1]


def place_path(path: np.ndarray, obj: ObjectSpec, rng: np.random.Generator, height: int, width: int):
    """``path`` translated to a random spot that keeps ``obj`` at least ``MARGIN`` px inside the frame in every
    frame, or None where no spot does."""
    boxes = track_boxes(obj, path, height, width)
    low = MARGIN - boxes[:, :2].min(0)
    high = np.array([width, height], dtype=float) - MARGIN - boxes[:, 2:].max(0)
    if (low > high).any():
        return None
    return path + rng.uniform(low, high)


def case_objects(rng: np.random.Generator, count: int) -> tuple[ObjectSpec, ...]:
    """``count`` objects of distinct colours (``COLORS``), random shapes, ``SIZE``, words only."""
    colors = rng.permutation(list(COLORS))[:count]
    return tuple(ObjectSpec(shape=str(SHAPES[int(rng.integers(len(SHAPES)))]), color=str(c), size=SIZE)
                 for c in colors)


def case_prompt(objects, background: str) -> str:
    """The training captions' long style, each object on a free path: ``"a red circle moving along a curved path
    and a blue square moving along a curved path on a gray background"``."""
    phrases = " and ".join(object_phrase(replace(o, motion=CURVE, speed=None), "long") for o in objects)
    return f"{phrases} on a {background_phrase(BackgroundSpec('solid', background))}"


def case_layout(index: int) -> tuple[str, str, int]:
    """``(kind, speed, objects)`` of case ``index``: kinds cycle fastest, then speeds, then 1 or 2 objects."""
    speeds = tuple(EVAL_SPEEDS)
    return KINDS[index % len(KINDS)], speeds[(index // len(KINDS)) % len(speeds)], \
        1 + (index // (len(KINDS) * len(speeds))) % 2


def make_case(index: int, seed: int = 0, num_frames: int = 17, height: int = 64, width: int = 64,
              max_objects: int = 2, attempts: int = 2000) -> TrajectoryCase:
    """Case ``index`` of the held-out set drawn with ``seed`` (its own generator: any subset, in any order, is the
    same): ``case_layout``'s kind, speed and object count (at most ``max_objects``), tracks in frame and apart."""
    kind, speed, count = case_layout(index)
    count = min(count, max_objects)
    rng = np.random.default_rng([seed, index, 19])
    background = str(list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))])
    length = EVAL_SPEEDS[speed] * min(height, width)
    for _ in range(attempts):
        objects = case_objects(rng, count)
        tracks, boxes = [], []
        for obj in objects:
            track = place_path(draw_path(kind, rng, length, num_frames), obj, rng, height, width)
            if track is None:
                break
            b = track_boxes(obj, track, height, width)
            if not all(boxes_apart(b, other) for other in boxes):
                break
            tracks.append(track)
            boxes.append(b)
        if len(tracks) == count:
            return TrajectoryCase(index, kind, speed, objects, background, case_prompt(objects, background),
                                  np.stack(tracks))
    raise ValueError(f"could not place {count} {kind} path(s) at speed {speed} in a {height}x{width} clip after "
                     f"{attempts} attempts")


def held_out_cases(num_cases: int = DEFAULT_NUM_CASES, seed: int = 0, num_frames: int = 17, height: int = 64,
                   width: int = 64, max_objects: int = 2) -> list[TrajectoryCase]:
    """The first ``num_cases`` held-out cases (``make_case``), deterministic in ``seed``."""
    if num_cases < 1:
        raise ValueError(f"num_cases must be >= 1; got {num_cases}")
    return [make_case(i, seed, num_frames, height, width, max_objects) for i in range(num_cases)]


# ----------------------------------------------------------------------------------------------
# Ground truth (the ceiling)
# ----------------------------------------------------------------------------------------------


def render_tracks(objects, tracks, background: str = "gray", height: int = 64, width: int = 64) -> np.ndarray:
    """Frames ``uint8 [F, H, W, 3]`` of ``objects`` drawn with their area centroids exactly on ``tracks [N, F, 2]``
    over a solid ``background``, as ``synthetic.render_clip`` draws a static-camera clip (supersampled coverage,
    composited in order); an object leaving the frame is a ``ValueError``."""
    tracks = np.asarray(tracks, dtype=float)
    F = tracks.shape[1]
    frames = np.empty((F, height, width, 3), dtype=np.float64)
    frames[:] = np.array(BACKGROUNDS[background]) / 255.0
    for i, (obj, track) in enumerate(zip(objects, tracks)):
        boxes = track_boxes(obj, track, height, width)
        if not boxes_inside(boxes, height, width, margin=0.0):
            raise ValueError(f"object {i} ({obj.color} {obj.shape}) leaves the {height}x{width} frame")
        colour = np.array(OBJECT_COLORS[obj.color]) / 255.0
        for k in range(F):
            alpha, x0, y0 = coverage(obj.shape, object_radius(obj, height, width), track[k], np.eye(3), boxes[k],
                                     height, width)
            patch = frames[k, y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]]
            patch[:] = alpha[..., None] * colour + (1 - alpha[..., None]) * patch
    return np.round(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)


def ground_truth(case: TrajectoryCase, height: int = 64, width: int = 64) -> np.ndarray:
    """The rendered clip of ``case`` (``render_tracks``)."""
    return render_tracks(case.objects, case.tracks, case.background, height, width)


# ----------------------------------------------------------------------------------------------
# The estimator and the scores
# ----------------------------------------------------------------------------------------------


def locate_objects(frames: np.ndarray, colors) -> tuple[np.ndarray, list[list]]:
    """Per named colour and frame, the centroid of the largest component of that colour (``[N, F, 2]``, NaN where
    there is none) and its shape (None there)."""
    centroids = np.full((len(colors), len(frames), 2), np.nan)
    shapes = [[None] * len(frames) for _ in colors]
    for k, frame in enumerate(frames):
        seen = {}
        for obj in measure_components(frame):  # largest first: the first of a colour wins
            seen.setdefault(obj["color"], obj)
        for i, color in enumerate(colors):
            if color in seen:
                centroids[i, k] = seen[color]["centroid"]
                shapes[i][k] = seen[color]["shape"]
    return centroids, shapes


def trajectory_errors(centroids: np.ndarray, tracks: np.ndarray, penalty: float) -> dict:
    """TrajError and friends of measured ``centroids [N, F, 2]`` (NaN: not found) against requested ``tracks``:
    ``traj_err`` (mean distance over objects and frames, ``penalty`` px where not found), ``endpoint_err`` (the
    last frame's, mean over objects, same penalty), ``found`` (share found), ``traj_err_found`` (mean over found
    frames; None if none) and ``per_object`` (each object's ``traj_err``)."""
    centroids, tracks = np.asarray(centroids, dtype=float), np.asarray(tracks, dtype=float)
    if centroids.shape != tracks.shape:
        raise ValueError(f"centroids {centroids.shape} and tracks {tracks.shape} must have the same shape [N, F, 2]")
    distance = np.linalg.norm(centroids - tracks, axis=-1)
    found = np.isfinite(distance)
    scored = np.where(found, distance, penalty)
    return dict(traj_err=float(scored.mean()), endpoint_err=float(scored[:, -1].mean()), found=float(found.mean()),
                traj_err_found=float(distance[found].mean()) if found.any() else None,
                per_object=[float(v) for v in scored.mean(1)])


def _mode(values):
    """The most common non-None value; None if there is none."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def attribute_scores(frames: np.ndarray, objects, shapes: list[list]) -> dict:
    """Colour, shape and count kept: ``color_ok`` (each object's colour found in more than half the frames),
    ``shape_ok`` (each object's most common shape where found is the one named), ``count_ok`` (``measure_clip``'s
    median components per frame equals the number of objects), with ``count`` and each object's ``shapes``."""
    seen = [_mode(s) for s in shapes]
    count = measure_clip(frames)["count"]
    return dict(color_ok=all(sum(v is not None for v in s) > len(s) / 2 for s in shapes),
                shape_ok=all(got == o.shape for got, o in zip(seen, objects)), count_ok=bool(count == len(objects)),
                count=count, shapes=seen)


def score_clip_tracks(frames: np.ndarray, objects, tracks: np.ndarray) -> dict:
    """The per-clip record of frames ``uint8 [F, H, W, 3]`` whose ``objects`` (in prompt order) should follow
    ``tracks [N, F, 2]``: ``trajectory_errors`` (penalty: ``NOT_FOUND_PENALTY`` x the frame diagonal) and
    ``attribute_scores``."""
    frames = np.asarray(frames)
    h, w = frames.shape[1:3]
    centroids, shapes = locate_objects(frames, [o.color for o in objects])
    return dict(**trajectory_errors(centroids, tracks, NOT_FOUND_PENALTY * math.hypot(h, w)),
                **attribute_scores(frames, objects, shapes))


def summarize_trajectory(records: list[dict]) -> dict:
    """Means over records of ``traj_err``, ``endpoint_err``, ``found`` (and ``traj_err_found`` where defined);
    colour/shape/count accuracies in %; mean TrajError per path kind, per speed and per object count."""
    def mean(rs, key):
        values = [r[key] for r in rs if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    out = dict(samples=len(records), **{k: mean(records, k) for k in ("traj_err", "endpoint_err", "found",
                                                                     "traj_err_found")})
    for name in ("color", "shape", "count"):
        out[f"{name}_accuracy"] = None if not records else 100.0 * mean(records, f"{name}_ok")
    for group in ("kind", "speed", "num_objects"):
        values = dict.fromkeys(r[group] for r in records)
        out[f"per_{group}"] = {str(v): mean([r for r in records if r[group] == v], "traj_err") for v in values}
    return out


# ----------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------


def call_arguments(setting: dict, guidance_scale: float, stg: dict) -> dict:
    """A run's ``TrajectoryControlPipeline`` arguments: its ``trajectory_strength`` and the guidance chain (CFG, or
    trajectory guidance at ``trajectory_guidance_scale > 0``, then ``stg``'s STG), as ``videogen generate`` builds
    them."""
    from videogen.guidance import camera_guidance

    scale = setting.get("trajectory_guidance_scale", 0.0)
    return dict(trajectory_strength=setting.get("trajectory_strength", 1.0),
                guidance=camera_guidance(guidance_scale, scale, **stg))


def case_record(case: TrajectoryCase, seed) -> dict:
    """The identifying fields of a record: case index, kind, speed, object count, prompt, seed."""
    return dict(case=case.index, kind=case.kind, speed=case.speed, num_objects=len(case.objects), prompt=case.prompt,
                seed=seed)


def run_trajectory_eval(pipe, cases, seeds, height: int = 64, width: int = 64, num_frames: int = 17,
                        steps: int = 12, guidance_scale: float = 5.0, max_sequence_length: int = 512, out_dir=None,
                        floor: bool = True, progress: bool = True, stg=None, trajectory_strength: float = 1.0,
                        trajectory_guidance_scale: float = 0.0) -> dict:
    """Generate every case x seed with ``pipe`` (a Tora-mode ``TrajectoryControlPipeline``) following the case's
    tracks, and with the adapter off (``trajectory_strength=0``: the base model, the floor); score each
    (``score_clip_tracks``), and the rendered ground truth once per case (the ceiling). ``stg``: STG settings
    (``stg_scale``, ``stg_blocks``, ``stg_mode``) for every run. Prints the table; writes ``trajectory_eval.json``
    to ``out_dir``. Returns ``{"config", "summary": {run: summary}, "records": {run: [record]}}``."""
    import torch
    from tqdm.auto import tqdm

    from videogen.evaluation.evaluate import to_uint8, write_result

    named = {"model": dict(trajectory_strength=trajectory_strength,
                           trajectory_guidance_scale=trajectory_guidance_scale)}
    if floor:
        named["floor (adapter off)"] = dict(trajectory_strength=0.0)
    runs = {"ceiling": [], **{name: [] for name in named}}
    for case in cases:
        truth = score_clip_tracks(ground_truth(case, height, width), case.objects, case.tracks)
        runs["ceiling"].append(dict(case_record(case, None), **truth))
    jobs = [(c, s) for c in cases for s in seeds]
    for case, seed in tqdm(jobs, desc="trajectory eval", disable=not progress):
        tracks = (torch.tensor(case.tracks, dtype=torch.float32), torch.ones(case.tracks.shape[:2], dtype=torch.bool))
        for name, setting in named.items():
            frames = pipe(case.prompt, trajectory=tracks, height=height, width=width, num_frames=num_frames,
                          num_inference_steps=steps, max_sequence_length=max_sequence_length, output_type="np",
                          generator=torch.Generator().manual_seed(seed),
                          **call_arguments(setting, guidance_scale, stg or {})).frames[0]
            runs[name].append(dict(case_record(case, seed),
                                   **score_clip_tracks(to_uint8(frames), case.objects, case.tracks)))
    config = dict(cases=[c.to_dict() for c in cases], seeds=list(seeds), height=height, width=width,
                  num_frames=num_frames, steps=steps, guidance_scale=guidance_scale, stg=stg or {},
                  max_sequence_length=max_sequence_length, runs=named,
                  not_found_penalty=f"{NOT_FOUND_PENALTY} x the frame diagonal "
                                    f"({NOT_FOUND_PENALTY * math.hypot(height, width):.1f} px)")
    result = dict(config=config, summary={name: summarize_trajectory(r) for name, r in runs.items()}, records=runs)
    if out_dir is not None:
        write_result(out_dir, "trajectory_eval.json", result)
    print(format_trajectory_table(result["summary"]))
    return result


def _cell(value, fmt: str, width: int) -> str:
    """``value`` formatted, or a dash for None, right-aligned in ``width``."""
    return f"{'-' if value is None else format(value, fmt):>{width}s}"


def format_trajectory_table(summary: dict) -> str:
    """One row per run (ceiling, model, floor): TrajError and endpoint error (px), found %, TrajError per path kind,
    the ratio to the floor's TrajError, colour / shape / count accuracy (%)."""
    floor = next((s["traj_err"] for n, s in summary.items() if n.startswith("floor")), None)
    head = (f"{'run':22s} {'TrajErr':>8s} {'endpt':>7s} {'found':>7s} "
            + " ".join(f"{k:>7s}" for k in KINDS) + f" {'x floor':>8s} {'colour':>7s} {'shape':>7s} {'count':>7s}")
    lines = [head]
    for name, s in summary.items():
        ratio = None if not floor or s["traj_err"] is None else s["traj_err"] / floor
        kinds = " ".join(_cell(s["per_kind"].get(k), ".2f", 7) for k in KINDS)
        found = None if s["found"] is None else 100 * s["found"]
        lines.append(f"{name[:22]:22s} {_cell(s['traj_err'], '.2f', 8)} {_cell(s['endpoint_err'], '.2f', 7)} "
                     f"{_cell(found, '.1f', 7)} {kinds} {_cell(ratio, '.3f', 8)} "
                     f"{_cell(s['color_accuracy'], '.1f', 7)} {_cell(s['shape_accuracy'], '.1f', 7)} "
                     f"{_cell(s['count_accuracy'], '.1f', 7)}")
    return "\n".join(lines)
