"""Trajectory conditioning: track files (ours, ATI, Wan-Move, Tora), Tora flow maps, ATI / Wan-Move I2V transforms."""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Conventions. A set of tracks is ``tracks [N, F, 2]`` float (x, y) in pixels of the output video plus
# ``visible [N, F]`` bool, one row per tracked point, one column per video frame. Pixel (i, j) (column i, row j)
# covers [i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5) and the frame is the box [0, W] x [0, H]: the
# convention of the shapes world, of ATI's ``grid_sample(align_corners=False)`` and of Wan-Move's ``x // 8``.
# A point on the closing edge (x = W or y = H) belongs to the last pixel.

TORA_CANVAS = 256  # alibaba/Tora traj_utils.py process_traj: trajectories are drawn on a 256x256 canvas
TORA_BLUR_SIZE = 99  # traj_utils.py: bivariate_Gaussian(99, 10, 10, 0), divided by its centre weight
TORA_BLUR_SIGMA = 10.0
ATI_FRAMES = 121  # bytedance/ATI tools/trajectory_editor/app.py FIXED_LENGTH: 121 frames at 24 fps
ATI_QUANT = 8  # app.py QUANT_MULTI: the file stores 8 * [x, y, visible]
ATI_TEMPERATURE = 220.0  # wan/modules/motion_patch.py patch_motion(temperature=220, topk=2)
ATI_TOPK = 2

# The Middlebury colour wheel (Baker et al., ICCV 2007): six hue ramps of these lengths, 55 colours in all. Each
# entry: (length, the channel held at 255, the channel that ramps, whether it rises 0 -> 255 or falls 255 -> 0).
_WHEEL = ((15, 0, 1, True),  # RY: red -> yellow (green rises)
          (6, 1, 0, False),  # YG: yellow -> green (red falls)
          (4, 1, 2, True),  # GC: green -> cyan (blue rises)
          (11, 2, 1, False),  # CB: cyan -> blue (green falls)
          (13, 2, 0, True),  # BM: blue -> magenta (red rises)
          (6, 0, 2, False))  # MR: magenta -> red (blue falls)


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def check_tracks(tracks, visible=None, height: int | None = None, width: int | None = None):
    """``(tracks [N, F, 2] float32, visible [N, F] bool)`` from array-likes, checked: shapes, finite values.

    ``visible=None`` means every point is visible. With ``height`` and ``width`` points outside the frame
    ``[0, width] x [0, height]`` are clipped to its edges, with one warning for the whole call. Wrong shapes and
    NaN or infinite coordinates are ``ValueError``s that name the track and frame.
    """
    tracks = torch.as_tensor(tracks)
    if tracks.ndim != 3 or tracks.shape[-1] != 2 or tracks.shape[0] < 1 or tracks.shape[1] < 1:
        raise ValueError(f"tracks must have shape [N, F, 2] (N >= 1 tracks of F >= 1 (x, y) points); "
                         f"got {tuple(tracks.shape)}")
    if not (tracks.is_floating_point() or tracks.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"tracks must hold numbers; got dtype {tracks.dtype}")
    tracks = tracks.float()
    bad = ~torch.isfinite(tracks).all(-1)
    if bad.any():
        n, f = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"tracks hold NaN or infinite coordinates at {int(bad.sum())} points "
                         f"(first: track {n}, frame {f}: {tracks[n, f].tolist()})")
    if visible is None:
        visible = torch.ones(tracks.shape[:2], dtype=torch.bool, device=tracks.device)
    else:
        visible = torch.as_tensor(visible, device=tracks.device)
        if tuple(visible.shape) != tuple(tracks.shape[:2]):
            raise ValueError(f"visible must have shape [N, F] = {tuple(tracks.shape[:2])} to match tracks "
                             f"{tuple(tracks.shape)}; got {tuple(visible.shape)}")
        visible = visible.bool() if visible.dtype == torch.bool else visible > 0.5
    if height is not None and width is not None:
        limit = torch.tensor([float(width), float(height)], device=tracks.device)
        outside = ((tracks < 0) | (tracks > limit)).any(-1)
        if outside.any():
            warnings.warn(f"{int(outside.sum())} of {outside.numel()} track points lie outside the {width}x{height} "
                          f"frame and were clipped to its edges (x in [0, {width}], y in [0, {height}]); track files "
                          "in pixels of another image need source_size=(width, height)", stacklevel=2)
            tracks = torch.minimum(tracks.clamp(min=0), limit)
    return tracks, visible


