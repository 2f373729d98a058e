"""Camera conditioning: pose files, relative poses, Plücker rays, VideoX-Fun's 24-channel packing and presets."""

from __future__ import annotations

import json
import math
import os
import warnings

import torch

from videogen.validation import check_num_frames

# Conventions (those of CameraCtrl and VideoX-Fun, which the Fun-Control-Camera checkpoints were trained with):
# OpenCV camera axes (x right, y down, z forward); ``c2w`` is the 4x4 camera-to-world matrix [[R, t], [0, 1]]
# (R's columns: the camera axes in world coordinates, t: the camera centre); intrinsics are (fx, fy, cx, cy) in
# pixels with pixel centres at +0.5, so (cx, cy) = (W/2, H/2) is the image centre. Translations are never rescaled.

POSE_SIZE = (1280, 720)  # (width, height) that RealEstate10K / VideoX-Fun normalised intrinsics are annotated at
ASSET_INTRINSICS = (0.532139961, 0.946026558, 0.5, 0.5)  # VideoX-Fun asset/*.txt: fx/W, fy/H, cx/W, cy/H
BASE_TRANSLATION = 1.5  # VideoX-Fun comfyui/camera_utils.py CAMERA["base_T_norm"]
BASE_ANGLE = math.pi / 3  # CAMERA["base_angle"]
ORBIT_RADIUS = 3.0  # ours (VideoX-Fun has no orbit): pivot depth, just beyond a zoom-in's 2.96 units of travel
_FIELDS = 19  # t fx fy cx cy 0 0 + the 3x4 world-to-camera matrix

# VideoX-Fun's presets as (w2c translation direction T, w2c rotation angles about x, y, z); frame i of n has
# w2c = [R(i/n * speed * BASE_ANGLE * angles) | i/n * speed * BASE_TRANSLATION * T]. Diagonals add two entries,
# as VideoX-Fun's CameraCombine node and its asset/Pan_Left_Up.txt etc. do. A positive w2c x translation puts the
# camera centre at negative x: the camera moves left.
_FUN_PRESETS = {
    "static": ((0, 0, 0), (0, 0, 0)),
    "pan-left": ((1, 0, 0), (0, 0, 0)),
    "pan-right": ((-1, 0, 0), (0, 0, 0)),
    "pan-up": ((0, 1, 0), (0, 0, 0)),
    "pan-down": ((0, -1, 0), (0, 0, 0)),
    "pan-left-up": ((1, 1, 0), (0, 0, 0)),
    "pan-left-down": ((1, -1, 0), (0, 0, 0)),
    "pan-right-up": ((-1, 1, 0), (0, 0, 0)),
    "pan-right-down": ((-1, -1, 0), (0, 0, 0)),
    "zoom-in": ((0, 0, -2), (0, 0, 0)),
    "zoom-out": ((0, 0, 2), (0, 0, 0)),
    "roll-cw": ((0, 0, 0), (0, 0, -1)),  # VideoX-Fun "CW"
    "roll-ccw": ((0, 0, 0), (0, 0, 1)),  # VideoX-Fun "ACW"
}
CAMERA_PRESETS = tuple(_FUN_PRESETS) + ("orbit-left", "orbit-right")
_ALIASES = {"cw": "roll-cw", "acw": "roll-ccw", "ccw": "roll-ccw", "pan-up-left": "pan-left-up",
            "pan-down-left": "pan-left-down", "pan-up-right": "pan-right-up", "pan-down-right": "pan-right-down"}


# ----------------------------------------------------------------------------------------------
# Intrinsics and pose tensors
# ----------------------------------------------------------------------------------------------


def _pixel_intrinsics(normalised: torch.Tensor, height: int, width: int, original_size) -> torch.Tensor:
    """Normalised (fx/W, fy/H, cx/W, cy/H) to pixels, with CameraCtrl's aspect fix for poses annotated at
    ``original_size`` (width, height): the focal along the cropped axis is rescaled (``process_pose_file``)."""
    fx, fy, cx, cy = normalised.unbind(-1)
    if original_size is not None:
        pose_ratio = original_size[0] / original_size[1]
        if pose_ratio > width / height:
            fx = (height * pose_ratio) * fx / width
        else:
            fy = (width / pose_ratio) * fy / height
    return torch.stack([fx * width, fy * height, cx * width, cy * height], dim=-1)


