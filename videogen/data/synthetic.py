"""The shapes world: procedurally rendered clips of coloured shapes with captions and exact per-frame metadata.

A clip shows one to three objects (circle, square, triangle; six saturated colours; three sizes)
on a grey ground plane (a solid colour or a procedural texture), filmed by a pinhole camera that is
static or pans, dollies, rolls, zooms or orbits. Objects move left, right, up or down at a named speed, stay still,
or follow a free curved path (a cubic Bézier). ``write_dataset`` / ``videogen synth`` writes clips in
the standard dataset format (``clips/00000.mp4`` + ``00000.txt`` caption + ``00000.json`` metadata,
and ``manifest.jsonl``); later stages train on it and *measure* generated videos against it.

Conventions (shared with ``videogen.data.synthetic_geometry``)
---------------------------------------------------------------
- **Pixel coordinates**: continuous, x right, y down, origin at the top-left *corner* of the image.
  Pixel ``(i, j)`` (column i, row j) covers ``[i, i+1) x [j, j+1)``; its centre is ``(i + 0.5, j + 0.5)``.
  A trajectory point is the object's area centroid in these coordinates, so the centroid measured
  from a mask is ``sum(alpha * (i + 0.5)) / sum(alpha)``.
- **World**: the plane is ``z = 0``, X right and Y down as seen by the reference camera, Z pointing
  from that camera into the plane. The reference camera (every clip's frame 0) has ``c2w = [[I, (0, 0, -1)],
  [0, 1]]`` and intrinsics ``(fx, fy, cx, cy) = (W, W, W/2, H/2)``, so a *reference pixel* ``(x, y)``
  sees plane point ``((x - cx) / fx, (y - cy) / fy, 0)``. Object positions in a ``ClipSpec`` are in
  reference pixels; for a static camera they are image pixels.
- **Camera** (OpenCV): camera x right, y down, z forward. ``c2w`` is the 4x4 camera-to-world matrix
  (columns of R = camera axes in world coordinates, t = camera centre); poses are absolute in the
  world frame (for poses relative to frame 0 take ``inv(c2w[0]) @ c2w[k]``; here frame 0 is the
  reference camera). ``intrinsics`` is ``[fx, fy, cx, cy]`` in pixels with centres at +0.5, so
  ``(cx, cy)`` is the image centre; OpenCV functions (centres at integers) need ``cx - 0.5, cy - 0.5``.
  Frames are rendered exactly through the plane homography ``H = K [r1 r2 t]`` of ``w2c = [R | t]``
  with bilinear texture sampling (see ``synthetic_geometry``). Outside orbits the camera never tilts, so H is a
  similarity and projected area centroids are image area centroids.
- **Motion words** are image directions of a static camera: ``left`` = decreasing x, ``up`` =
  decreasing y. A speed moves the object by ``SPEEDS[speed]`` of the frame width (left/right) or
  height (up/down) over the clip, linearly in the frame index. In camera clips the objects lie still
  on the plane (motion ``still``) and move in the image only because the camera does.

Rendering and measurement
-------------------------
Objects are drawn with ``SUPERSAMPLE``² samples per pixel (coverage ``alpha``), composited in list
order (``z`` = index, later on top). Every object colour is a corner of the RGB cube with at least
one channel 0 and one 255, and every background is grey (R = G = B), so on any frame
``pixel - min(pixel) = alpha * colour``: an object's coverage is ``(max - min) / 255`` and its colour the
nearest palette entry of ``(pixel - min) / (max - min)``. ``sample_clip_spec`` guarantees that objects
in a clip have distinct colours, stay at least ``MARGIN`` px inside the frame and at least ``GAP`` px
apart (bounding boxes) in every frame, so no pixel mixes two objects. Hand-made specs may overlap;
then later objects hide earlier ones and the recorded centroid is that of the whole (unoccluded)
shape. Objects that leave the frame are an error.

Hold-out
--------
A hold-out pattern is ``"color shape motion"`` (e.g. ``"red circle left"``; ``*`` matches anything).
A clip is held out when *any* of its objects matches a pattern (``is_held_out``). The training split
never contains a held-out clip; ``split="holdout"`` writes only held-out clips (their first object is
drawn from a pattern, with a static camera unless the pattern's motion is ``still``), for
evaluating generalisation to unseen combinations. ``holdout=None`` means ``DEFAULT_HOLDOUT``; pass
``()`` to hold out nothing.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from videogen.data.synthetic_geometry import (  # noqa: F401  (GAP, MARGIN, SUPERSAMPLE: re-exported settings)
    ALL_CAMERA_MOTIONS,
    CAMERA_MOTIONS,
    GAP,
    MARGIN,
    SUPERSAMPLE,
    TEXTURES,
    apply_homography,
    bezier,
    boxes_apart,
    boxes_inside,
    camera_intrinsics,
    camera_path,
    coverage,
    intrinsic_matrix,
    intrinsics,
    plane_homography,
    plane_layout,
    render_plane,
    shape_extent,
    shape_vertices,
    texture_image,
)

COLORS: dict[str, tuple[int, int, int]] = {  # object colours: pure, saturated, >= 255 apart in RGB
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
# Colours no training clip has (the samplers draw from COLORS only): new concepts for personalization, rendered on
# request (videogen.evaluation.concept). Orange sits half-way between red and yellow in chroma.
CONCEPT_COLORS: dict[str, tuple[int, int, int]] = {"orange": (255, 128, 0), "purple": (128, 0, 255)}
OBJECT_COLORS = {**COLORS, **CONCEPT_COLORS}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "gray": (128, 128, 128), "white": (255, 255, 255)}
TEXTURE_WORDS = {"checker": "checkered", "stripes": "striped", "noise": "mottled gray"}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "still")
CURVE = "curve"
ALL_MOTIONS = MOTIONS + (CURVE,)
SPEEDS = {"slow": 0.2, "normal": 0.35, "fast": 0.5}  # fraction of the frame crossed over the clip
SPEED_WORDS = {"slow": "slowly", "normal": "", "fast": "quickly"}
SIZES = {"small": 0.09, "medium": 0.12, "large": 0.16}  # half-extent as a fraction of min(height, width)
DEFAULT_HOLDOUT = (
    "red circle left", "green square up", "blue triangle right",
    "yellow circle down", "magenta square still", "cyan triangle curve",
)
OBJECT_COUNTS = {1: 0.5, 2: 0.3, 3: 0.2}
_DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


# ----------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """One object: ``shape``, ``color``, ``size`` word, ``motion`` word, ``speed`` word (straight motions only),
    ``start`` centroid in reference pixels, and for ``motion="curve"`` the four Bézier control points ``path``."""

    shape: str
    color: str
    size: str = "medium"
    motion: str = "still"
    speed: str | None = None
    start: tuple[float, float] = (32.0, 32.0)
    path: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class BackgroundSpec:
    """The plane: ``kind="solid"`` and a ``BACKGROUNDS`` name, or ``kind="texture"``, a ``TEXTURES`` name, a seed."""

    kind: str = "solid"
    name: str = "gray"
    seed: int = 0


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip; ``camera`` is ``"static"`` or one of ``CAMERA_MOTIONS``."""

    objects: tuple[ObjectSpec, ...]
    background: BackgroundSpec = field(default_factory=BackgroundSpec)
    camera: str = "static"
    num_frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8

    def to_dict(self) -> dict:
        """A JSON-ready dict (``ClipSpec.from_dict`` inverts it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClipSpec":
        """Rebuild a spec from ``to_dict`` output (e.g. a metadata file's ``spec``)."""
        def obj(d):
            path = None if d.get("path") is None else tuple(tuple(p) for p in d["path"])
            return ObjectSpec(**{**d, "start": tuple(d["start"]), "path": path})

        rest = {k: v for k, v in data.items() if k not in ("objects", "background")}
        objects = tuple(obj(d) for d in data["objects"])
        return cls(objects=objects, background=BackgroundSpec(**data["background"]), **rest)


def validate_spec(spec: ClipSpec) -> None:
    """Raise ``ValueError`` naming the first unknown word or impossible setting in ``spec``."""
    def check(value, allowed, what):
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(map(str, allowed))}")

    if spec.num_frames < 2 or min(spec.height, spec.width) < 16:
        raise ValueError(f"a clip needs >= 2 frames and >= 16x16 pixels; got {spec.num_frames} frames of "
                         f"{spec.height}x{spec.width}")
    check(spec.camera, ("static",) + ALL_CAMERA_MOTIONS, "camera motion")
    check(spec.background.kind, ("solid", "texture"), "background kind")
    check(spec.background.name, BACKGROUNDS if spec.background.kind == "solid" else TEXTURES, "background")
    for o in spec.objects:
        check(o.shape, SHAPES, "shape")
        check(o.color, OBJECT_COLORS, "color")
        check(o.size, SIZES, "size")
        check(o.motion, ALL_MOTIONS, "motion")
        if o.motion in _DIRECTIONS:
            check(o.speed, SPEEDS, "speed")
        if o.motion == CURVE and (o.path is None or len(o.path) != 4):
            raise ValueError("a curved motion needs path = four (x, y) Bézier control points")