def _check_condition(condition: torch.Tensor, mask_channels: int) -> None:
    if not isinstance(condition, torch.Tensor) or condition.ndim != 4 or condition.shape[0] <= mask_channels:
        shape = tuple(condition.shape) if isinstance(condition, torch.Tensor) else type(condition).__name__
        raise ValueError(f"condition must be one video's I2V condition [mask {mask_channels} + latent C, F_lat, h, w]"
                         f" (Wan's y: mask channels first); got {shape}")


def _check_frames(num_frames: int, num_latent_frames: int, vae_temporal: int) -> None:
    if num_frames != 1 + vae_temporal * (num_latent_frames - 1):
        raise ValueError(f"tracks have {num_frames} frames but the condition has {num_latent_frames} latent frames, "
                         f"which decode to 1 + {vae_temporal} * {num_latent_frames - 1} = "
                         f"{1 + vae_temporal * (num_latent_frames - 1)} frames")


# ----------------------------------------------------------------------------------------------
# Resampling and the inline form
# ----------------------------------------------------------------------------------------------


def _frame_positions(count: int, num_frames: int) -> np.ndarray:
    """Where each of ``num_frames`` frames falls on the index axis of ``count`` points spread from the first frame
    to the last: frame f sits at f * (count - 1) / (num_frames - 1)."""
    if num_frames == 1 or count == 1:
        return np.zeros(num_frames)
    return np.arange(num_frames, dtype=np.float64) * (count - 1) / (num_frames - 1)