def _normalised_intrinsics(pixels: torch.Tensor, height: int, width: int, original_size) -> torch.Tensor:
    """The inverse of ``_pixel_intrinsics``: what a pose file must hold to read back as ``pixels``."""
    fx, fy, cx, cy = pixels.unbind(-1)
    fx, fy = fx / width, fy / height
    if original_size is not None:
        pose_ratio = original_size[0] / original_size[1]
        if pose_ratio > width / height:
            fx = fx * width / (height * pose_ratio)
        else:
            fy = fy * height / (width / pose_ratio)
    return torch.stack([fx, fy, cx / width, cy / height], dim=-1)


def _pose_tensors(intrinsics, c2w, where: str):
    """Validated float64 CPU ``(intrinsics [F, 4], c2w [F, 4, 4])``; one ``[4]`` intrinsics row serves every frame."""
    try:
        c2w, intrinsics = (torch.as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=torch.float64)
                           for x in (c2w, intrinsics))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: poses are not numeric arrays ({err})") from None
    if c2w.ndim != 3 or c2w.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{where}: c2w must be [F, 4, 4] (or [F, 3, 4]); got shape {tuple(c2w.shape)}")
    if c2w.shape[1] == 3:
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(len(c2w), 1, 4)
        c2w = torch.cat([c2w, bottom], dim=1)
    if intrinsics.ndim == 1:
        intrinsics = intrinsics.expand(len(c2w), -1)
    if intrinsics.shape != (len(c2w), 4):
        raise ValueError(f"{where}: intrinsics must be [F, 4] (fx, fy, cx, cy) for the {len(c2w)} poses; "
                         f"got shape {tuple(intrinsics.shape)}")
    if len(c2w) == 0:
        raise ValueError(f"{where}: no poses")
    if not (torch.isfinite(c2w).all() and torch.isfinite(intrinsics).all()):
        raise ValueError(f"{where}: poses hold non-finite values (nan or inf)")
    if (intrinsics[:, :2] <= 0).any():
        raise ValueError(f"{where}: focal lengths fx, fy must be positive")
    return intrinsics, c2w


def relative_poses(c2w: torch.Tensor) -> torch.Tensor:
    """Poses relative to frame 0: ``inv(c2w[0]) @ c2w[k]``, so frame 0 is exactly the identity.

    This is CameraCtrl's ``get_relative_pose`` with ``cam_to_origin = 0`` (``w2c_0 @ c2w_k``); translations are
    not rescaled. Computed in float64, returned in the input's dtype.
    """
    c2w64 = c2w.to(torch.float64)
    rel = torch.linalg.inv(c2w64[0]) @ c2w64
    rel[0] = torch.eye(4, dtype=torch.float64)
    return rel.to(c2w.dtype if c2w.is_floating_point() else torch.float32)


# ----------------------------------------------------------------------------------------------
# Pose files
# ----------------------------------------------------------------------------------------------


def _parse_pose_line(line: str, path, lineno: int) -> list[float]:
    """The 19 numbers of one text-format line, or a ``ValueError`` naming the file and line."""
    tokens = line.split()
    if len(tokens) != _FIELDS:
        raise ValueError(f"{path}:{lineno}: expected {_FIELDS} numbers (t fx fy cx cy 0 0, then the 3x4 "
                         f"world-to-camera matrix row by row); got {len(tokens)}")
    try:
        values = [float(tok) for tok in tokens]
    except ValueError:
        bad = next(tok for tok in tokens if not _is_number(tok))
        raise ValueError(f"{path}:{lineno}: {bad!r} is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{path}:{lineno}: non-finite value (nan or inf)")
    return values