# ----------------------------------------------------------------------------------------------
# Geometry of objects (reference pixels)
# ----------------------------------------------------------------------------------------------


def object_radius(obj: ObjectSpec, height: int, width: int) -> float:
    """Half-extent ``s`` in reference pixels: circle radius, half the square's side, half the triangle's base/height."""
    return SIZES[obj.size] * min(height, width)


def object_track(obj: ObjectSpec, num_frames: int, height: int, width: int) -> np.ndarray:
    """Centroid ``[F, 2]`` of the object on the plane, in reference pixels, for every frame."""
    t = np.linspace(0.0, 1.0, num_frames)
    if obj.motion == CURVE:
        return bezier(obj.path, t)
    start = np.asarray(obj.start, dtype=float)
    if obj.motion == "still":
        return np.tile(start, (num_frames, 1))
    ux, uy = _DIRECTIONS[obj.motion]
    travel = SPEEDS[obj.speed] * np.array([width, height], dtype=float)
    return start + t[:, None] * np.array([ux, uy]) * travel


def image_geometry(obj: ObjectSpec, track: np.ndarray, warps: np.ndarray, height: int, width: int):
    """Per-frame image centroid ``[F, 2]`` and bounding box ``[F, 4]`` (x0, y0, x1, y1) of an object.

    ``warps[k]`` maps reference pixels to frame-k pixels (a similarity; a general homography in orbits, where a
    circle's box comes from 64 projected boundary points plus a quarter pixel).
    """
    s = object_radius(obj, height, width)
    verts = shape_vertices(obj.shape, s)
    centres, boxes = [], []
    for point, M in zip(track, warps):
        c = apply_homography(M, point)
        if verts is None and not M[2, :2].any():
            r = s * math.sqrt(abs(np.linalg.det(M[:2, :2] / M[2, 2])))
            box = (c[0] - r, c[1] - r, c[0] + r, c[1] + r)
        elif verts is None:  # projective: the image of a circle is an ellipse; bound it by its sampled boundary
            angle = np.linspace(0.0, 2 * math.pi, 64, endpoint=False)
            v = apply_homography(M, point + s * np.stack([np.cos(angle), np.sin(angle)], -1))
            box = (*(v.min(0) - 0.25), *(v.max(0) + 0.25))
        else:
            v = apply_homography(M, point + verts)
            box = (*v.min(0), *v.max(0))
        centres.append(c)
        boxes.append(box)
    return np.array(centres), np.array(boxes)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def camera_setup(spec: ClipSpec):
    """``(intrinsics [F, 4] (fx, fy, cx, cy), c2w [F, 4, 4], homographies [F, 3, 3], warps [F, 3, 3])`` of a clip.

    ``homographies[k]`` maps plane points to frame-k pixels; ``warps[k]`` maps reference pixels (frame 0's, with
    the reference intrinsics) to frame-k pixels. Intrinsics change over the clip only in zooms.
    """
    intr = camera_intrinsics(spec.camera, spec.num_frames, spec.height, spec.width)
    c2w = camera_path(spec.camera, spec.num_frames, spec.height, spec.width)
    homographies = np.stack([plane_homography(intrinsic_matrix(*k), c) for k, c in zip(intr, c2w)])
    warps = homographies @ np.linalg.inv(intrinsic_matrix(*intrinsics(spec.height, spec.width)))
    return intr, c2w, homographies, warps


