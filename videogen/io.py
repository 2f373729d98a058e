"""Video files in and out: save frames as MP4 (H.264), GIF or a PNG folder; load MP4/WebM/MOV/MKV, GIF or image folders.

Every writer first turns its input into one array, ``uint8 [F, H, W, 3]`` (``as_uint8_frames``), so
all accepted layouts produce the same file. Accepted inputs, and how they are told apart:

==========================  ===========================  =========  ========================================
input                       layout                       range      notes
==========================  ===========================  =========  ========================================
numpy, uint8                ``[F, H, W, C]``             0..255     channels last, always
numpy, float                ``[F, H, W, C]``             [0, 1]     also ``[1, F, H, W, C]`` (a pipeline's
                                                                    ``.frames`` with batch 1)
torch, float, 5-D           ``[B, C, F, H, W]``, B = 1   [-1, 1]    the library's video tensor convention
torch, float, 4-D           ``[C, F, H, W]``             [-1, 1]    when only dim 0 is a channel count
torch, float, 4-D           ``[F, H, W, C]``             [0, 1]     when only the last dim is a channel count
torch, uint8, 4-D           ``[F, H, W, C]``             0..255     as numpy uint8
list of PIL images          one image per frame          —          all the same size; any mode
==========================  ===========================  =========  ========================================

C is 1 (grey, repeated to RGB), 3 (RGB) or 4 (RGBA: the alpha channel is dropped, not composited).
A channel count is 1, 3 or 4, so a 4-D float tensor whose first *and* last dims both look like a
channel count (e.g. ``[3, 64, 48, 3]``: 3 frames channels-last, or 3 channels of 64 frames?) is
refused as ambiguous rather than guessed; pass it as numpy (always channels-last) or as a 5-D
``[1, C, F, H, W]`` tensor instead. Floats may overshoot their range by 10% of its width (VAE outputs
do) and are clamped, as diffusers does; anything further out (0..255 floats, [-1, 1] data given in a
[0, 1] layout) is an error that names the range it saw.

``load_video`` always returns ``uint8 [F, H, W, 3]``.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import GifImagePlugin, Image, ImageSequence

SAVE_FORMATS = ("mp4", "gif", "png")
CONTAINER_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_QUALITY = 7
_CHANNELS = (1, 3, 4)
_FRAME_NAME = re.compile(r"^\d{5}\.png$")


# ----------------------------------------------------------------------------------------------
# Conversions
# ----------------------------------------------------------------------------------------------


def frames_to_numpy(video: torch.Tensor) -> np.ndarray:
    """A library video tensor ``[B, C, F, H, W]`` in [-1, 1] as numpy ``[B, F, H, W, C]`` float32 in [0, 1].

    This is diffusers' ``VideoProcessor.postprocess_video(video, "np")`` (denormalise, clamp, move
    channels last), the same call diffusers' video pipelines make for ``output_type="np"``.
    """
    from diffusers.video_processor import VideoProcessor

    if not isinstance(video, torch.Tensor) or video.ndim != 5 or not video.is_floating_point():
        shape = tuple(video.shape) if hasattr(video, "shape") else type(video).__name__
        raise ValueError(f"frames_to_numpy expects a floating torch tensor [B, C, F, H, W] in [-1, 1]; got {shape}")
    return VideoProcessor(do_resize=False).postprocess_video(video.detach(), output_type="np")


def numpy_to_pil(frames) -> list[Image.Image]:
    """Frames in any layout ``save_video`` accepts (e.g. numpy ``[F, H, W, C]``) as a list of RGB PIL images."""
    return [Image.fromarray(frame) for frame in as_uint8_frames(frames)]


def as_uint8_frames(frames) -> np.ndarray:
    """Any accepted frame input (see the module docstring) as a new ``uint8 [F, H, W, 3]`` array."""
    if isinstance(frames, (list, tuple)):
        array = _pil_list_to_array(frames)
    elif isinstance(frames, torch.Tensor):
        array = _tensor_to_array(frames)
    elif isinstance(frames, np.ndarray):
        array = _numpy_to_array(frames)
    else:
        raise TypeError(
            "frames must be a numpy array, a torch tensor or a list of PIL images; " f"got {type(frames).__name__}"
        )
    f, h, w, c = array.shape
    if min(f, h, w) == 0:
        raise ValueError(f"frames are empty: shape [F, H, W, C] = {list(array.shape)}")
    if c == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _pil_list_to_array(images) -> np.ndarray:
    """A list of PIL images as ``uint8 [F, H, W, 3]`` (every mode converted to RGB)."""
    if not images:
        raise ValueError("frames is an empty list")
    if not all(isinstance(im, Image.Image) for im in images):
        kinds = sorted({type(im).__name__ for im in images})
        raise TypeError(f"a list of frames must hold PIL images only; got {', '.join(kinds)}")
    sizes = sorted({im.size for im in images})
    if len(sizes) > 1:
        raise ValueError(f"all PIL frames must have the same size; got (width, height) sizes {sizes}")
    return np.stack([np.asarray(im.convert("RGB")) for im in images])


def _numpy_to_array(array: np.ndarray) -> np.ndarray:
    """numpy ``[F, H, W, C]`` (or ``[1, F, H, W, C]``) uint8 or float in [0, 1] as uint8 ``[F, H, W, C]``."""
    if array.ndim == 5:
        if array.shape[0] != 1:
            raise ValueError(
                f"a 5-D numpy array must be [1, F, H, W, C] (one video); got shape {array.shape}; "
                "save each video separately, e.g. frames[i]"
            )
        array = array[0]
    if array.ndim != 4 or array.shape[-1] not in _CHANNELS:
        raise ValueError(
            f"numpy frames must be channels-last [F, H, W, C] with C in {_CHANNELS}; got shape {array.shape} "
            "(channels-first numpy is not accepted: use np.moveaxis)"
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_uint8(array, 0.0, 1.0, "numpy float [F, H, W, C]")
    raise ValueError(f"numpy frames must be uint8 (0..255) or float in [0, 1]; got dtype {array.dtype}")


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor in one of the accepted layouts (module docstring) as uint8 ``[F, H, W, C]``."""
    tensor = tensor.detach().cpu()
    shape = tuple(tensor.shape)
    if tensor.dtype == torch.uint8:
        if tensor.ndim != 4:
            raise ValueError(f"a uint8 tensor must be channels-last [F, H, W, C]; got shape {shape}")
        return _numpy_to_array(tensor.numpy())
    if not tensor.is_floating_point():
        raise ValueError(f"a tensor of frames must be floating point or uint8; got dtype {tensor.dtype}")
    tensor = tensor.float()
    if tensor.ndim == 5:
        if shape[0] != 1 or shape[1] not in _CHANNELS:
            raise ValueError(
                f"a 5-D tensor must be [B, C, F, H, W] with B = 1 and C in {_CHANNELS}; got shape {shape}; "
                "save each video separately, e.g. video[i:i+1]"
            )
        tensor = tensor[0]
        channels_first = True
    elif tensor.ndim == 4:
        first, last = shape[0] in _CHANNELS, shape[-1] in _CHANNELS
        if first and last:
            raise ValueError(
                f"ambiguous 4-D tensor of shape {shape}: it reads as channels-first [C, F, H, W] in [-1, 1] "
                "and as channels-last [F, H, W, C] in [0, 1]; pass a 5-D [1, C, F, H, W] tensor for the "
                "first or a numpy array (always [F, H, W, C]) for the second"
            )
        if not (first or last):
            raise ValueError(
                f"a 4-D tensor must be [C, F, H, W] or [F, H, W, C] with C in {_CHANNELS}; got shape {shape}"
            )
        channels_first = first
    else:
        raise ValueError(f"a tensor of frames must be 4-D or 5-D; got shape {shape}")
    if channels_first:  # [C, F, H, W] in [-1, 1]
        array = tensor.permute(1, 2, 3, 0).numpy()
        return _float_to_uint8(array, -1.0, 1.0, "channels-first tensor [C, F, H, W]")
    return _float_to_uint8(tensor.numpy(), 0.0, 1.0, "channels-last tensor [F, H, W, C]")