def _is_number(token: str) -> bool:
    """Whether ``float(token)`` works."""
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_text_poses(path, text: str):
    """Normalised intrinsics ``[F, 4]`` and w2c ``[F, 4, 4]`` (float64) of a CameraCtrl text pose file."""
    lines = text.splitlines()
    if lines and len(lines[0].split()) == _FIELDS and all(_is_number(t) for t in lines[0].split()):
        warnings.warn(f"{path}: line 1 looks like a pose but is skipped: the first line of this format is a header "
                      "(the video URL in RealEstate10K); add an empty first line", stacklevel=3)
    rows = [_parse_pose_line(line, path, n) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    if not rows:
        raise ValueError(f"{path}: no pose lines after the header line")
    values = torch.tensor(rows, dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64).repeat(len(rows), 1, 1)
    w2c[:, :3, :] = values[:, 7:].reshape(-1, 3, 4)
    return values[:, 1:5], w2c


def _read_json_poses(path, data, height: int, width: int):
    """Pixel intrinsics at ``height x width`` and c2w (float64) of a shapes-world metadata or plain JSON file."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with 'intrinsics' and 'c2w' (or a shapes-world 'camera')")
    if isinstance(data.get("camera"), dict):  # shapes-world clip metadata (videogen.data.synthetic.clip_metadata)
        camera = data["camera"]
        if camera.get("convention", "opencv") != "opencv":
            raise ValueError(f"{path}: camera convention {camera['convention']!r} is not 'opencv'")
        if "height" not in data or "width" not in data or "intrinsics" not in camera or "c2w" not in camera:
            raise ValueError(f"{path}: shapes-world metadata needs 'height', 'width' and camera 'intrinsics', 'c2w'")
        source, intrinsics, c2w = (data["height"], data["width"]), camera["intrinsics"], camera["c2w"]
    elif "intrinsics" in data and "c2w" in data:
        source, intrinsics, c2w = data.get("size"), data["intrinsics"], data["c2w"]
    else:
        raise ValueError(f"{path}: expected keys 'intrinsics' and 'c2w' (or a shapes-world 'camera' object)")
    intrinsics, c2w = _pose_tensors(intrinsics, c2w, str(path))
    if source is not None:
        if not isinstance(source, (list, tuple)) or len(source) != 2 or min(source) <= 0:
            raise ValueError(f"{path}: 'size' must be [height, width]; got {source!r}")
        sy, sx = height / source[0], width / source[1]
        intrinsics = intrinsics * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
    return intrinsics, c2w


def read_pose_file(path, height: int, width: int, original_size=POSE_SIZE):
    """Camera poses from a file: ``(intrinsics [F, 4] px at height x width, c2w [F, 4, 4] relative to frame 0)``.

    Three forms, told apart by content (a ``.json`` suffix or a leading ``{`` means JSON):

    - **Text** (RealEstate10K / CameraCtrl / VideoX-Fun ``asset/*.txt``): line 1 is a header and is skipped; each
      further non-empty line is ``t fx fy cx cy 0 0`` and the world-to-camera 3x4 matrix row by row (19 numbers).
      Intrinsics are normalised (fx/W, fy/H, cx/W, cy/H) for poses annotated at ``original_size`` (width, height),
      1280x720 by default; at another aspect ratio the focal along the cropped axis is corrected exactly as
      VideoX-Fun's ``process_pose_file`` does (``original_size=None`` skips that). ``t`` is ignored.
    - **Shapes-world metadata** (``clips/NNNNN.json`` of ``videogen synth``): ``camera.intrinsics`` (pixels at the
      clip's ``height`` x ``width``) are rescaled per axis to the target size; ``camera.c2w`` is used as is.
    - **Plain JSON** ``{"intrinsics": [[fx, fy, cx, cy], ...], "c2w": [[4 rows of 4], ...]}``: intrinsics in pixels
      (one row may serve every frame); they are taken to be at the target size unless the file has
      ``"size": [height, width]``, then rescaled per axis from that size. ``c2w`` rows may also be 3x4.

    ``original_size`` applies to the text form only. Poses come back relative to frame 0 (``relative_poses``),
    in float32. A malformed line is a ``ValueError`` naming the file and line number; non-finite values, missing
    keys or wrong shapes are ``ValueError``\\s too.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if str(path).lower().endswith(".json") or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        intrinsics, c2w = _read_json_poses(path, data, height, width)
    else:
        normalised, w2c = _read_text_poses(path, text)
        intrinsics = _pixel_intrinsics(normalised, height, width, original_size)
        c2w = torch.linalg.inv(w2c)
    return intrinsics.float(), relative_poses(c2w).float()


def write_pose_file(path, intrinsics, c2w, height: int, width: int, original_size=POSE_SIZE) -> None:
    """Write poses in the text form that ``read_pose_file`` (and VideoX-Fun, CameraCtrl) read.

    ``intrinsics [F, 4]`` are pixels at ``height x width``; they are stored normalised with the inverse of the
    reader's aspect fix for ``original_size``, so ``read_pose_file(path, height, width)`` gives them back. The
    poses are stored as world-to-camera ``inv(c2w)``; reading makes them relative to frame 0. Line 1 is a header.
    """
    intrinsics, c2w = _pose_tensors(intrinsics, c2w, "write_pose_file")
    normalised = _normalised_intrinsics(intrinsics, height, width, original_size)
    w2c = torch.linalg.inv(c2w)[:, :3, :].reshape(len(c2w), 12)
    lines = ["# videogen camera poses: t fx/W fy/H cx/W cy/H 0 0, then the 3x4 world-to-camera matrix row by row"]
    for k, w in zip(normalised.tolist(), w2c.tolist()):
        lines.append(" ".join(["0", *map(repr, k), "0", "0", *map(repr, w)]))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# Plücker rays and VideoX-Fun's packing
# ----------------------------------------------------------------------------------------------


def _frame_rays(K: torch.Tensor, c2w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[6, H, W]`` Plücker rays ``(o x d, d)`` of one camera at pixel centres ``u`` (columns), ``v`` (rows)."""
    fx, fy, cx, cy = K
    d_cam = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
    d = d_cam @ c2w[:3, :3].T  # rotate into the world: R @ d_cam per pixel
    o = c2w[:3, 3].expand_as(d)
    rays = torch.cat([torch.cross(o, d, dim=-1), d], dim=-1)  # dim=-1: never let cross pick the axis
    return rays.T.reshape(6, *u.shape)


def plucker_rays(intrinsics: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Plücker rays ``[6, F, height, width]``: channels 0-2 the moment ``o x d``, channels 3-5 the direction ``d``.

    CameraCtrl / VideoX-Fun ``ray_condition``: pixel ``(i, j)`` (column, row) looks along
    ``d = R @ normalize(((i + 0.5 - cx) / fx, (j + 0.5 - cy) / fy, 1))`` from ``o = t`` (the camera centre), for
    ``intrinsics [F, 4]`` (fx, fy, cx, cy) in pixels and ``c2w [F, 4, 4]`` (OpenCV axes). Pass poses relative to
    frame 0 (``relative_poses``), as the camera checkpoints were trained with. Computed in float32 (float64 if an
    input is float64) on ``c2w``'s device, one frame at a time to bound memory.
    """
    if intrinsics.ndim != 2 or intrinsics.shape[1] != 4 or c2w.ndim != 3 or c2w.shape[1:] != (4, 4) \
            or len(intrinsics) != len(c2w):
        raise ValueError(f"plucker_rays needs intrinsics [F, 4] and c2w [F, 4, 4] with the same F; got "
                         f"{tuple(intrinsics.shape)} and {tuple(c2w.shape)}")
    dtype = torch.float64 if torch.float64 in (intrinsics.dtype, c2w.dtype) else torch.float32
    c2w = c2w.to(dtype)
    intrinsics = intrinsics.to(device=c2w.device, dtype=dtype)
    rows = torch.arange(height, dtype=dtype, device=c2w.device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=c2w.device) + 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    out = torch.empty(6, len(c2w), height, width, dtype=dtype, device=c2w.device)
    for f in range(len(c2w)):
        out[:, f] = _frame_rays(intrinsics[f], c2w[f], u, v)
    return out


def pack_camera(plucker: torch.Tensor) -> torch.Tensor:
    """VideoX-Fun's packing of Plücker rays ``[6, F, H, W]`` into ``[24, 1 + (F-1)//4, H, W]`` (a leading batch
    axis ``[B, 6, F, H, W]`` is kept).

    Frame 0 is repeated four times, then every four frames form one latent frame: channel ``4k + j`` of latent
    frame ``t`` is Plücker channel ``k`` of pixel frame ``max(4t + j - 3, 0)`` (``pipeline_wan_fun_control``).
    ``F`` must be ``1 + 4k``, else a ``ValueError``.
    """
    batched = plucker.ndim == 5
    p = plucker if batched else plucker[None]
    if p.ndim != 5 or p.shape[1] != 6:
        raise ValueError(f"pack_camera needs Plücker rays [6, F, H, W] (or [B, 6, F, H, W]); "
                         f"got shape {tuple(plucker.shape)}")
    check_num_frames(p.shape[2], 4, name="the number of camera frames")
    b, c, f, h, w = p.shape
    latent_frames = 1 + (f - 1) // 4
    out = p.new_empty(b, c, 4, latent_frames, h, w)  # [B, k, j, t, H, W]: channel 4k + j of latent frame t
    out[:, :, :, 0] = p[:, :, :1]  # latent frame 0: pixel frame 0 four times
    for j in range(4):
        out[:, :, j, 1:] = p[:, :, j + 1 :: 4]  # latent frame t >= 1: pixel frames 4t - 3 + j
    packed = out.view(b, c * 4, latent_frames, h, w)
    return packed if batched else packed[0]


# ----------------------------------------------------------------------------------------------
# Resampling (slerp)
# ----------------------------------------------------------------------------------------------


def _quaternions(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[N, 4]`` (w, x, y, z) of rotation matrices ``[N, 3, 3]`` (Shepperd's stable branch)."""
    m = R
    diag = torch.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                        1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    a, b, c = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    d, e, g = m[:, 1, 0] + m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] + m[:, 1, 2]
    candidates = torch.stack([  # row r is 4 q_r q (each row a multiple of q; use the one with the largest q_r)
        torch.stack([diag[:, 0], a, b, c], -1), torch.stack([a, diag[:, 1], d, e], -1),
        torch.stack([b, d, diag[:, 2], g], -1), torch.stack([c, e, g, diag[:, 3]], -1)], 1)
    q = candidates[torch.arange(len(R), device=R.device), diag.argmax(-1)]
    return q / q.norm(dim=-1, keepdim=True)


def _rotation_matrices(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` of unit quaternions ``[N, 4]`` (w, x, y, z)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


def _slerp(q0: torch.Tensor, q1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation ``[N, 4]`` from ``q0`` to ``q1`` at fractions ``s [N]``, along the shorter arc."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)  # q and -q are the same rotation: take the short way round
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    s = s[:, None]
    near = theta < 1e-6  # (almost) equal: the linear blend is exact to float precision
    sin = torch.sin(theta).clamp(min=1e-12)
    w0 = torch.where(near, 1 - s, torch.sin((1 - s) * theta) / sin)
    w1 = torch.where(near, s, torch.sin(s * theta) / sin)
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def resample_poses(c2w: torch.Tensor, num_frames: int, intrinsics: torch.Tensor | None = None):
    """``(c2w [num_frames, 4, 4], intrinsics [num_frames, 4] or None)`` spread evenly over the input's span.

    Output frame k sits at input position ``k * (F - 1) / (num_frames - 1)`` (first and last poses kept); between
    two input poses rotations are slerped (quaternions, shorter arc) and translations and intrinsics interpolated
    linearly. (VideoX-Fun's trainer interpolates all matrix entries linearly, which leaves non-rotations.)
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1; got {num_frames}")
    n = len(c2w)
    c2w64 = c2w.to(torch.float64)
    pos = torch.linspace(0, n - 1, num_frames, dtype=torch.float64, device=c2w.device)
    i0 = pos.floor().long().clamp(max=max(n - 2, 0))
    i1 = (i0 + 1).clamp(max=n - 1)
    s = pos - i0
    q = _quaternions(c2w64[:, :3, :3])
    out = torch.eye(4, dtype=torch.float64, device=c2w.device).repeat(num_frames, 1, 1)
    out[:, :3, :3] = _rotation_matrices(_slerp(q[i0], q[i1], s))
    out[:, :3, 3] = torch.lerp(c2w64[i0, :3, 3], c2w64[i1, :3, 3], s[:, None])
    if intrinsics is not None:
        k = intrinsics.to(device=c2w.device, dtype=torch.float64)
        intrinsics = torch.lerp(k[i0], k[i1], s[:, None]).to(intrinsics.dtype)
    return out.to(c2w.dtype), intrinsics


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------


def _euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """``Rz @ Ry @ Rx`` ``[N, 3, 3]`` of angles ``[N, 3]`` (radians about x, y, z), as VideoX-Fun builds presets."""
    def axis(theta, i, j):
        R = torch.eye(3, dtype=torch.float64).repeat(len(theta), 1, 1)
        c, s = torch.cos(theta), torch.sin(theta)
        R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j] = c, -s, s, c
        return R

    return axis(angles[:, 2], 0, 1) @ axis(angles[:, 1], 2, 0) @ axis(angles[:, 0], 1, 2)


def _preset_key(name: str) -> str:
    """The ``CAMERA_PRESETS`` entry for ``name`` (any case; ``_`` or spaces for ``-``; VideoX-Fun's ``CW``/``ACW``)."""
    key = "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    key = _ALIASES.get(key, key)
    if key not in CAMERA_PRESETS:
        raise ValueError(f"unknown camera preset {name!r}; expected one of {', '.join(CAMERA_PRESETS)}")
    return key


def _is_preset(name: str) -> bool:
    """Whether ``name`` (any spelling ``_preset_key`` accepts) is a preset."""
    try:
        _preset_key(name)
        return True
    except ValueError:
        return False


def camera_preset(name: str, num_frames: int, speed: float = 1.0, height: int = 480, width: int = 832):
    """``(intrinsics [F, 4] px, c2w [F, 4, 4])`` of a named camera motion; frame 0 is the identity.

    Names (``CAMERA_PRESETS``) follow VideoX-Fun's presets and signs, in OpenCV axes (y down): ``pan-left`` moves
    the camera left (centre x decreases, the scene slides right in the image), ``pan-up`` up (y decreases),
    ``zoom-in`` forward (z increases), ``roll-cw`` turns the camera clockwise on screen (its x axis towards +y);
    diagonals are ``pan-left-up`` etc. Frame i of ``num_frames`` = n is VideoX-Fun's ``get_camera_motion``: the
    world-to-camera translation ``i/n * speed * 1.5`` per unit direction (zoom: 2) and roll ``i/n * speed * pi/3``,
    so 81 frames reproduce ``asset/Pan_Left.txt`` etc. (last camera centre x = -1.4815). ``orbit-left``/``-right``
    (ours) circle a pivot ``ORBIT_RADIUS`` ahead on the optical axis, about the y axis, keeping it centred; the
    arc length equals a pan's travel (angle ``i/n * speed * 1.5 / ORBIT_RADIUS``), moving the camera left/right.
    Intrinsics are VideoX-Fun's asset values read at ``height x width`` (454.09 px focal at 480x832).
    """
    key = _preset_key(name)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1; got {num_frames}")
    s = torch.arange(num_frames, dtype=torch.float64) / num_frames * speed
    if key.startswith("orbit-"):
        phi = s * BASE_TRANSLATION / ORBIT_RADIUS * (1 if key == "orbit-left" else -1)
        c2w = torch.eye(4, dtype=torch.float64).repeat(num_frames, 1, 1)
        c2w[:, :3, :3] = _euler_rotation(torch.stack([0 * phi, phi, 0 * phi], -1))  # z axis points at the pivot
        c2w[:, 0, 3] = -ORBIT_RADIUS * torch.sin(phi)
        c2w[:, 2, 3] = ORBIT_RADIUS * (1 - torch.cos(phi))
    else:
        direction, angles = (torch.tensor(v, dtype=torch.float64) for v in _FUN_PRESETS[key])
        w2c = torch.eye(4, dtype=torch.float64).repeat(num_frames, 1, 1)
        w2c[:, :3, :3] = _euler_rotation(s[:, None] * BASE_ANGLE * angles)
        w2c[:, :3, 3] = s[:, None] * BASE_TRANSLATION * direction
        c2w = torch.linalg.inv(w2c)
    normalised = torch.tensor(ASSET_INTRINSICS, dtype=torch.float64).expand(num_frames, 4)
    intrinsics = _pixel_intrinsics(normalised, height, width, POSE_SIZE)
    return intrinsics.float(), relative_poses(c2w).float()


# ----------------------------------------------------------------------------------------------
# The condition a pipeline feeds the model
# ----------------------------------------------------------------------------------------------


def camera_poses(camera, num_frames: int, height: int, width: int, *, speed: float = 1.0):
    """``(intrinsics [num_frames, 4] px, c2w [num_frames, 4, 4] relative to frame 0)``, float32 on the CPU, for a
    camera given as a preset name, a pose-file path or an ``(intrinsics [F, 4] px, c2w [F, 4, 4])`` pair.

    A string that names a preset is that preset; any other string or path must be a pose file (read with
    ``read_pose_file``); a pair is made relative to its frame 0. ``speed`` scales presets only. Poses whose count
    differs from ``num_frames`` are resampled (``resample_poses``) with one warning.
    """
    if isinstance(camera, (str, os.PathLike)):
        if isinstance(camera, str) and _is_preset(camera):
            intrinsics, c2w = camera_preset(camera, num_frames, speed, height, width)
        elif os.path.isfile(camera):
            intrinsics, c2w = read_pose_file(camera, height, width)
        else:
            raise ValueError(f"camera {os.fspath(camera)!r} is neither a preset ({', '.join(CAMERA_PRESETS)}) "
                             "nor an existing pose file")
    elif isinstance(camera, (tuple, list)) and len(camera) == 2:
        intrinsics, c2w = _pose_tensors(camera[0], camera[1], "camera")
        intrinsics, c2w = intrinsics.float(), relative_poses(c2w).float()
    else:
        raise ValueError(f"camera must be a preset name, a pose-file path or an (intrinsics, c2w) pair; "
                         f"got {type(camera).__name__}")
    if len(c2w) != num_frames:
        warnings.warn(f"the camera has {len(c2w)} poses for {num_frames} frames; resampling them (slerp rotations, "
                      "linear translations and intrinsics)", stacklevel=3)
        c2w, intrinsics = resample_poses(c2w, num_frames, intrinsics)
    return intrinsics, c2w


def camera_condition(camera, num_frames: int, height: int, width: int, *, speed: float = 1.0, device=None):
    """Packed Plücker rays ``[24, 1 + (num_frames-1)//4, height, width]`` for a camera given as a preset name,
    a pose-file path or an ``(intrinsics [F, 4] px, c2w [F, 4, 4])`` pair (see ``camera_poses``).

    The rays are computed at pixel resolution on ``device`` (default: the poses' device, CPU for files/presets).
    """
    check_num_frames(num_frames, 4)
    source_device = None
    if isinstance(camera, (tuple, list)) and len(camera) == 2 and isinstance(camera[1], torch.Tensor):
        source_device = camera[1].device
    intrinsics, c2w = camera_poses(camera, num_frames, height, width, speed=speed)
    device = device if device is not None else source_device
    return pack_camera(plucker_rays(intrinsics.to(device), c2w.to(device), height, width))


def static_camera_condition(intrinsics: torch.Tensor, num_frames: int, height: int, width: int, device=None):
    """The packed rays of a camera that never moves (identity c2w every frame) with the intrinsics of frame 0:
    camera motion guidance's null camera ("static")."""
    c2w = torch.eye(4).repeat(num_frames, 1, 1)
    return camera_condition((intrinsics[0], c2w), num_frames, height, width, device=device)


def write_camera_preset(path, name: str, num_frames: int, height: int, width: int, speed: float = 1.0) -> None:
    """Write the preset ``name`` (``camera_preset``) as an editable text pose file at ``path``, for ``height x
    width`` video: ``read_pose_file(path, height, width)`` gives the preset's intrinsics and poses back."""
    intrinsics, c2w = camera_preset(name, num_frames, speed, height, width)
    write_pose_file(path, intrinsics, c2w, height, width)