def render_clip(spec: ClipSpec) -> tuple[np.ndarray, dict]:
    """Render a clip: ``(frames uint8 [F, H, W, 3], metadata)`` (metadata keys: see ``clip_metadata``)."""
    validate_spec(spec)
    F, H, W = spec.num_frames, spec.height, spec.width
    intr, c2w, homographies, warps = camera_setup(spec)
    bg = spec.background
    layout = texture = None
    if bg.kind == "texture":
        layout = plane_layout(homographies, H, W)
        texture = texture_image(bg.name, bg.seed, layout)
    tracks = [object_track(o, F, H, W) for o in spec.objects]
    geometry = [image_geometry(o, tr, warps, H, W) for o, tr in zip(spec.objects, tracks)]
    for i, (o, (_, boxes)) in enumerate(zip(spec.objects, geometry)):
        if not boxes_inside(boxes, H, W, margin=0.0):
            k = int(np.argmax((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > W) | (boxes[:, 3] > H)))
            raise ValueError(f"object {i} ({o.color} {o.shape}) leaves the {H}x{W} frame at frame {k}: "
                             f"bounding box {np.round(boxes[k], 2).tolist()}")
    frames = np.empty((F, H, W, 3), dtype=np.float64)
    for k in range(F):
        if texture is None:
            frames[k] = np.array(BACKGROUNDS[bg.name]) / 255.0
        else:
            frames[k] = render_plane(texture, layout, homographies[k], H, W)[..., None]
        inverse = np.linalg.inv(warps[k])
        for o, track, (_, boxes) in zip(spec.objects, tracks, geometry):
            alpha, x0, y0 = coverage(o.shape, object_radius(o, H, W), track[k], inverse, boxes[k], H, W)
            patch = frames[k, y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]]
            patch[:] = alpha[..., None] * (np.array(OBJECT_COLORS[o.color]) / 255.0) + (1 - alpha[..., None]) * patch
    uint8 = np.round(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)
    return uint8, clip_metadata(spec, intr, c2w, tracks, geometry, layout)