def _float_to_uint8(array: np.ndarray, low: float, high: float, what: str) -> np.ndarray:
    """Map ``[low, high]`` onto 0..255 (rounded), clamping overshoot up to 10% of the range width."""
    if not np.isfinite(array).all():
        raise ValueError(f"{what} frames contain NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    slack = 0.1 * (high - low)
    if lo < low - slack or hi > high + slack:
        raise ValueError(
            f"{what} frames must lie in [{low:g}, {high:g}]; got values in [{lo:g}, {hi:g}] "
            "(0..255 data should be uint8; [-1, 1] data belongs in a [C, F, H, W] or [1, C, F, H, W] tensor)"
        )
    unit = (np.clip(array, low, high) - low) / (high - low)
    return np.round(unit * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def save_video(frames, path, fps: float = 16, quality: float | None = None, format: str | None = None) -> str:
    """Write frames to ``path`` as MP4, GIF or a folder of PNGs, atomically; return the path written.

    The format comes from ``format`` ("mp4", "gif", "png") when given, else from the path:
    ``.mp4`` → H.264 (libx264, yuv420p) in MP4; ``.gif`` → looping GIF; no suffix or a trailing
    ``/`` → a folder of ``00000.png, 00001.png, ...``. Any other suffix is a ``ValueError``.

    - MP4: 4:2:0 chroma needs even height and width; odd sizes are an error naming the nearest even
      sizes (nothing is padded or cropped). ``quality`` is 0–10, higher is better, default 7; it maps
      onto libx264's CRF as ``crf = round(51 - 5 * quality)`` (7 → CRF 16, 10 → CRF 1). The same
      frames give the same bytes on the same machine: macroblock-tree rate control is off
      (``mbtree=0``), because at small sizes (32x32, 64x48) it made the bytes vary from run to run.
    - GIF: each frame gets its own 256-colour adaptive palette, every frame is written (even repeats),
      and the file loops forever. GIF delays are whole 1/100 s, so each frame lasts
      ``round(100 / fps)`` centiseconds (16 fps is stored as 6 cs, i.e. 16.7 fps). ``quality`` is ignored.
    - PNG: lossless; ``quality`` is ignored. An existing folder is replaced only if it holds nothing
      but ``NNNNN.png`` frames (a previous save), so unrelated files are never deleted.

    Files are written to a temporary name in the target's folder and moved into place with
    ``os.replace``, so the final name never holds a half-written file. Parent folders are created.
    """
    if not _positive_number(fps):
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    kind = _save_format(path, format)
    array = as_uint8_frames(frames)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "mp4":
        crf = _crf_from_quality(DEFAULT_QUALITY if quality is None else quality)
        _check_even_size(array.shape[1], array.shape[2])
        write_atomically(target, lambda tmp: _write_mp4(array, tmp, fps, crf))
    elif kind == "gif":
        write_atomically(target, lambda tmp: _write_gif(array, tmp, fps))
    else:
        _write_png_folder(array, target)
    return str(target)


def _positive_number(value) -> bool:
    """A finite real number above zero (bools excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _save_format(path, format: str | None) -> str:
    """The output format: ``format`` if given, else from the path's suffix (none or trailing '/' = PNG)."""
    if format is not None:
        if format not in SAVE_FORMATS:
            raise ValueError(f"format must be one of {', '.join(SAVE_FORMATS)}; got {format!r}")
        return format
    text = os.fspath(path)
    suffix = Path(text).suffix.lower()
    if text.endswith(("/", os.sep)) or suffix == "":
        return "png"
    if suffix in (".mp4", ".gif"):
        return suffix[1:]
    raise ValueError(
        f"cannot tell the video format from {text!r}: supported are .mp4 (H.264), .gif, and a folder of PNGs "
        "(a path with no suffix or ending in '/'); or pass format='mp4' | 'gif' | 'png'"
    )


def _crf_from_quality(quality: float) -> int:
    """libx264 CRF for a 0–10 quality (higher is better): ``round(51 - 5 * quality)``."""
    if not (isinstance(quality, numbers.Real) and 0 <= quality <= 10):
        raise ValueError(f"quality must be a number from 0 (worst) to 10 (best); got {quality!r}")
    return int(round(51 - 5 * quality))


def _check_even_size(height: int, width: int) -> None:
    """H.264 in 4:2:0 (yuv420p) stores chroma at half resolution, so both sizes must be even."""
    if height % 2 or width % 2:
        def near(n):
            return f"{n - 1} or {n + 1}" if n % 2 else f"{n}"

        raise ValueError(
            f"MP4 (H.264, yuv420p 4:2:0 chroma) needs an even height and width; got height {height}, width "
            f"{width}; nearest even sizes: height {near(height)}, width {near(width)}. Resize or crop the "
            "frames first (e.g. load_video(..., size=(h, w))), or save as .gif or a PNG folder"
        )


def write_atomically(target: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, then rename it onto ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_mp4(frames: np.ndarray, path: str, fps: float, crf: int) -> None:
    """Encode ``uint8 [F, H, W, 3]`` frames with libx264 (yuv420p) into an MP4 container at ``path``."""
    _, height, width, _ = frames.shape
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def _write_gif(frames: np.ndarray, path: str, fps: float) -> None:
    """Write every frame (Pillow's own GIF writer would merge repeated frames) with a per-frame palette."""
    delay_ms = 10 * max(1, round(100 / fps))
    images = [Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE) for frame in frames]
    with open(path, "wb") as fp:
        header, _ = GifImagePlugin.getheader(images[0], info={"loop": 0})
        fp.write(b"".join(header))
        for image in images:
            fp.write(b"".join(GifImagePlugin.getdata(image, duration=delay_ms, disposal=1, include_color_table=True)))
        fp.write(b";")


def _write_png_folder(frames: np.ndarray, target: Path) -> None:
    """Write ``00000.png, ...`` into a temporary folder, then swap it in for ``target``."""
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"cannot write a PNG folder to {target}: a file with that name exists")
        strangers = sorted(p.name for p in target.iterdir() if not _FRAME_NAME.match(p.name))
        if strangers:
            raise ValueError(
                f"refusing to replace folder {target}: it holds files that are not saved frames "
                f"({', '.join(strangers[:5])}{', ...' if len(strangers) > 5 else ''})"
            )
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    old = None
    try:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"{i:05d}.png")
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, old / "frames")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old / "frames", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def video_info(path) -> dict:
    """``dict(num_frames, fps, height, width)`` of a video file or image folder (only a GIF is walked frame by frame).

    ``fps`` is the container's average rate for MP4/WebM/MOV/MKV, ``1000 / mean frame delay (ms)``
    for a GIF, and ``None`` for an image folder or a GIF without delays. ``num_frames`` is the
    container's frame count, or the number of video packets when the container does not store one.
    """
    kind, path = _load_kind(path)
    try:
        if kind == "folder":
            files = _image_files(path)
            with Image.open(files[0]) as first:
                width, height = first.size
            return dict(num_frames=len(files), fps=None, height=height, width=width)
        if kind == "gif":
            with Image.open(path) as gif:
                durations = [frame.info.get("duration", 0) for frame in ImageSequence.Iterator(gif)]
                width, height = gif.size
            return dict(num_frames=len(durations), fps=_gif_fps(durations), height=height, width=width)
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            count = stream.frames or sum(1 for p in container.demux(stream) if p.size)
            ctx = stream.codec_context
            return dict(num_frames=count, fps=_stream_fps(stream), height=ctx.height, width=ctx.width)
    except (av.error.FFmpegError, OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"could not read video {path} (corrupt, truncated or not a video): {err}") from err


