"""Shapes-world metrics: plain image analysis of uint8 clips ``[F, H, W, 3]`` against a parsed prompt, no learned judge.

Segmentation
------------
Every shapes-world background is grey (R = G = B) and every object colour a saturated corner of the RGB
cube, so a pixel's *chroma* ``max(rgb) - min(rgb)`` is ``coverage * 255`` on an object and ~0 elsewhere
(see ``videogen.data.synthetic``). A pixel is an object pixel when its chroma is at least
``CHROMA_THRESHOLD`` (0.35 * 255). Object pixels are grouped into 4-connected components; components
smaller than ``MIN_AREA_FRACTION`` of the frame (and 4 px) are noise and dropped.

Per component (``measure_components``):

- ``color``: the nearest ``COLORS`` entry (Euclidean, on the unit cube) of the mean *normalised chroma
  vector* ``(pixel - min) / (max - min)`` of its pixels; robust to H.264 chroma noise and to generated
  (imperfect) colours because it ignores brightness and saturation.
- ``area``: sum of coverage ``chroma / 255`` over the component grown by one pixel (so anti-aliased edge
  pixels count with their fractional coverage); ``centroid``: the coverage-weighted centroid
  (pixel centres at +0.5, as the synthetic metadata).
- ``fill``: ``area / (width * height)`` where width (height) is the sum over columns (rows) of the
  largest coverage in that column (row): a sub-pixel bounding box. Square ~1, circle ~pi/4 = 0.785,
  triangle ~0.5. ``classify_shape``: ``fill >= SQUARE_FILL`` (0.89) -> square, ``>= CIRCLE_FILL`` (0.72)
  -> circle, else triangle. Measured on rendered clips (PNG): square 0.998-1.0, circle 0.78-0.80, triangle
  0.53-0.59; after an H.264 round trip, whose 4:2:0 chroma blur fills the triangle's bounding-box corners:
  square 0.955-1.0, circle 0.78-0.83, triangle 0.60-0.68; the thresholds sit in the gaps. Below ~48 px frames
  an H.264 round trip blurs small objects too much (32x32: shape accuracy ~66% on ground truth); generated
  clips are scored before any encoding, so this only matters when measuring decoded files.

Per clip (``measure_clip``): the *main object* of a frame is its largest component; ``dominant_color``
and ``shape`` are the most common main-object colour / shape over frames; ``count`` the median number of
components per frame; ``direction`` the main object's centroid displacement from the first to the last
frame, as a fraction of the frame width (x) and height (y): below ``STILL_THRESHOLD`` (0.1; the slowest
speed moves 0.2) on both axes -> ``still``, else the larger axis' sign (left/right/up/down);
``area_drift`` the std/mean of the main object's area over frames (a frame without objects counts as
area 0); ``color_drift`` the mean Euclidean distance of each frame's main-object chroma vector from
their mean. ``diversity`` of several clips (one prompt, several seeds) is the mean pairwise mean
absolute pixel difference, in [0, 1].
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import combinations

import numpy as np

from videogen.data.synthetic import BACKGROUNDS, COLORS, CURVE, SHAPES, SIZES, SPEED_WORDS, TEXTURE_WORDS

CHROMA_THRESHOLD = 0.35 * 255  # object pixel: max(rgb) - min(rgb) at least this
MIN_AREA_FRACTION = 0.004  # components smaller than this share of the frame (and 4 px) are noise
SQUARE_FILL = 0.89  # fill ratio at or above: square
CIRCLE_FILL = 0.72  # fill ratio at or above (and below SQUARE_FILL): circle; below: triangle
STILL_THRESHOLD = 0.1  # centroid displacement (fraction of the frame) below which an object is still

PALETTE_NAMES = tuple(COLORS)
PALETTE = np.array([COLORS[c] for c in PALETTE_NAMES], dtype=np.float64) / 255.0

# ----------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------

_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5}
_MOTION_WORDS = {
    "left": "left", "leftward": "left", "leftwards": "left", "right": "right", "rightward": "right",
    "rightwards": "right", "up": "up", "upward": "up", "upwards": "up", "rising": "up", "down": "down",
    "downward": "down", "downwards": "down", "falling": "down", "still": "still", "static": "still",
    "stationary": "still", "motionless": "still", "curve": CURVE, "curved": CURVE, "curving": CURVE,
}
_SPEEDS_BY_WORD = {w: s for s, w in SPEED_WORDS.items() if w}
_TEXTURES_BY_WORD = {w.split()[0]: t for t, w in TEXTURE_WORDS.items()}  # checkered, striped, mottled


def _words(text: str) -> list[str]:
    """Lower-case words (letters and digits) of ``text``."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _singular(word: str) -> str:
    """``circles`` -> ``circle`` for the shape words."""
    return word[:-1] if word.endswith("s") and word[:-1] in SHAPES else word