def clip_metadata(spec, intr, c2w, tracks, geometry, layout) -> dict:
    """The metadata dict of a rendered clip.

    Keys: ``num_frames, height, width, fps``; ``background`` (``kind, name, seed``, ``rgb`` for a solid);
    ``plane`` (texture placement ``origin [X0, Y0], texel_size, size [rows, cols]``; None for a solid);
    ``camera`` (``motion``, ``intrinsics`` ``[F][fx, fy, cx, cy]``, ``c2w`` ``[F][4][4]``); ``objects``, one
    per object in drawing order with ``shape, color, rgb, size, radius_px, motion, speed, z``,
    ``trajectory`` ``[F][x, y]`` (image area centroid, pixel centres at +0.5), ``bbox`` ``[F][x0, y0, x1, y1]``
    and ``plane_trajectory`` ``[F][X, Y]`` (world units on z = 0); ``spec`` (``ClipSpec.to_dict``).
    """
    F, H, W = spec.num_frames, spec.height, spec.width
    intr = np.asarray(intr, dtype=float).reshape(-1, 4)
    fx, fy, cx, cy = intr[0]  # the reference camera: plane coordinates of reference pixels
    objects = []
    for z, (o, track, (centres, boxes)) in enumerate(zip(spec.objects, tracks, geometry)):
        plane = (track - np.array([cx, cy])) / np.array([fx, fy])
        objects.append(dict(
            shape=o.shape, color=o.color, rgb=list(OBJECT_COLORS[o.color]), size=o.size,
            radius_px=object_radius(o, H, W), motion=o.motion, speed=o.speed, z=z,
            trajectory=centres.tolist(), bbox=boxes.tolist(), plane_trajectory=plane.tolist(),
        ))
    bg = asdict(spec.background)
    if spec.background.kind == "solid":
        bg["rgb"] = list(BACKGROUNDS[spec.background.name])
    return dict(
        num_frames=F, height=H, width=W, fps=spec.fps, background=bg, plane=layout,
        camera=dict(motion=spec.camera, convention="opencv",
                    intrinsics=[list(map(float, intr[min(k, len(intr) - 1)])) for k in range(F)],
                    c2w=c2w.tolist()),
        objects=objects, spec=spec.to_dict(),
    )


# ----------------------------------------------------------------------------------------------
# Hold-out
# ----------------------------------------------------------------------------------------------


def parse_holdout(holdout=None) -> tuple[tuple[str, str, str], ...]:
    """Hold-out patterns as ``(color, shape, motion)`` triples from strings like ``"red circle left"`` or triples.

    ``None`` gives ``DEFAULT_HOLDOUT``; ``*`` is a wildcard; unknown words are a ``ValueError``.
    """
    entries = DEFAULT_HOLDOUT if holdout is None else holdout
    if isinstance(entries, str):
        entries = [entries]
    patterns = []
    for entry in entries:
        words = tuple(entry.split()) if isinstance(entry, str) else tuple(entry)
        if len(words) != 3:
            raise ValueError(f"a hold-out pattern is 'color shape motion' (e.g. 'red circle left'); got {entry!r}")
        for word, allowed, what in zip(words, (COLORS, SHAPES, ALL_MOTIONS), ("color", "shape", "motion")):
            if word != "*" and word not in allowed:
                raise ValueError(f"unknown {what} {word!r} in hold-out pattern {entry!r}; expected '*' or one of "
                                 f"{', '.join(allowed)}")
        patterns.append(words)
    return tuple(patterns)


