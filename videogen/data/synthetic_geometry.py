"""Geometry of the shapes world: camera poses, plane homographies, procedural textures, shapes and their coverage.

Everything here is a small pure function over numpy arrays; ``videogen.data.synthetic`` composes
them into clips and documents the conventions in full. In short:

- **Pixels**: continuous image coordinates, x right, y down, origin at the top-left *corner* of the
  image; pixel ``(i, j)`` (column, row) covers ``[i, i+1) x [j, j+1)`` and its centre is
  ``(i + 0.5, j + 0.5)``.
- **World**: the ground plane is ``z = 0``; X right and Y down as seen by the reference camera,
  Z away from that camera (into the plane).
- **Camera** (OpenCV convention): camera axes x right, y down, z forward (viewing direction).
  ``c2w`` is the 4x4 camera-to-world matrix ``[[R, t], [0, 1]]``: R's columns are the camera axes in
  world coordinates and t the camera centre. The reference camera has ``R = I``, ``t = (0, 0, -1)``:
  it looks straight down on the plane from one unit away.
- **Intrinsics** ``(fx, fy, cx, cy)`` in pixels of the continuous coordinates above, so
  ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` and ``(cx, cy) = (W/2, H/2)`` is the image centre.
  OpenCV's own functions put pixel centres at integers: subtract 0.5 from cx and cy for them.
- **Homography**: a plane point ``(X, Y, 0)`` appears at pixel ``H @ (X, Y, 1)`` (then divide by the
  third coordinate) with ``H = K [r1 r2 t']``, where ``[R' | t'] = w2c = inverse(c2w)`` and r1, r2 are
  R''s first two columns. Except in orbits the camera never tilts (only roll about its axis), so H is a
  similarity: areas scale uniformly and the image of an area centroid is the centroid of the image. An orbit
  (``orbit_*``) tilts it by up to ``ORBIT_DEGREES``: H is then a general homography (rendering stays exact; a
  recorded centroid is the projected plane centroid, which differs from the image area centroid by a small
  fraction of a pixel at these sizes). A zoom (``zoom_*``) changes the focal length, not the pose.
- **Texture sampling** is plain bilinear (no mip-mapping): the texture has ``TEXELS_PER_PIXEL`` texels
  per pixel where the camera is closest, so far frames (``dolly_out``: 1.6x the distance) minify it
  up to 3.2x and its fine detail aliases a little; the soft ``EDGE`` keeps that small.
- **Shapes** are defined in reference pixels around their area centroid and covered by
  ``SUPERSAMPLE`` x ``SUPERSAMPLE`` point samples per pixel, each mapped back to reference pixels.
"""

from __future__ import annotations

import math

import numpy as np

CAMERA_MOTIONS = (
    "pan_left", "pan_right", "pan_up", "pan_down", "dolly_in", "dolly_out", "roll_clockwise", "roll_counterclockwise",
)
# Added later: not in CAMERA_MOTIONS, which the samplers draw from by default, so older seeds give the same clips.
EXTRA_CAMERA_MOTIONS = ("zoom_in", "zoom_out", "orbit_left", "orbit_right")
ALL_CAMERA_MOTIONS = CAMERA_MOTIONS + EXTRA_CAMERA_MOTIONS
FOCAL = 1.0  # fx = fy = FOCAL * width: a 53.1 degree horizontal field of view
PAN = 0.35  # a pan moves the camera by this fraction of the reference view's width (x) or height (y)
DOLLY_DEPTH = {"dolly_in": 0.6, "dolly_out": 1.6}  # distance to the plane at the last frame (first: 1)
ROLL_DEGREES = 30.0  # total roll over a clip
ZOOM = {"zoom_in": 1.6, "zoom_out": 0.625}  # focal length at the last frame / at the first
ORBIT_DEGREES = 20.0  # an orbit's total turn about the plane point under the reference camera
EDGE = 0.015  # width of a texture's soft edges, world units (about one reference pixel at 64 px width)
TEXTURES = ("checker", "stripes", "noise")
TEXELS_PER_PIXEL = 2  # texture resolution: texels per image pixel at the closest camera distance
SUPERSAMPLE = 8  # coverage samples per pixel and axis: centroids within ~0.08 px
MARGIN = 1.0  # px between any object and the frame border
GAP = 2.0  # px between the bounding boxes of two objects


# ----------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------


def intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of the shapes-world camera for an image of ``height x width`` pixels."""
    f = FOCAL * width
    return (f, f, width / 2.0, height / 2.0)


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """The 3x3 matrix K of ``(fx, fy, cx, cy)``."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def camera_intrinsics(motion: str, num_frames: int, height: int, width: int) -> np.ndarray:
    """Per-frame ``[F, 4]`` (fx, fy, cx, cy): the shapes-world camera's, with the focal length growing linearly in
    the frame index to ``ZOOM[motion]`` times its start for a zoom (the principal point stays at the centre)."""
    k = np.tile(np.array(intrinsics(height, width)), (num_frames, 1))
    if motion in ZOOM:
        s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
        k[:, :2] *= (1.0 + (ZOOM[motion] - 1.0) * s)[:, None]
    return k


def orbit_matrix(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about the world y axis (x turns towards -z: a camera on it moves left)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def roll_matrix(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about the camera's z axis (x turns towards y: clockwise on screen)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_path(motion: str, num_frames: int, height: int, width: int) -> np.ndarray:
    """Camera-to-world matrices ``[F, 4, 4]`` for a camera motion; frame 0 is always the reference camera.

    ``static``: the reference camera throughout. ``pan_*``: the camera translates parallel to the
    plane (a truck/pedestal move; "pan" as in the shapes-world captions) by ``PAN`` of the reference
    view, so the scene slides the *opposite* way in the image. ``dolly_in``/``dolly_out``: it moves
    along its optical axis from distance 1 to ``DOLLY_DEPTH``. ``roll_*``: it rotates about its
    optical axis by ``ROLL_DEGREES``; ``roll_clockwise`` turns the camera clockwise as seen on screen,
    so the scene turns counterclockwise. ``zoom_*``: the pose stays the reference one (the focal length changes:
    ``camera_intrinsics``). ``orbit_left``/``orbit_right``: the camera circles the plane point ``(0, 0, 0)`` under
    the reference camera at distance 1, about the world y axis, by ``ORBIT_DEGREES``, always looking at it; it moves
    left (right), tilting towards the pivot. Every motion is linear in the frame index.
    """
    if motion != "static" and motion not in ALL_CAMERA_MOTIONS:
        raise ValueError(f"unknown camera motion {motion!r}; expected 'static' or one of "
                         f"{', '.join(ALL_CAMERA_MOTIONS)}")
    s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    f = FOCAL * width
    position = np.zeros((num_frames, 3))
    position[:, 2] = -1.0
    angle = np.zeros(num_frames)
    if motion.startswith("pan_"):
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[motion[4:]]
        span = (width if axis == 0 else height) / f
        position[:, axis] = sign * PAN * span * s
    elif motion.startswith("dolly_"):
        position[:, 2] = -(1.0 + (DOLLY_DEPTH[motion] - 1.0) * s)
    elif motion.startswith("roll_"):
        angle = (1 if motion == "roll_clockwise" else -1) * math.radians(ROLL_DEGREES) * s
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    for k in range(num_frames):
        c2w[k, :3, :3] = roll_matrix(angle[k])
        c2w[k, :3, 3] = position[k]
    if motion.startswith("orbit_"):
        turn = (1 if motion == "orbit_left" else -1) * math.radians(ORBIT_DEGREES) * s
        for k in range(num_frames):
            R = orbit_matrix(turn[k])
            c2w[k, :3, :3] = R
            c2w[k, :3, 3] = R @ np.array([0.0, 0.0, -1.0])
    return c2w


def plane_homography(K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking plane points ``(X, Y, 1)`` (z = 0) to homogeneous pixels: ``K [r1 r2 t]`` of w2c."""
    w2c = np.linalg.inv(c2w)
    return K @ np.column_stack([w2c[:3, 0], w2c[:3, 1], w2c[:3, 3]])


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points ``[..., 2]`` through the homography ``H`` (with the perspective divide)."""
    p = points @ H[:, :2].T + H[:, 2]
    return p[..., :2] / p[..., 2:3]


# ----------------------------------------------------------------------------------------------
# Textures: smooth grey functions of world coordinates, so any extent or resolution shows the same pattern
# ----------------------------------------------------------------------------------------------


def texture_value(kind: str, seed: int, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Grey level in [0, 1] of the procedural texture ``kind`` (seeded) at world points ``(X, Y)``.

    ``checker``: a checkerboard of 0.08-0.16 unit cells; ``stripes``: straight stripes at a random
    angle, period 0.1-0.2; ``noise``: a sum of 16 random plane waves (wavelengths 0.08-0.5), a soft
    mottled pattern. Edges are soft (``EDGE`` wide) so the texture is band-limited and resamples
    cleanly. Every texture is grey (R = G = B): object colours stay separable from it by chroma.
    """
    rng = np.random.default_rng(seed)
    lo, hi = rng.uniform(0.15, 0.35), rng.uniform(0.65, 0.85)
    if kind == "checker":
        cell = rng.uniform(0.08, 0.16)
        px, py = rng.uniform(0.0, 2 * cell, size=2)
        k = 2 * cell / (math.pi * EDGE)
        s = np.tanh(k * np.sin(math.pi * (X + px) / cell)) * np.tanh(k * np.sin(math.pi * (Y + py) / cell))
    elif kind == "stripes":
        theta, period, phase = rng.uniform(0, math.pi), rng.uniform(0.1, 0.2), rng.uniform(0, 2 * math.pi)
        k = period / (math.pi * EDGE)
        s = np.tanh(k * np.sin(2 * math.pi * (X * math.cos(theta) + Y * math.sin(theta)) / period + phase))
    elif kind == "noise":
        n = 16
        direction = rng.uniform(0, 2 * math.pi, n)
        wavelength = np.exp(rng.uniform(math.log(0.08), math.log(0.5), n))
        phase = rng.uniform(0, 2 * math.pi, n)
        amplitude = wavelength / math.sqrt(float(np.sum(wavelength**2)) / 2)  # unit standard deviation
        s = np.zeros(np.broadcast(X, Y).shape)
        for d, lam, ph, a in zip(direction, wavelength, phase, amplitude):
            s = s + a * np.sin(2 * math.pi * (X * math.cos(d) + Y * math.sin(d)) / lam + ph)
        s = np.tanh(0.8 * s)
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {', '.join(TEXTURES)}")
    return lo + (hi - lo) * (1.0 + s) / 2.0


def plane_layout(homographies: np.ndarray, height: int, width: int) -> dict:
    """Where the texture image lies on the plane: enough texels to cover every frame's view.

    Returns ``dict(origin=[X0, Y0], texel_size=tau, size=[rows, cols])``: texel ``(a, b)`` (column,
    row) covers ``[X0 + a tau, X0 + (a+1) tau) x [Y0 + b tau, ...)``, its centre at ``+ 0.5 tau``.
    ``tau`` gives ``TEXELS_PER_PIXEL`` texels per image pixel where the camera is closest.
    """
    corners = np.array([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]])
    seen = np.concatenate([apply_homography(np.linalg.inv(H), corners) for H in homographies])
    pixel_size = min(1.0 / math.sqrt(abs(np.linalg.det(H[:2, :2] / H[2, 2]))) for H in homographies)
    tau = pixel_size / TEXELS_PER_PIXEL
    x0, y0 = (math.floor(v / tau) - 2 for v in seen.min(0))
    x1, y1 = (math.ceil(v / tau) + 2 for v in seen.max(0))
    return dict(origin=[x0 * tau, y0 * tau], texel_size=tau, size=[y1 - y0, x1 - x0])


def texture_image(kind: str, seed: int, layout: dict) -> np.ndarray:
    """The texture ``kind`` rasterised at the texel centres of ``layout``: float ``[rows, cols]`` in [0, 1]."""
    (X0, Y0), tau, (rows, cols) = layout["origin"], layout["texel_size"], layout["size"]
    X = X0 + (np.arange(cols) + 0.5) * tau
    Y = Y0 + (np.arange(rows) + 0.5) * tau
    return texture_value(kind, seed, X[None, :], Y[:, None])


def sample_bilinear(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image [rows, cols]`` at texel-index coordinates ``a`` (column), ``b`` (row).

    Texel centres are at integer coordinates here.

    Coordinates outside the image are clamped to its border.
    """
    rows, cols = image.shape[:2]
    a = np.clip(a, 0.0, cols - 1.0)
    b = np.clip(b, 0.0, rows - 1.0)
    a0 = np.minimum(np.floor(a).astype(np.int64), cols - 2)
    b0 = np.minimum(np.floor(b).astype(np.int64), rows - 2)
    fa, fb = a - a0, b - b0
    top = (1 - fa) * image[b0, a0] + fa * image[b0, a0 + 1]
    bottom = (1 - fa) * image[b0 + 1, a0] + fa * image[b0 + 1, a0 + 1]
    return (1 - fb) * top + fb * bottom


def render_plane(texture: np.ndarray, layout: dict, H: np.ndarray, height: int, width: int) -> np.ndarray:
    """One frame of the textured plane seen through homography ``H``: float ``[height, width]``.

    Each pixel centre is mapped to the plane by ``H^-1`` and the texture sampled there bilinearly.
    """
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    world = apply_homography(np.linalg.inv(H), np.stack([u, v], axis=-1))
    tau = layout["texel_size"]
    a = (world[..., 0] - layout["origin"][0]) / tau - 0.5
    b = (world[..., 1] - layout["origin"][1]) / tau - 0.5
    return sample_bilinear(texture, a, b)


# ----------------------------------------------------------------------------------------------
# Shapes: polygons and coverage, in reference pixels relative to the area centroid
# ----------------------------------------------------------------------------------------------


def shape_vertices(shape: str, s: float) -> np.ndarray | None:
    """Polygon vertices ``[N, 2]`` relative to the area centroid (None for a circle).

    The triangle points up: base ``2s`` wide at ``y = +2s/3``, apex at ``y = -4s/3``.
    """
    if shape == "square":
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if shape == "triangle":
        return np.array([[-s, 2 * s / 3], [s, 2 * s / 3], [0.0, -4 * s / 3]])
    return None


def inside_shape(shape: str, s: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Boolean mask of offsets ``(dx, dy)`` from the centroid that lie inside the shape of half-extent ``s``."""
    if shape == "circle":
        return dx * dx + dy * dy <= s * s
    if shape == "square":
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    return (dy <= 2 * s / 3) & (dy >= -4 * s / 3 + 2 * np.abs(dx))


def shape_extent(shape: str, s: float) -> tuple[float, float, float, float]:
    """Axis-aligned bounds ``(x_min, y_min, x_max, y_max)`` of the shape around its centroid."""
    v = shape_vertices(shape, s)
    if v is None:
        return (-s, -s, s, s)
    return (*v.min(0), *v.max(0))


def bezier(points, t: np.ndarray) -> np.ndarray:
    """Points ``[len(t), 2]`` of the cubic Bézier curve with control points ``points`` at parameters ``t``."""
    p = np.asarray(points, dtype=float)
    t = t[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]



def boxes_inside(boxes: np.ndarray, height: int, width: int, margin: float = MARGIN) -> bool:
    """Whether every box ``[F, 4]`` lies at least ``margin`` px inside the frame."""
    return bool((boxes[:, :2] >= margin).all() and (boxes[:, 2] <= width - margin).all()
                and (boxes[:, 3] <= height - margin).all())


def boxes_apart(a: np.ndarray, b: np.ndarray, gap: float = GAP) -> bool:
    """Whether boxes ``a[k]`` and ``b[k]`` are separated by at least ``gap`` px (in x or in y) in every frame."""
    apart_x = (a[:, 2] + gap <= b[:, 0]) | (b[:, 2] + gap <= a[:, 0])
    apart_y = (a[:, 3] + gap <= b[:, 1]) | (b[:, 3] + gap <= a[:, 1])
    apart = apart_x | apart_y
    return bool(apart.all())


def coverage(shape: str, s: float, centre: np.ndarray, inverse_warp: np.ndarray, box, height: int, width: int):
    """Supersampled coverage of one object in one frame: ``(alpha [h, w], x0, y0)`` over the pixels of ``box``.

    ``inverse_warp`` maps frame pixels back to reference pixels, where the shape is tested.
    """
    x0, y0 = max(int(math.floor(box[0])), 0), max(int(math.floor(box[1])), 0)
    x1, y1 = min(int(math.ceil(box[2])), width), min(int(math.ceil(box[3])), height)
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (np.arange(x0, x1)[:, None] + sub).ravel()
    ys = (np.arange(y0, y1)[:, None] + sub).ravel()
    u, v = np.meshgrid(xs, ys)
    ref = apply_homography(inverse_warp, np.stack([u, v], axis=-1))
    inside = inside_shape(shape, s, ref[..., 0] - centre[0], ref[..., 1] - centre[1])
    alpha = inside.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(axis=(1, 3))
    return alpha, x0, y0