def parse_object(phrase: str) -> dict:
    """Colour, shape, motion, size and speed words of one object phrase (None where absent)."""
    words = [_singular(w) for w in _words(phrase)]
    pick = lambda options: next((w for w in words if w in options), None)  # noqa: E731
    motion = next((_MOTION_WORDS[w] for w in words if w in _MOTION_WORDS), None)
    speed = next((_SPEEDS_BY_WORD[w] for w in words if w in _SPEEDS_BY_WORD), None)
    if motion in ("left", "right", "up", "down") and speed is None:
        speed = "normal"
    return dict(color=pick(COLORS), shape=pick(SHAPES), motion=motion, size=pick(SIZES) or "medium", speed=speed)


def parse_background(text: str) -> dict:
    """``{"kind": "solid"|"texture", "name": ...}`` from the words before "background" (None if not named)."""
    words = _words(text.split("background")[0]) if "background" in text.lower() else []
    words = words[-2:]  # "gray background", "mottled gray background"
    for word in words:
        if word in _TEXTURES_BY_WORD:
            return dict(kind="texture", name=_TEXTURES_BY_WORD[word])
    for word in reversed(words):
        if word in BACKGROUNDS or word == "grey":
            return dict(kind="solid", name="gray" if word == "grey" else word)
    return None


def parse_prompt(text: str) -> dict:
    """Parse a shapes-world prompt into ``color, shape, motion, size, speed`` (first object), ``count``,
    ``background`` and ``objects`` (one dict per object phrase).

    Understands the ``caption_for`` templates ("a red circle moving to the left on a gray background",
    "red circle slides left", "a blue square that moves slowly up, striped background", "a video of ...
    over a ..."), objects joined by "and", and a camera clause (ignored). ``count`` is the number of
    object phrases that name a colour or shape, or an explicit number word ("two red circles"). Words a
    prompt leaves out are None, except ``size`` ("medium") and, for a straight motion, ``speed`` ("normal"):
    the captions omit exactly those words.
    """
    lowered = text.lower()
    scene = re.split(r"\bcamera\b", lowered)[0]
    scene = re.split(r"\b(?:on|over)\s+an?\s+[a-z ]*background|,\s*[a-z ]*background", scene)[0]
    phrases = [p for p in re.split(r"\band\b", scene) if p.strip()]
    objects = [o for o in map(parse_object, phrases) if o["color"] or o["shape"]]
    count = len(objects)
    number = next((_NUMBERS[w] for w in _words(scene) if w in _NUMBERS), None)
    if number is not None and len(objects) <= 1:
        count = number
    first = objects[0] if objects else parse_object("")
    return dict(**first, count=count, background=parse_background(lowered), objects=objects)


# ----------------------------------------------------------------------------------------------
# Segmentation
# ----------------------------------------------------------------------------------------------


def chroma(frames: np.ndarray) -> np.ndarray:
    """``max(rgb) - min(rgb)`` as float ``[..., H, W]`` (0..255)."""
    f = np.asarray(frames, dtype=np.float64)
    return f.max(-1) - f.min(-1)