def object_matches(obj: ObjectSpec, patterns) -> bool:
    """Whether ``obj``'s (color, shape, motion) matches any of the parsed ``patterns``."""
    values = (obj.color, obj.shape, obj.motion)
    return any(all(p in ("*", v) for p, v in zip(pattern, values)) for pattern in patterns)


def is_held_out(spec: ClipSpec, holdout=None) -> bool:
    """Whether any object of ``spec`` matches a hold-out pattern (``None``: ``DEFAULT_HOLDOUT``)."""
    patterns = parse_holdout(holdout)
    return any(object_matches(o, patterns) for o in spec.objects)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options):
    """One element of ``options``, uniformly."""
    options = list(options)
    return options[int(rng.integers(len(options)))]


def sample_object(rng, spec: ClipSpec, warps: np.ndarray, fixed=("*", "*", "*"), exclude=()) -> ObjectSpec | None:
    """Draw one object's words and a start/path that keep it inside the frame; None if the draw is unusable.

    ``fixed`` pins (color, shape, motion) words ('*' = free); draws matching ``exclude`` patterns are rejected.
    """
    H, W, F = spec.height, spec.width, spec.num_frames
    used = {o.color for o in spec.objects}
    color = fixed[0] if fixed[0] != "*" else _pick(rng, [c for c in COLORS if c not in used])
    shape = fixed[1] if fixed[1] != "*" else _pick(rng, SHAPES)
    motions = ALL_MOTIONS if spec.camera == "static" else ("still",)
    motion = fixed[2] if fixed[2] != "*" else _pick(rng, motions)
    size = _pick(rng, SIZES)
    speed = _pick(rng, SPEEDS) if motion in _DIRECTIONS else None
    obj = ObjectSpec(shape=shape, color=color, size=size, motion=motion, speed=speed)
    if color in used or object_matches(obj, exclude):
        return None
    ex = shape_extent(shape, object_radius(obj, H, W))
    lo = np.array([MARGIN - ex[0], MARGIN - ex[1]])
    hi = np.array([W - MARGIN - ex[2], H - MARGIN - ex[3]])
    if motion == CURVE:
        points = rng.uniform(lo, hi, size=(4, 2))
        chord = points[3] - points[0]
        length = float(np.hypot(*chord))
        offsets = points[1:3] - points[0]
        bend = float(np.abs(chord[0] * offsets[:, 1] - chord[1] * offsets[:, 0]).max()) / max(length, 1e-9)
        if length < 0.3 * min(H, W) or bend < 0.12 * min(H, W):
            return None
        obj = replace(obj, start=tuple(points[0]), path=tuple(map(tuple, points)))
    else:
        shift = object_track(replace(obj, start=(0.0, 0.0)), F, H, W)[-1]
        low, high = lo - np.minimum(shift, 0), hi - np.maximum(shift, 0)
        if (low > high).any():
            return None
        obj = replace(obj, start=tuple(rng.uniform(low, high)))
    obj = replace(obj, start=tuple(float(v) for v in obj.start),
                  path=None if obj.path is None else tuple(tuple(float(v) for v in p) for p in obj.path))
    boxes = image_geometry(obj, object_track(obj, F, H, W), warps, H, W)[1]
    return obj if boxes_inside(boxes, H, W) else None