def resample_track(points, num_frames: int) -> torch.Tensor:
    """``points [K, 2]`` spread evenly over a clip of ``num_frames`` frames, as ``[num_frames, 2]`` float32.

    Point k is placed at time k * (num_frames - 1) / (K - 1): the first point on the first frame, the last on the
    last frame, the others evenly between; each frame takes the linear interpolation of the two points around it.
    K = num_frames returns the points unchanged, K = 1 a still point, K > num_frames samples the polyline in time.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[-1] != 2 or len(pts) < 1:
        raise ValueError(f"points must have shape [K, 2] with K >= 1; got {pts.shape}")
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer; got {num_frames!r}")
    s = _frame_positions(len(pts), num_frames)
    if len(pts) == 1:
        return torch.from_numpy(np.repeat(pts, num_frames, axis=0)).float()
    i0 = np.minimum(np.floor(s).astype(np.int64), len(pts) - 2)
    frac = (s - i0)[:, None]
    return torch.from_numpy(pts[i0] * (1 - frac) + pts[i0 + 1] * frac).float()


def _resample_visible(visible, num_frames: int) -> np.ndarray:
    """Visibility of ``K`` points spread over ``num_frames`` frames (as ``resample_track``): a frame is visible
    when every point it is interpolated from is (both neighbours, or the one point it lands on)."""
    vis = np.asarray(visible, dtype=bool)
    s = _frame_positions(len(vis), num_frames)
    below = np.minimum(np.floor(s).astype(np.int64), len(vis) - 1)
    above = np.minimum(np.ceil(s).astype(np.int64), len(vis) - 1)
    return vis[below] & vis[above]


def parse_inline_track(text: str, num_frames: int, height: int | None = None, width: int | None = None):
    """One track from the CLI's inline form ``"x0,y0 x1,y1 ..."`` (output pixels): ``(tracks [1, F, 2], visible
    [1, F])``.

    The point moves at constant speed along the polyline through the given points: frame f is at arc length
    f / (num_frames - 1) of the whole path, so ``"10,10 54,40"`` is a straight line from (10, 10) on the first frame
    to (54, 40) on the last. One point (or a path of length 0) is a still point. With ``height`` and ``width``
    the points are checked against the frame as ``check_tracks`` does.
    """
    tokens = str(text).split()
    if not tokens:
        raise ValueError("an inline trajectory needs at least one 'x,y' point, e.g. \"10,10 54,40\"")
    pts = []
    for token in tokens:
        parts = token.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            pts.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ValueError(f"inline trajectory point {token!r} is not 'x,y' (two numbers joined by a comma); "
                             f"write points as \"10,10 54,40\"") from None
    pts = np.array(pts, dtype=np.float64)
    check_tracks(pts[None])  # NaN / inf
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer; got {num_frames!r}")
    keep = np.r_[True, (np.diff(pts, axis=0) != 0).any(-1)]  # repeated points add no length
    pts = pts[keep]
    length = np.r_[0.0, np.cumsum(np.hypot(*np.diff(pts, axis=0).T))]
    if len(pts) == 1:
        path = np.repeat(pts, num_frames, axis=0)
    else:
        at = length[-1] * _frame_positions(2, num_frames)  # f / (F - 1) of the whole length
        path = np.stack([np.interp(at, length, pts[:, 0]), np.interp(at, length, pts[:, 1])], axis=-1)
    return check_tracks(path[None], None, height, width)


# ----------------------------------------------------------------------------------------------
# Track files
# ----------------------------------------------------------------------------------------------


def _read_json(path):
    """Our format: ``{"tracks": [[[x, y], ...], ...], "visible": [[bool, ...], ...]}`` ("visible" optional)."""
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("tracks"), list) or not data["tracks"]:
        raise ValueError(f"{path}: a track file is {{\"tracks\": [[[x, y], ...], ...], \"visible\": [[...], ...]}} "
                         "with at least one track")
    visible = data.get("visible")
    if visible is not None and (not isinstance(visible, list) or len(visible) != len(data["tracks"])):
        raise ValueError(f"{path}: \"visible\" must hold one list per track ({len(data['tracks'])})")
    out = []
    for n, track in enumerate(data["tracks"]):
        try:
            pts = np.array(track, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: track {n} must be a list of [x, y] number pairs") from None
        if pts.ndim != 2 or pts.shape[-1] != 2 or len(pts) < 1:
            raise ValueError(f"{path}: track {n} must be a non-empty list of [x, y] pairs; got shape {pts.shape}")
        vis = np.ones(len(pts), dtype=bool)
        if visible is not None:
            vis = np.asarray(visible[n])
            if vis.shape != (len(pts),):
                raise ValueError(f"{path}: visible[{n}] must hold one value per point of track {n} ({len(pts)}); "
                                 f"got shape {vis.shape}")
            vis = vis.astype(bool)
        out.append((pts, vis))
    return out


def _fill_hidden(pts: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Positions of hidden points replaced by the last visible one (the first visible one before it): ATI's
    editor pads tracks with zeros, which must not pull an interpolation towards the corner."""
    if not vis.any() or vis.all():
        return pts
    idx = np.where(vis, np.arange(len(vis)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.argmax(vis)
    return pts[idx]


def _read_ati(path):
    """ATI's track file: ``torch.save`` of the bytes of ``np.savez_compressed(array=8 * arr)``, ``arr`` of shape
    ``[N, 121, 1, 3]`` holding (x, y, visible) in pixels of the input image at 24 fps, then ATI's own retiming to
    16 fps: frame 0 kept, then every 24 fps frame repeated twice and every third taken from the second on
    (``repeat_interleave(2)[1::3]``), 121 -> 81 frames, output frame k being input frame floor(1.5 k)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError(f"{path}: an ATI track file holds the bytes of an .npz archive; got {type(raw).__name__}")
    with np.load(io.BytesIO(raw)) as npz:
        if "array" not in npz:
            raise ValueError(f"{path}: ATI's .npz has no 'array' entry (found {list(npz.keys())})")
        arr = npz["array"].astype(np.float64) / ATI_QUANT
    if arr.ndim == 4 and arr.shape[0] == ATI_FRAMES and arr.shape[1] != ATI_FRAMES:
        arr = arr.transpose(1, 0, 2, 3)  # ATI's process_tracks also takes [121, N, 1, C]
    if arr.ndim != 4 or arr.shape[1] != ATI_FRAMES or arr.shape[2] != 1 or arr.shape[3] < 3:
        raise ValueError(f"{path}: ATI tracks must have shape [N, {ATI_FRAMES}, 1, 3] ((x, y, visible) x 8); "
                         f"got {arr.shape}")
    frames = [3 * k // 2 for k in range(1 + (ATI_FRAMES - 1) * 2 // 3)]  # floor(1.5 k), k = 0 .. 80
    out = []
    for track in arr[:, :, 0]:
        vis = track[:, 2] > 0.5  # ATI: clamp(2 v - 1, 0, 1)
        out.append((_fill_hidden(track[:, :2], vis)[frames], vis[frames]))
    return out


def _visibility_path(path: Path) -> Path:
    """Wan-Move's naming: ``example_tracks.npy`` / ``example_visibility.npy``, MoveBench ``{id}_tracks.npy`` /
    ``{id}_visibility.npy``."""
    stem = path.stem
    cut = stem.rfind("tracks")
    name = (stem[:cut] + "visibility" + stem[cut + len("tracks"):]) if cut >= 0 else stem + "_visibility"
    return path.with_name(name + path.suffix)


def _read_wan_move(path: Path, visibility_path):
    """Wan-Move's ``.npy`` tracks ``[1, F, N, 2]`` (or ``[F, N, 2]``) float (x, y) pixels of the input image, and
    visibility ``[1, F, N]`` (or ``[F, N]``) bool; without a visibility file every point is visible."""
    tracks = np.load(path)
    tracks = tracks[0] if tracks.ndim == 4 else tracks
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(f"{path}: Wan-Move tracks must have shape [1, F, N, 2] or [F, N, 2]; got {tracks.shape}")
    visibility_path = _visibility_path(path) if visibility_path is None else Path(visibility_path)
    if visibility_path.is_file():
        vis = np.load(visibility_path)
        vis = vis[0] if vis.ndim == 3 else vis
        if vis.shape != tracks.shape[:2]:
            raise ValueError(f"{visibility_path}: visibility must have shape [1, F, N] or [F, N] = "
                             f"{tracks.shape[:2]} to match {path.name}; got {vis.shape}")
    else:
        vis = np.ones(tracks.shape[:2], dtype=bool)
    return [(tracks[:, n].astype(np.float64), vis[:, n].astype(bool)) for n in range(tracks.shape[1])]


def _read_tora(path):
    """Tora's trajectory text: one ``x,y`` point per line on the 256x256 canvas, one track per file."""
    pts = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    x, y = line.strip().split(",")
                    pts.append((float(x), float(y)))
                except ValueError:
                    raise ValueError(f"{path}:{number}: a Tora trajectory line is 'x,y'; "
                                     f"got {line.strip()!r}") from None
    if not pts:
        raise ValueError(f"{path}: no 'x,y' points")
    return [(np.array(pts), np.ones(len(pts), dtype=bool))]


def read_tracks(path, num_frames: int, height: int, width: int, *, source_size=None, visibility_path=None):
    """``(tracks [N, num_frames, 2], visible [N, num_frames])`` in output pixels from a track file, by extension:

    * ``.json``: ours, ``{"tracks": [[[x, y], ...], ...], "visible": [[bool, ...], ...]}`` in output pixels,
      "visible" optional (all visible), each track any number of points.
    * ``.pth`` / ``.pt``: ATI's editor output (bytedance/ATI ``tools/trajectory_editor/app.py``, read as
      ``wan/utils/motion.py`` does): 121 frames at 24 fps retimed to ATI's 81 at 16 fps, the zero padding after a
      short track hidden (and its positions held at the last drawn point).
    * ``.npy``: Wan-Move's tracks, with visibility from ``visibility_path`` or the sibling file named with
      ``visibility`` for ``tracks`` (``example_tracks.npy`` -> ``example_visibility.npy``), else all visible.
    * ``.txt``: Tora's ``x,y`` lines on its 256x256 canvas (one track).

    ATI and Wan-Move files hold pixels of the input image, which both models resize to the video without
    cropping; ``source_size=(width, height)`` gives that image's size, and coordinates are scaled by
    ``width / source width`` and ``height / source height`` (the default: already the video's pixels; Tora's
    canvas is 256x256). A track whose point count differs from ``num_frames`` is resampled over the whole clip
    (``resample_track``: points spread evenly from the first to the last frame, linearly interpolated; a frame
    visible when the points it is interpolated from are). Points outside the frame are clipped with one warning
    (``check_tracks``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"track file {os.fspath(path)!r} does not exist")
    if suffix == ".json":
        raw = _read_json(path)
    elif suffix in (".pth", ".pt"):
        raw = _read_ati(path)
    elif suffix == ".npy":
        raw = _read_wan_move(path, visibility_path)
    elif suffix == ".txt":
        raw = _read_tora(path)
    else:
        raise ValueError(f"{path}: unknown track format {suffix!r}; expected .json (ours), .pth (ATI), "
                         ".npy (Wan-Move) or .txt (Tora)")
    for n, (pts, _) in enumerate(raw):
        if not np.isfinite(pts).all():
            raise ValueError(f"{path}: track {n} holds NaN or infinite coordinates")
    if source_size is None:
        source_size = (TORA_CANVAS, TORA_CANVAS) if suffix == ".txt" else (width, height)
    if len(source_size) != 2 or min(source_size) <= 0:
        raise ValueError(f"source_size must be (width, height) of the image the file's pixels refer to; "
                         f"got {source_size!r}")
    scale = np.array([width / source_size[0], height / source_size[1]])
    tracks = torch.stack([resample_track(pts * scale, num_frames) for pts, _ in raw])
    visible = torch.from_numpy(np.stack([_resample_visible(vis, num_frames) for _, vis in raw]))
    return check_tracks(tracks, visible, height, width)


def tracks_from(trajectory, num_frames: int, height: int, width: int, visible=None):
    """``(tracks [N, num_frames, 2], visible [N, num_frames])`` in output pixels from any form a user passes:

    a track file path (``read_tracks``: ours, ATI, Wan-Move, Tora), the inline form ``"x0,y0 x1,y1 ..."`` of one
    track (``parse_inline_track``), a ``{"tracks", "visible"}`` dict, a ``(tracks, visible)`` pair, or an
    array-like ``[N, F, 2]`` (``visible`` then optional). Tracks of another length than ``num_frames`` are resampled
    over the clip (``resample_track``); points outside the frame are clipped with one warning; wrong shapes and
    NaN raise ``ValueError`` (``check_tracks``)."""
    if isinstance(trajectory, (str, os.PathLike)):
        text = os.fspath(trajectory)
        if Path(text).suffix.lower() in (".json", ".pth", ".pt", ".npy", ".txt") or Path(text).is_file():
            return read_tracks(text, num_frames, height, width)
        return parse_inline_track(text, num_frames, height, width)
    if isinstance(trajectory, dict):
        if "tracks" not in trajectory:
            raise ValueError(f"a trajectory dict needs 'tracks' (and optionally 'visible'); got keys "
                             f"{sorted(trajectory)}")
        trajectory, visible = trajectory["tracks"], trajectory.get("visible")
    elif isinstance(trajectory, tuple) and len(trajectory) == 2 and visible is None:
        trajectory, visible = trajectory
    tracks, visible = check_tracks(trajectory, visible)
    if tracks.shape[1] != num_frames:
        vis = visible.cpu().numpy()
        visible = torch.from_numpy(np.stack([_resample_visible(v, num_frames) for v in vis]))
        tracks = torch.stack([resample_track(t.cpu().numpy(), num_frames) for t in tracks])
    return check_tracks(tracks, visible, height, width)


def write_tracks(path, tracks, visible=None) -> None:
    """Write ``tracks [N, F, 2]`` (and ``visible [N, F]``) as our JSON track file, which ``read_tracks`` reads."""
    tracks, visible = check_tracks(tracks, visible)
    data = {"tracks": tracks.tolist(), "visible": visible.tolist()}
    with open(path, "w") as fh:
        json.dump(data, fh)


# ----------------------------------------------------------------------------------------------
# Tora: flow maps -> RGB video for the VAE
# ----------------------------------------------------------------------------------------------


def track_flow(tracks, visible, height: int, width: int) -> torch.Tensor:
    """Tora's sparse flow ``[2, F, height, width]`` (dx, dy in pixels): for frame t >= 1 each track's displacement
    ``p_t - p_{t-1}`` written at the pixel holding ``p_{t-1}``; frame 0 is zero.

    As in alibaba/Tora ``traj_utils.py`` (``get_flow``) all tracks share one map and a later track overwrites an
    earlier one at the same pixel. Tora rounds its points to integer pixels first; here the displacement is the
    exact float difference, written at ``(floor(x), floor(y))``. A displacement is written only when the point is
    visible on both frames (Tora has no visibility). Points outside the frame are clipped (``check_tracks``).
    """
    tracks, visible = check_tracks(tracks, visible, height, width)
    n, frames = tracks.shape[:2]
    flow = torch.zeros(2, frames, height, width, device=tracks.device)
    col = tracks[..., 0].floor().long().clamp(0, width - 1)
    row = tracks[..., 1].floor().long().clamp(0, height - 1)
    step = tracks[:, 1:] - tracks[:, :-1]  # [N, F-1, 2]
    both = visible[:, 1:] & visible[:, :-1]
    t = torch.arange(1, frames, device=tracks.device)
    for k in range(n):
        keep = both[k]
        for c in range(2):
            flow[c, t[keep], row[k, :-1][keep], col[k, :-1][keep]] = step[k, keep, c]
    return flow


def _reflect_101(size: int, pad: int) -> torch.Tensor:
    """Indices of ``arange(-pad, size + pad)`` reflected into ``[0, size)`` without repeating the edge (OpenCV's
    default border, BORDER_REFLECT_101, which ``cv2.filter2D`` uses in Tora), for any ``pad``."""
    idx = torch.arange(-pad, size + pad)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def gaussian_blur_flow(flow: torch.Tensor, sigma: float = TORA_BLUR_SIGMA,
                       kernel_size: int = TORA_BLUR_SIZE) -> torch.Tensor:
    """Each frame of ``flow [..., H, W]`` blurred with a ``kernel_size``² Gaussian of std ``sigma`` normalised to a
    centre weight of 1, so an isolated displacement keeps its value at its own pixel and fades around it.

    Defaults are Tora's (alibaba/Tora ``traj_utils.py``: ``bivariate_Gaussian(99, 10, 10)`` divided by its centre,
    the values MotionCtrl used before it). Borders reflect without repeating the edge pixel, as ``cv2.filter2D``
    does in Tora, so near a border a displacement also receives its mirror image's weight.
    """
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma!r}")
    if flow.ndim < 2:
        raise ValueError(f"flow must be [..., H, W]; got shape {tuple(flow.shape)}")
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2)).to(flow.dtype).view(1, 1, -1)  # separable; 1 at the centre
    out = flow
    for dim in (-1, -2):
        size = out.shape[dim]
        padded = out.index_select(dim, _reflect_101(size, radius).to(out.device)).movedim(dim, -1)
        lead = padded.shape[:-1]
        blurred = F.conv1d(padded.reshape(-1, 1, padded.shape[-1]), kernel.to(out.device))
        out = blurred.reshape(*lead, size).movedim(-1, dim)
    return out


def middlebury_color_wheel() -> torch.Tensor:
    """The Middlebury optical-flow colour wheel ``[55, 3]`` (RGB, 0-255): ramps RY 15, YG 6, GC 4, CB 11, BM 13,
    MR 6, each step ``floor(255 * i / length)`` (Baker et al. 2007; the wheel torchvision's ``flow_to_image`` and
    Tora's ``make_colorwheel`` use)."""
    rows = []
    for length, full, ramp, rising in _WHEEL:
        for i in range(length):
            rgb = [0.0, 0.0, 0.0]
            rgb[full] = 255.0
            step = math.floor(255 * i / length)
            rgb[ramp] = float(step if rising else 255 - step)
            rows.append(rgb)
    return torch.tensor(rows)


def flow_to_rgb(flow: torch.Tensor) -> torch.Tensor:
    """Flow ``[2, F, H, W]`` as Tora's RGB video ``[3, F, H, W]`` in [-1, 1], ready for the VAE.

    Tora's inference (alibaba/Tora ``diffusers-version/inference.py``) runs torchvision's ``flow_to_image`` on
    the whole clip and maps its uint8 output by ``x / 127.5 - 1``: the flow is divided by its largest length over
    the clip (+ float32 eps), its direction picks a colour on the Middlebury wheel (angle of ``(-dx, -dy)``,
    interpolated between the two nearest of the 55 colours; +x is red), its length fades that colour towards
    white (zero flow is white), and each channel is floored to 8 bits.
    """
    if flow.ndim != 4 or flow.shape[0] != 2:
        raise ValueError(f"flow must be [2, F, H, W] (dx, dy); got shape {tuple(flow.shape)}")
    flow = flow.float()
    largest = flow.square().sum(0).sqrt().max()
    u, v = flow / (largest + torch.finfo(torch.float32).eps) + 0.0  # + 0.0: -0.0 -> +0.0, so +x is red, not magenta
    wheel = middlebury_color_wheel().to(flow.device) / 255.0
    count = wheel.shape[0]
    length = torch.sqrt(u**2 + v**2)
    angle = torch.atan2(-v, -u) / math.pi  # in [-1, 1]
    position = (angle + 1) / 2 * (count - 1)
    k0 = position.floor().long()
    k1 = torch.where(k0 + 1 == count, 0, k0 + 1)
    frac = (position - k0)[..., None]
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]  # [F, H, W, 3]
    colour = 1 - length[..., None] * (1 - colour)
    levels = torch.floor(255 * colour).clamp(0, 255)
    return (levels / 127.5 - 1).permute(3, 0, 1, 2)


def tora_flow_video(tracks, visible, height: int, width: int, sigma: float = TORA_BLUR_SIGMA,
                    kernel_size: int = TORA_BLUR_SIZE) -> torch.Tensor:
    """Tora's trajectory video ``[3, F, height, width]`` in [-1, 1]: ``track_flow`` -> ``gaussian_blur_flow``
    (Tora's 99 x 99, sigma 10 by default) -> ``flow_to_rgb``; encode it with the video VAE for the adapter."""
    flow = track_flow(tracks, visible, height, width)
    return flow_to_rgb(gaussian_blur_flow(flow, sigma, kernel_size))


# ----------------------------------------------------------------------------------------------
# ATI and Wan-Move: rewriting Wan's I2V condition
# ----------------------------------------------------------------------------------------------


def ati_condition(condition: torch.Tensor, tracks, visible=None, *, temperature: float = ATI_TEMPERATURE,
                  topk: int = ATI_TOPK, mask_channels: int = 4, vae_spatial: int = 8,
                  vae_temporal: int = 4) -> torch.Tensor:
    """ATI's ``patch_motion`` (bytedance/ATI ``wan/modules/motion_patch.py``, inference): Wan's I2V condition
    ``[mask 4 + latent C, F_lat, h, w]`` with each track's first-frame latent feature splatted along its path.

    ``tracks [N, F, 2]`` are output pixels with F = 1 + 4 (F_lat - 1). In ATI's units (``wan/utils/motion.py``:
    ``(xy - [W, H] / 2) / min(H, W) * 2``, the short side spanning [-1, 1]):

    * latent frame t >= 1 places a track at the visibility-weighted mean of its 4 pixel frames 4t-3 .. 4t
      (divided by the visible count + 1e-5), visible if any of them is;
    * latent pixel (i, j) sits on the grid ``linspace(-w/m, w/m, w) x linspace(-h/m, h/m, h)``, m = min(h, w);
    * weight ``w = exp(-temperature * d²) * visible``, of which only the ``topk`` largest tracks per pixel count;
    * feature f = bilinear sample (``grid_sample``, align_corners False, zeros outside) of latent frame 0 at the
      track's frame-0 point;
    * latent ``Σ w f + latent · (1 - clamp(Σ w, 0, 1))``; all mask channels ``Σ w`` (frame 0: 1).

    Frame 0 of the latent is kept; the frame-0 point is sampled whether or not it is visible, as in ATI. ATI
    feeds this same condition to the conditional and unconditional passes.
    """
    _check_condition(condition, mask_channels)
    tracks, visible = check_tracks(tracks, visible)
    _, num_latent, h, w = condition.shape
    num, frames = tracks.shape[:2]
    _check_frames(frames, num_latent, vae_temporal)
    device = condition.device
    tracks, visible = tracks.to(device), visible.to(device)
    height, width = h * vae_spatial, w * vae_spatial
    latent = condition[mask_channels:].float()
    centred = (tracks - torch.tensor([width / 2, height / 2], device=device)) / min(height, width) * 2
    seen = visible.float()
    later = centred[:, 1:].reshape(num, num_latent - 1, vae_temporal, 2)
    later_seen = seen[:, 1:].reshape(num, num_latent - 1, vae_temporal, 1)
    count = later_seen.sum(2)  # [N, F_lat-1, 1]
    place = (later * later_seen).sum(2) / (count + 1e-5)  # [N, F_lat-1, 2]
    m = min(h, w)
    grid_x = torch.linspace(-w / m, w / m, w, device=device)
    grid_y = torch.linspace(-h / m, h / m, h, device=device)
    dist2 = ((place[..., 0, None, None] - grid_x) ** 2 + (place[..., 1, None, None] - grid_y[:, None]) ** 2)
    weight = torch.exp(-dist2 * temperature) * count.clamp(0, 1)[..., None]  # [N, F_lat-1, h, w]
    top_weight, top_index = weight.topk(min(topk, num), dim=0)  # [k, F_lat-1, h, w]
    sample_at = (centred[:, 0] / torch.tensor([w / m, h / m], device=device)).clamp(-1, 1)  # grid_sample's [-1, 1] box
    features = F.grid_sample(latent[:, 0][None], sample_at[None, None], mode="bilinear", padding_mode="zeros",
                             align_corners=False)[0, :, 0]  # [C, N]
    splat = (features[:, top_index] * top_weight).sum(1)  # [C, F_lat-1, h, w]
    total = top_weight.sum(0)
    moved = splat + latent[:, 1:] * (1 - total.clamp(0, 1))
    mask = torch.cat([torch.ones(1, h, w, device=device), total])[None].expand(mask_channels, -1, -1, -1)
    return torch.cat([mask, torch.cat([latent[:, :1], moved], 1)]).to(condition.dtype)


def wan_move_condition(condition: torch.Tensor, tracks, visible=None, *, mask_channels: int = 4,
                       vae_spatial: int = 8, vae_temporal: int = 4) -> torch.Tensor:
    """Wan-Move's ``replace_feature`` (ali-vilab/Wan-Move ``wan/modules/trajectory.py``, ``t_down_strategy=
    "sample"``): Wan's I2V condition ``[mask 4 + latent C, F_lat, h, w]`` with each track's first-frame latent
    feature copied to its nearest latent pixel in every later latent frame.

    ``tracks [N, F, 2]`` are output pixels with F = 1 + 4 (F_lat - 1); latent frame t reads pixel frame 4t and
    the latent pixel ``(x // 8, y // 8)``. A point that is hidden, or outside the frame, on that frame is skipped;
    a point on the closing edge (x = W) counts as the last pixel. The mask channels are unchanged. Tracks are
    applied in order, so a later track wins where two land on one pixel (Wan-Move shuffles the order, so its
    winner is random); a track hidden on frame 0 is skipped (Wan-Move would read its feature from pixel
    ``[-1, -1]``). Returns a new tensor.
    """
    _check_condition(condition, mask_channels)
    tracks, visible = check_tracks(tracks, visible)
    _, num_latent, h, w = condition.shape
    _check_frames(tracks.shape[1], num_latent, vae_temporal)
    tracks, visible = tracks.to(condition.device), visible.to(condition.device)
    height, width = h * vae_spatial, w * vae_spatial
    frames = torch.arange(num_latent, device=condition.device) * vae_temporal
    pts, seen = tracks[:, frames], visible[:, frames]  # [N, F_lat, 2], [N, F_lat]
    inside = seen & (pts >= 0).all(-1) & (pts[..., 0] <= width) & (pts[..., 1] <= height)
    col = torch.div(pts[..., 0], vae_spatial, rounding_mode="floor").long().clamp(max=w - 1)
    row = torch.div(pts[..., 1], vae_spatial, rounding_mode="floor").long().clamp(max=h - 1)
    out = condition.clone()
    latent = out[mask_channels:]
    t = torch.arange(1, num_latent, device=condition.device)
    for k in range(len(tracks)):
        if not inside[k, 0]:
            continue
        keep = inside[k, 1:]
        source = latent[:, 0, row[k, 0], col[k, 0]]  # frame 0 is never written, so order cannot change it
        latent[:, t[keep], row[k, 1:][keep], col[k, 1:][keep]] = source[:, None]
    return out