def label_components(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels of a boolean ``[H, W]`` mask: -1 off the mask, else 0..n-1 (row-major order).

    Min-label propagation with pointer jumping (every label is the flat index of a pixel of its own
    component, so ``labels[labels]`` is a valid shortcut), in numpy.
    """
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.minimum.reduce([labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        new = np.where(mask, neighbours, big)
        flat = np.append(new.ravel(), big)
        new = np.where(mask, flat[flat[new]], big)  # pointer jumping
        if np.array_equal(new, labels):
            break
        labels = new
    out = np.full((h, w), -1, dtype=np.int64)
    roots = np.unique(labels[mask])
    out[mask] = np.searchsorted(roots, labels[mask])
    return out


def _grow(mask: np.ndarray) -> np.ndarray:
    """``mask`` dilated by one pixel (4-neighbourhood)."""
    p = np.pad(mask, 1)
    return mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def chroma_palette(colors) -> tuple[tuple[str, ...], np.ndarray]:
    """``(names, normalised chroma vectors)`` of a ``{name: rgb}`` palette, as ``nearest_color`` compares them."""
    names = tuple(colors)
    rgb = np.array([colors[c] for c in names], dtype=np.float64)
    low, high = rgb.min(1, keepdims=True), rgb.max(1, keepdims=True)
    return names, (rgb - low) / np.maximum(high - low, 1e-9)


def nearest_color(vector, palette=None) -> str:
    """The ``COLORS`` name (or ``palette``'s, from ``chroma_palette``) nearest (Euclidean) to a normalised chroma
    vector in [0, 1]^3."""
    names, vectors = palette if palette is not None else (PALETTE_NAMES, PALETTE)
    d = np.linalg.norm(vectors - np.asarray(vector, dtype=np.float64), axis=1)
    return names[int(np.argmin(d))]


def classify_shape(fill: float) -> str:
    """Shape from the fill ratio (area / sub-pixel bounding box): square, circle or triangle (thresholds above)."""
    if fill >= SQUARE_FILL:
        return "square"
    return "circle" if fill >= CIRCLE_FILL else "triangle"


def measure_components(frame: np.ndarray, palette=None) -> list[dict]:
    """Objects of one frame ``[H, W, 3]``, largest first: ``area, centroid (x, y), fill, shape, chroma (rgb vector),
    color`` (the nearest ``COLORS`` name, or ``palette``'s: ``chroma_palette``)."""
    f = np.asarray(frame, dtype=np.float64)
    h, w = f.shape[:2]
    low, high = f.min(-1), f.max(-1)
    c = high - low
    alpha = np.clip(c / 255.0, 0.0, 1.0)
    normalised = (f - low[..., None]) / np.maximum(c, 1e-9)[..., None]
    labels = label_components(c >= CHROMA_THRESHOLD)
    min_area = max(4.0, MIN_AREA_FRACTION * h * w)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    objects = []
    for index in range(labels.max() + 1):
        core = labels == index
        if core.sum() < min_area:
            continue
        a = np.where(_grow(core), alpha, 0.0)
        area = float(a.sum())
        width, height = float(a.max(0).sum()), float(a.max(1).sum())
        vector = normalised[core].mean(0)
        fill = area / max(width * height, 1e-9)
        objects.append(dict(
            area=area, centroid=(float((a * xs).sum() / area), float((a * ys).sum() / area)), fill=fill,
            shape=classify_shape(fill), chroma=vector.tolist(), color=nearest_color(vector, palette),
        ))
    return sorted(objects, key=lambda o: -o["area"])


# ----------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------


def _mode(values):
    """The most common non-None value (first seen wins ties); None if there is none."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def direction_of(displacement, threshold: float = STILL_THRESHOLD) -> str:
    """``left/right/up/down/still`` from a displacement ``(dx, dy)`` in fractions of the frame."""
    dx, dy = displacement
    if max(abs(dx), abs(dy)) < threshold:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def _main_object(objects: list[dict], color: str | None):
    """The largest object of ``color`` (else the largest object); None for an empty frame."""
    same = [o for o in objects if o["color"] == color]
    return (same or objects or [None])[0]


def measure_clip(frames: np.ndarray, palette=None) -> dict:
    """Clip measures (see the module docstring): ``dominant_color, shape, count, direction, displacement,
    area_drift, color_drift``, and ``objects_per_frame``; colours named from ``palette`` (``chroma_palette``) if
    given, else ``COLORS``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [F, H, W, 3]; got shape {frames.shape}")
    h, w = frames.shape[1:3]
    per_frame = [measure_components(f, palette) for f in frames]
    color = _mode(objs[0]["color"] if objs else None for objs in per_frame)
    mains = [_main_object(objs, color) for objs in per_frame]
    shape = _mode(m["shape"] if m else None for m in mains)
    counts = [len(objs) for objs in per_frame]
    first, last = mains[0], mains[-1]
    displacement = direction = None
    if first is not None and last is not None:
        displacement = ((last["centroid"][0] - first["centroid"][0]) / w, (last["centroid"][1] - first["centroid"][1]) / h)
        direction = direction_of(displacement)
    areas = np.array([m["area"] if m else 0.0 for m in mains])
    area_drift = float(areas.std() / areas.mean()) if areas.mean() > 0 else None
    vectors = np.array([m["chroma"] for m in mains if m is not None])
    color_drift = float(np.linalg.norm(vectors - vectors.mean(0), axis=1).mean()) if len(vectors) else None
    return dict(dominant_color=color, shape=shape, count=float(np.median(counts)), direction=direction,
                displacement=displacement, area_drift=area_drift, color_drift=color_drift, objects_per_frame=counts)


def diversity(clips) -> float:
    """Mean pairwise mean-absolute pixel difference (in [0, 1]) between clips of the same shape; 0 for fewer than 2."""
    clips = [np.asarray(c, dtype=np.float64) / 255.0 for c in clips]
    pairs = list(combinations(range(len(clips)), 2))
    if not pairs:
        return 0.0
    return float(np.mean([np.abs(clips[i] - clips[j]).mean() for i, j in pairs]))


def score_clip(frames: np.ndarray, prompt: str) -> dict:
    """Measure a clip and compare it with its prompt: the ``measure_clip`` values plus ``expected`` (the parsed
    prompt's color, shape, motion, count) and booleans ``color_ok, shape_ok, count_ok, motion_ok`` (None where
    the prompt does not say, or for a curved motion)."""
    p = parse_prompt(prompt)
    m = measure_clip(frames)
    judge = lambda want, got: None if want is None else bool(want == got)  # noqa: E731
    motion = None if p["motion"] == CURVE else p["motion"]
    return dict(
        **m, expected=dict(color=p["color"], shape=p["shape"], motion=p["motion"], count=p["count"] or None),
        color_ok=judge(p["color"], m["dominant_color"]), shape_ok=judge(p["shape"], m["shape"]),
        count_ok=judge(p["count"] or None, m["count"]), motion_ok=judge(motion, m["direction"]),
    )


ACCURACIES = ("color", "shape", "count", "motion")
MEANS = ("area_drift", "color_drift")
I2V_MEANS = ("first_frame_psnr", "vae_psnr")  # image-to-video: dB, higher is better


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (or clips) of the same shape (capped at 99 dB)."""
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes; got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else min(99.0, 10.0 * np.log10(255.0**2 / mse))


def summarize(records, diversities=None) -> dict:
    """Accuracies in % (``color_accuracy`` ... over records where the prompt says) with ``n_<metric>`` counts,
    mean ``area_drift``/``color_drift`` (None values skipped; a clip without objects has none), mean
    ``first_frame_psnr``/``vae_psnr`` (image-to-video records; None for text-to-video), and the
    mean of ``diversities`` (one value per prompt) as ``diversity``."""
    records = list(records)
    out = dict(samples=len(records))
    for name in ACCURACIES:
        judged = [r[f"{name}_ok"] for r in records if r.get(f"{name}_ok") is not None]
        out[f"{name}_accuracy"] = 100.0 * sum(judged) / len(judged) if judged else None
        out[f"n_{name}"] = len(judged)
    for name in MEANS + I2V_MEANS:
        values = [r[name] for r in records if r.get(name) is not None]
        out[name] = float(np.mean(values)) if values else None
    values = list((diversities or {}).values()) if isinstance(diversities, dict) else list(diversities or [])
    out["diversity"] = float(np.mean(values)) if values else None
    return out