def sample_clip_spec(rng: np.random.Generator, frames: int = 17, height: int = 64, width: int = 64, fps: float = 8,
                     camera_fraction: float = 0.25, max_objects: int = 3, exclude=(), first_object=None,
                     texture_fraction: float = 0.5, attempts: int = 100,
                     camera_motions=CAMERA_MOTIONS, camera_texture_fraction: float = 1.0) -> ClipSpec:
    """Draw a random clip spec.

    The camera moves (a random ``CAMERA_MOTIONS`` entry, over a textured plane, objects still) with
    probability ``camera_fraction``; otherwise it is static and the background is textured with
    probability ``texture_fraction``. 1 to ``max_objects`` objects (``OBJECT_COUNTS`` weights) get
    distinct colours and never touch each other or the border. ``exclude``: parsed hold-out patterns
    no object may match. ``first_object``: a ``(color, shape, motion)`` pattern the first object must
    match ('*' = free; a non-still motion forces a static camera). ``camera_motions``: the moving cameras drawn
    from (default ``CAMERA_MOTIONS``, so older seeds keep their clips; ``ALL_CAMERA_MOTIONS`` adds zooms and orbits).
    ``camera_texture_fraction``: the share of moving-camera clips over a textured plane (the rest get a solid one,
    where only the objects show the motion: what a VAE trained on solid backgrounds reproduces); drawn only when
    below 1, so the default keeps older seeds' clips.
    """
    unknown = [m for m in camera_motions if m not in ALL_CAMERA_MOTIONS]
    if unknown or not camera_motions:
        raise ValueError(f"camera_motions must be a non-empty list of {', '.join(ALL_CAMERA_MOTIONS)}; got {unknown}")
    first = None if first_object is None else parse_holdout([first_object])[0]
    if first is not None:
        first = tuple(w if w != "*" else _pick(rng, opts) for w, opts in zip(first, (COLORS, SHAPES, ALL_MOTIONS)))
    moving = rng.random() < camera_fraction and (first is None or first[2] == "still")
    camera = _pick(rng, camera_motions) if moving else "static"
    textured = moving and (camera_texture_fraction >= 1.0 or rng.random() < camera_texture_fraction)
    if textured or (not moving and rng.random() < texture_fraction):
        background = BackgroundSpec("texture", _pick(rng, TEXTURES), int(rng.integers(2**31 - 1)))
    else:
        background = BackgroundSpec("solid", _pick(rng, BACKGROUNDS))
    counts = [n for n in OBJECT_COUNTS if n <= max_objects]
    weights = np.array([OBJECT_COUNTS[n] for n in counts])
    target = int(rng.choice(counts, p=weights / weights.sum()))
    spec = ClipSpec((), background, camera, frames, height, width, fps)
    warps = camera_setup(spec)[3]
    geometry = []
    for index in range(target):
        for _ in range(attempts):
            obj = sample_object(rng, spec, warps, fixed=first if index == 0 and first else ("*",) * 3, exclude=exclude)
            if obj is None:
                continue
            boxes = image_geometry(obj, object_track(obj, frames, height, width), warps, height, width)[1]
            if all(boxes_apart(boxes, other) for other in geometry):
                spec = replace(spec, objects=spec.objects + (obj,))
                geometry.append(boxes)
                break
        else:
            if index == 0:
                raise ValueError(f"could not place an object in a {height}x{width} clip after {attempts} attempts "
                                 f"(camera {camera}, first object {first}); the frame may be too small")
            break
    return spec


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------

_MOTION_LONG = {"left": ("moving", "to the left"), "right": ("moving", "to the right"), "up": ("moving", "up"),
                "down": ("moving", "down"), "still": ("staying", "still"), "curve": ("moving", "along a curved path")}
_MOTION_SHORT = {"left": "slides left", "right": "slides right", "up": "slides up", "down": "slides down",
                 "still": "stays still", "curve": "follows a curve"}
_MOTION_PLAIN = {"left": "left", "right": "right", "up": "up", "down": "down", "still": "stays still",
                 "curve": "along a curve"}
_CAMERA_WORDS = {"pan_left": "pans left", "pan_right": "pans right", "pan_up": "pans up", "pan_down": "pans down",
                 "dolly_in": "dollies in", "dolly_out": "dollies out", "roll_clockwise": "rolls clockwise",
                 "roll_counterclockwise": "rolls counterclockwise", "zoom_in": "zooms in", "zoom_out": "zooms out",
                 "orbit_left": "orbits left", "orbit_right": "orbits right"}


def object_phrase(obj: ObjectSpec, style: str) -> str:
    """Describe one object: ``long`` ("a small red circle moving quickly to the left"), ``short``
    ("red circle slides left"), or ``that`` ("a red circle that moves slowly up")."""
    speed = SPEED_WORDS[obj.speed] if obj.speed else ""
    size = "" if obj.size == "medium" else obj.size + " "
    if style == "short":
        return " ".join(w for w in (obj.color, obj.shape, _MOTION_SHORT[obj.motion], speed) if w)
    if style == "that":
        verb = "" if obj.motion == "still" else "moves"
        words = (f"a {size}{obj.color} {obj.shape} that", verb, speed, _MOTION_PLAIN[obj.motion])
        return " ".join(w for w in words if w)
    verb, where = _MOTION_LONG[obj.motion]
    return " ".join(w for w in (f"a {size}{obj.color} {obj.shape}", verb, speed, where) if w)