def load_video(path, num_frames: int | None = None, size: tuple[int, int] | None = None, fps: float | None = None):
    """Decode a video file or image folder into numpy ``uint8 [F, H, W, 3]`` (RGB, frames in order).

    Sources: MP4/WebM/MOV/MKV/M4V/AVI (PyAV, first video stream), GIF (Pillow), or a folder of
    PNG/JPG images taken in natural name order (``2.png`` before ``10.png``; zero-padded names sort
    the same either way). Alpha is dropped.

    - ``fps``: resample in time by picking, for output frame ``j``, the source frame nearest to time
      ``j / fps`` using the source's reported rate (``video_info``'s ``fps``; ties go to the later
      frame). The output spans the source's first to last frame, i.e.
      ``floor((N - 1) * fps / source_fps) + 1`` frames. Image folders have no rate: an error.
    - ``num_frames``: keep the first ``num_frames`` frames (after resampling); an error naming how many
      there are if fewer exist. Decoding stops once they are read.
    - ``size=(height, width)``: resize every frame to exactly that size with Pillow's bilinear filter,
      which widens its support when shrinking (so downscaling averages like an area filter). The
      aspect ratio is not preserved; crop first if it must be.

    A missing path is a ``FileNotFoundError``; an unreadable, corrupt or truncated file a ``ValueError``.
    """
    if num_frames is not None and (not isinstance(num_frames, numbers.Integral) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive int; got {num_frames!r}")
    if size is not None and (len(size) != 2 or not all(isinstance(s, numbers.Integral) and s > 0 for s in size)):
        raise ValueError(f"size must be (height, width) with positive ints; got {size!r}")
    if fps is not None and not _positive_number(fps):
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    kind, path = _load_kind(path)
    source_fps = video_info(path)["fps"] if fps is not None else None
    if fps is not None and source_fps is None:
        raise ValueError(f"cannot resample {path} to {fps:g} fps: it reports no frame rate")
    limit = num_frames
    if num_frames is not None and fps is not None:  # enough source frames to span output frame num_frames-1
        limit = math.ceil((num_frames - 1) * source_fps / fps - 1e-9) + 1
    try:
        frames = _decode(kind, path, limit)
    except (av.error.FFmpegError, OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"could not read video {path} (corrupt, truncated or not a video): {err}") from err
    if fps is not None:
        frames = [frames[i] for i in resample_indices(len(frames), source_fps, fps)]
    if num_frames is not None:
        if len(frames) < num_frames:
            at = "" if fps is None else f" at {fps:g} fps"
            raise ValueError(f"asked for {num_frames} frames but {path} has only {len(frames)}{at}")
        frames = frames[:num_frames]
    if size is not None:
        height, width = size
        frames = [frame.resize((width, height), Image.Resampling.BILINEAR) for frame in frames]
    return np.stack([np.asarray(frame.convert("RGB")) for frame in frames])


def resample_indices(num_source: int, source_fps: float, fps: float) -> list[int]:
    """Source frame shown at each output frame when ``num_source`` frames at ``source_fps`` are played at ``fps``.

    Output frame ``j`` (time ``j / fps``) shows the source frame nearest in time, ties going to the
    later one; the output covers the source's first to last frame time.
    """
    count = math.floor((num_source - 1) * fps / source_fps + 1e-9) + 1
    return [min(num_source - 1, math.floor(j * source_fps / fps + 0.5 + 1e-9)) for j in range(count)]


def _load_kind(path) -> tuple[str, Path]:
    """Which reader handles ``path`` ("folder", "gif" or "av"); missing paths and unknown suffixes are errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video file or folder: {path}")
    if path.is_dir():
        return "folder", path
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return "gif", path
    if suffix in CONTAINER_SUFFIXES:
        return "av", path
    raise ValueError(
        f"cannot read {path}: supported are {', '.join(CONTAINER_SUFFIXES)}, .gif, and folders of "
        f"{', '.join(IMAGE_SUFFIXES)} images"
    )


def _decode(kind: str, path: Path, limit: int | None) -> list[Image.Image]:
    """The first ``limit`` frames (all if ``None``) as RGB PIL images."""
    if kind == "folder":
        files = _image_files(path)[:limit]
        frames = []
        for file in files:
            with Image.open(file) as image:
                frames.append(image.convert("RGB"))
        sizes = sorted({frame.size for frame in frames})
        if len(sizes) > 1:
            raise ValueError(f"images in {path} differ in size: (width, height) {sizes}")
        return frames
    if kind == "gif":
        with Image.open(path) as gif:
            frames = []
            for frame in ImageSequence.Iterator(gif):
                frames.append(frame.convert("RGB"))
                if limit is not None and len(frames) == limit:
                    break
            return frames
    return _decode_av(path, limit)


def _decode_av(path: Path, limit: int | None) -> list[Image.Image]:
    """Decode the first video stream with PyAV; a stream that ends before its stated length is truncated."""
    frames = []
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        stated = stream.frames
        for frame in container.decode(stream):
            frames.append(frame.to_image())
            if limit is not None and len(frames) == limit:
                return frames
    if not frames:
        raise ValueError(f"could not read video {path}: no frames could be decoded")
    if stated and len(frames) < stated:
        raise ValueError(f"video {path} is truncated: the container states {stated} frames, {len(frames)} decode")
    return frames


def _video_stream(container, path: Path):
    """The first video stream of an open PyAV container."""
    if not container.streams.video:
        raise ValueError(f"{path} has no video stream")
    return container.streams.video[0]


def _stream_fps(stream) -> float | None:
    """The stream's reported frame rate (average, else guessed), or ``None``."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def _gif_fps(durations: list) -> float | None:
    """``1000 / mean delay`` of a GIF's frame delays in ms, or ``None`` when it stores none."""
    mean = sum(durations) / len(durations) if durations else 0
    return 1000.0 / mean if mean > 0 else None


def _image_files(folder: Path) -> list[Path]:
    """PNG/JPG files in ``folder`` in natural name order; an empty folder is an error."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"folder {folder} holds no {', '.join(IMAGE_SUFFIXES)} images")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