def background_phrase(background: BackgroundSpec) -> str:
    """``"gray background"``, ``"checkered background"``, ..."""
    word = background.name if background.kind == "solid" else TEXTURE_WORDS[background.name]
    return f"{word} background"


def caption_for(spec: ClipSpec, rng: np.random.Generator) -> str:
    """A caption for ``spec`` from one of several templates (chosen with ``rng``).

    Every caption names each object's colour, shape and motion (and speed word, if any), in
    drawing order; the background and the camera motion are named where the template has room.
    """
    template = int(rng.integers(4))
    style = ("long", "short", "that", "long")[template]
    objects = " and ".join(object_phrase(o, style) for o in spec.objects) or "an empty scene"
    bg = background_phrase(spec.background)
    text = (f"{objects} on a {bg}", objects, f"{objects}, {bg}", f"a video of {objects} over a {bg}")[template]
    if spec.camera != "static":
        joiner = (" while the camera ", ", camera ", ", the camera ", " as the camera ")[template]
        text += joiner + _CAMERA_WORDS[spec.camera]
    return text


# ----------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------


def clip_rng(seed: int, index: int, split: str) -> np.random.Generator:
    """The random generator of clip ``index``: independent of every other clip, so clips can be made in any order."""
    return np.random.default_rng([seed, index, 0 if split == "train" else 1])


def make_clip(index: int, seed: int, split: str = "train", holdout=None, **sample_kwargs) -> tuple[ClipSpec, str]:
    """The spec and caption of clip ``index`` of a dataset (``sample_kwargs`` go to ``sample_clip_spec``)."""
    rng = clip_rng(seed, index, split)
    patterns = parse_holdout(holdout)
    if split == "train":
        spec = sample_clip_spec(rng, exclude=patterns, **sample_kwargs)
    elif split == "holdout":
        if not patterns:
            raise ValueError("split='holdout' needs at least one hold-out pattern")
        spec = sample_clip_spec(rng, first_object=patterns[int(rng.integers(len(patterns)))], **sample_kwargs)
    else:
        raise ValueError(f"split must be 'train' or 'holdout'; got {split!r}")
    return spec, caption_for(spec, rng)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fp:
        fp.write(text)
    os.replace(tmp, path)


def write_dataset(out_dir, num: int, seed: int = 0, frames: int = 17, height: int = 64, width: int = 64,
                  fps: float = 8, holdout=None, camera_fraction: float = 0.25, format: str = "mp4",
                  split: str = "train", max_objects: int = 3, texture_fraction: float = 0.5,
                  progress: bool = True, camera_motions=CAMERA_MOTIONS, camera_texture_fraction: float = 1.0) -> dict:
    """Render ``num`` clips into ``out_dir`` in the standard dataset format; return the ``world.json`` summary.

    Writes ``clips/NNNNN.mp4`` (``format="mp4"``, H.264) or ``clips/NNNNN/`` PNG folders (``"png"``,
    lossless), ``clips/NNNNN.txt`` (caption), ``clips/NNNNN.json`` (``render_clip`` metadata plus
    ``caption``, ``index``, ``split``, ``held_out``), ``manifest.jsonl`` (one
    ``{"video", "caption", "metadata"}`` object per clip, paths relative to ``out_dir``) and
    ``world.json`` (settings, hold-out patterns, counts). The same arguments give identical metadata
    and identical PNG frames. ``split="train"`` never contains a held-out combination;
    ``split="holdout"`` contains only held-out clips (see the module docstring).
    """
    from tqdm.auto import tqdm

    from videogen.io import save_video

    if format not in ("mp4", "png"):
        raise ValueError(f"format must be 'mp4' or 'png'; got {format!r}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int; got {num!r}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    patterns = parse_holdout(holdout)
    counts = {key: Counter() for key in ("shape", "color", "motion", "camera", "background", "objects")}
    lines = []
    for index in tqdm(range(num), desc=f"shapes world ({split})", disable=not progress):
        spec, caption = make_clip(index, seed, split, patterns, frames=frames, height=height, width=width, fps=fps,
                                  camera_fraction=camera_fraction, max_objects=max_objects,
                                  texture_fraction=texture_fraction, camera_motions=tuple(camera_motions),
                                  camera_texture_fraction=camera_texture_fraction)
        video, meta = render_clip(spec)
        name = f"{index:05d}"
        video_rel = f"clips/{name}.mp4" if format == "mp4" else f"clips/{name}"
        save_video(video, out / video_rel, fps=fps)
        meta.update(caption=caption, index=index, split=split, held_out=is_held_out(spec, patterns))
        _write_text(out / "clips" / f"{name}.txt", caption + "\n")
        _write_text(out / "clips" / f"{name}.json", json.dumps(meta))
        lines.append(json.dumps(dict(video=video_rel, caption=caption, metadata=f"clips/{name}.json")))
        for o in spec.objects:
            counts["shape"][o.shape] += 1
            counts["color"][o.color] += 1
            counts["motion"][o.motion] += 1
        counts["camera"][spec.camera] += 1
        counts["background"][spec.background.name] += 1
        counts["objects"][str(len(spec.objects))] += 1
    _write_text(out / "manifest.jsonl", "\n".join(lines) + "\n")
    world = dict(
        seed=seed, num=num, split=split, frames=frames, height=height, width=width, fps=fps, format=format,
        camera_fraction=camera_fraction, texture_fraction=texture_fraction, max_objects=max_objects,
        camera_texture_fraction=camera_texture_fraction, holdout=[" ".join(p) for p in patterns],
        counts={k: dict(sorted(v.items())) for k, v in counts.items()},
        colors=COLORS, backgrounds=BACKGROUNDS, textures=list(TEXTURES), shapes=list(SHAPES),
        motions=list(ALL_MOTIONS), speeds=SPEEDS, sizes=SIZES, camera_motions=list(camera_motions),
    )
    _write_text(out / "world.json", json.dumps(world, indent=2) + "\n")
    return world


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def add_cli(subparsers):
    """Register ``videogen synth`` on an argparse subparsers object; return its parser."""
    p = subparsers.add_parser("synth", help="render the synthetic shapes world as a dataset: clips, captions, metadata")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--fps", type=float, default=8)
    p.add_argument("--format", choices=["mp4", "png"], default="mp4", help="mp4 (H.264) or png (lossless folders)")
    p.add_argument("--split", choices=["train", "holdout"], default="train")
    p.add_argument("--camera-fraction", dest="camera_fraction", type=float, default=0.25,
                   help="share of clips with a moving camera")
    p.add_argument("--texture-fraction", dest="texture_fraction", type=float, default=0.5,
                   help="share of static-camera clips with a textured (not solid) background")
    p.add_argument("--max-objects", dest="max_objects", type=int, default=3)
    p.add_argument("--camera-motions", dest="camera_motions", default="default",
                   help="moving cameras drawn from: 'default' (pans, dollies, rolls), 'all' (also zoom_in/out, "
                        "orbit_left/right) or a comma-separated list")
    p.add_argument("--camera-texture-fraction", dest="camera_texture_fraction", type=float, default=1.0,
                   help="share of moving-camera clips over a textured plane (the rest: solid, objects only)")
    p.add_argument("--holdout", default="default",
                   help="'default', 'none', or ';'-separated 'color shape motion' patterns ('*' = any)")
    p.set_defaults(func=run_synth)
    return p


def run_synth(args) -> int:
    """Run ``videogen synth``: write the dataset and print a one-line summary."""
    if args.holdout == "default":
        holdout = None
    elif args.holdout == "none":
        holdout = ()
    else:
        holdout = [p.strip() for p in args.holdout.split(";") if p.strip()]
    motions = {"default": CAMERA_MOTIONS, "all": ALL_CAMERA_MOTIONS}.get(
        args.camera_motions, tuple(m.strip() for m in args.camera_motions.split(",") if m.strip()))
    world = write_dataset(args.out, args.num, args.seed, frames=args.frames, height=args.height, width=args.width,
                          fps=args.fps, holdout=holdout, camera_fraction=args.camera_fraction, format=args.format,
                          split=args.split, max_objects=args.max_objects, texture_fraction=args.texture_fraction,
                          camera_motions=motions, camera_texture_fraction=args.camera_texture_fraction)
    moving = sum(v for k, v in world["counts"]["camera"].items() if k != "static")
    print(f"wrote {world['num']} {world['split']} clips ({args.frames}x{args.height}x{args.width}, {args.format}, "
          f"{moving} with camera motion, {len(world['holdout'])} hold-out patterns) to {args.out}")
    return 0
