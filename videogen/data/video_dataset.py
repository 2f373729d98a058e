"""Video folders as a torch ``Dataset``: clips + captions (+ per-sample metadata) in, ``[3, F, H, W]`` tensors out.

Sources
-------
- **A manifest**: ``manifest.jsonl`` (one JSON object a line) or ``manifest.csv`` in ``root`` (JSONL wins when
  both exist), or an explicit ``manifest=PATH``. Fields: ``video`` (required), ``caption``, ``metadata`` (a path
  to a JSON file, or in JSONL an inline object). Relative paths are relative to the manifest's folder. Any other
  field is merged into the sample's metadata dict (overriding a same-name key of the JSON file).
  ``videogen synth`` output (``{"video": "clips/00000.mp4", "caption": ..., "metadata": "clips/00000.json"}``)
  loads as it is.
- **Otherwise every video under root** (recursively, sorted, hidden names skipped): files ending in
  ``.mp4 .webm .mov .mkv .m4v .avi .gif`` and folders that directly hold ``.png/.jpg`` frames. The caption is
  the same-name ``.txt`` beside it (``a/clip.mp4`` -> ``a/clip.txt``, frame folder ``a/clip/`` -> ``a/clip.txt``),
  the metadata the same-name ``.json`` when one exists.
- A missing or empty caption is **not** a skip: the sample trains with ``""`` (what caption dropout feeds the
  model anyway) and is counted in ``summary()["missing_captions"]``.

Samples
-------
``{"video": float32 [3, F, H, W] in [-1, 1], "caption": str, "metadata": dict | None, "path": str, "index": int}``.

1. Time: the clip is resampled to ``fps`` with ``videogen.io.resample_indices`` (nearest source frame, as
   ``load_video(fps=...)``) when ``fps`` is given and the source reports a rate (image folders have none: their
   frames are used as they are), then every ``frame_stride``-th frame is kept. ``F`` consecutive frames of that
   sequence are taken, from its start (``crop="center"``) or from a random start (``crop="random"``).
   ``F`` must be ``1 + 4k``. A clip with fewer than ``F`` frames is skipped as too short (counted).
2. Space: resized with Pillow's bilinear filter (antialiased when shrinking), preserving the aspect ratio, so
   the shorter side covers the target, then cropped to ``size = (height, width)``: centred, or at a random
   offset with ``crop="random"``. Random choices come from ``numpy.random.default_rng([seed, index, epoch])``,
   so they are reproducible and change with ``set_epoch``.

Several targets: ``size`` may be a list of ``(height, width)`` and ``num_frames`` a list of ints. Each clip
then gets the size whose aspect ratio is nearest its own (in log ratio; ties go to the first listed) and the
largest frame count it has enough frames for; ``bucket_key(i) = (F, height, width)`` names that target so
``BucketBatchSampler`` batches only equal shapes. With one size and one frame count no file is opened for it.

Metadata
--------
Passed through (a fresh copy per sample) with these changes, applied wherever the keys occur in nested dicts
and lists (``camera.c2w``, ``objects[i].trajectory``, ...):

- **Per-frame arrays are sliced to the sampled frames**: a value under a key in ``PER_FRAME_KEYS`` that is a
  list with exactly one entry per source frame (``video_info``'s frame count) becomes the entries of the
  source frames actually sampled, in order.
- **Pixel quantities follow the resize and crop**, in continuous pixel coordinates with the origin at the
  image's top-left *corner* (pixel centres at +0.5, the shapes-world convention), where resizing by ``s`` maps
  ``x -> s * x`` exactly: points under ``POINT_KEYS`` (``[..., 2]`` as ``x, y``) become
  ``(x * sx - left, y * sy - top)``; boxes under ``BOX_KEYS`` (``[x0, y0, x1, y1]``) likewise per corner;
  ``intrinsics`` (``[fx, fy, cx, cy]`` or a 3x3 ``K``, per frame or a single one) become
  ``fx * sx, fy * sy, cx * sx - left, cy * sy - top``. ``sx = resized_width / source_width`` and
  ``sy = resized_height / source_height`` (the exact ratios after rounding). Camera poses (``c2w``, ``w2c``)
  are only sliced. Points that fall outside the crop are kept, not clipped.
- ``metadata["sampling"]`` is set to what was done: ``frame_indices`` (source frames), ``fps`` (of the
  sample, None when unknown), ``source_size``, ``resized_size``, ``crop_top_left``, ``size``, ``scale``
  ``[sy, sx]``. Other keys (e.g. a top-level ``height``/``width``/``num_frames``) still describe the source.

Bad data
--------
A sample whose video or metadata cannot be read (missing, truncated, not a video, bad JSON) or that is too
short is **skipped**: one ``SkippedVideoWarning`` line naming the file and the reason, the first time only
(the failure is remembered, so later epochs neither retry nor warn again), counted in ``summary()``. Iteration
never raises on data: ``__getitem__(i)`` for a bad ``i`` returns the next usable sample after it (wrapping
around) that has the same ``bucket_key``, so batch shapes stay consistent; its ``"index"`` and ``"path"`` say
which sample it really is. Only a dataset with no usable sample at all raises (``RuntimeError``).

``scan()`` loads every sample once up front, so the summary is complete before training and a
``BucketBatchSampler`` built afterwards leaves bad files out instead of substituting them. Failures found
in DataLoader worker processes are remembered (and counted) in that worker only, so call ``scan()`` before
training with ``num_workers > 0``.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from videogen.data import scan_record
from videogen.io import CONTAINER_SUFFIXES, IMAGE_SUFFIXES, load_video, resample_indices, video_info
from videogen.validation import check_num_frames

VIDEO_SUFFIXES = tuple(CONTAINER_SUFFIXES) + (".gif",)
MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
PER_FRAME_KEYS = frozenset({"trajectory", "trajectories", "tracks", "points", "bbox", "bboxes", "plane_trajectory",
                            "c2w", "w2c", "poses", "camera_poses", "intrinsics", "visibility", "timestamps"})
POINT_KEYS = frozenset({"trajectory", "trajectories", "tracks", "points"})
BOX_KEYS = frozenset({"bbox", "bboxes"})
INTRINSICS_KEYS = frozenset({"intrinsics"})


class SkippedVideoWarning(UserWarning):
    """A video (or its metadata) could not be used and is skipped; issued once per file."""


class _TooShort(ValueError):
    """The clip has fewer frames than the sample needs."""


@dataclass
class VideoEntry:
    """One dataset item before decoding: where the video is and what comes with it."""

    video: Path
    caption: str = ""
    metadata: object = None  # a Path to a JSON file, an inline dict, or None
    extra: dict = field(default_factory=dict)  # other manifest fields, merged into the metadata
    missing_caption: bool = False


# ----------------------------------------------------------------------------------------------
# Finding the items
# ----------------------------------------------------------------------------------------------


def find_manifest(root: Path, manifest=None) -> Path | None:
    """The manifest to read: ``manifest`` (absolute, or relative to ``root``), else ``root/manifest.jsonl|csv``."""
    if manifest is not None:
        path = Path(manifest)
        path = root / path if not path.is_absolute() and (root / path).is_file() else path
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        return path
    return next((root / name for name in MANIFEST_NAMES if (root / name).is_file()), None)


def read_manifest(path: Path) -> list[VideoEntry]:
    """Entries of a ``.jsonl`` or ``.csv`` manifest; a row without ``video`` is a ``ValueError`` naming it."""
    base = path.parent
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = [(n + 2, row) for n, row in enumerate(csv.DictReader(f))]
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {n} is not valid JSON: {err}") from err
    else:
        raise ValueError(f"a manifest must be .jsonl or .csv; got {path}")
    entries = []
    for n, row in rows:
        if not isinstance(row, dict) or not row.get("video"):
            raise ValueError(f"{path} line {n} has no 'video' field (fields: video, caption, metadata, ...)")
        caption = row.get("caption") or ""
        meta = row.get("metadata") or None
        if isinstance(meta, str):
            meta = Path(meta) if Path(meta).is_absolute() else base / meta
        extra = {k: v for k, v in row.items() if k not in ("video", "caption", "metadata")}
        video = Path(row["video"])
        entries.append(VideoEntry(video if video.is_absolute() else base / video, str(caption).strip(), meta,
                                  extra, missing_caption=not str(caption).strip()))
    return entries


def _is_frame_folder(path: Path) -> bool:
    """A folder that directly holds at least one PNG/JPG image."""
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def discover_videos(root: Path) -> list[VideoEntry]:
    """Every video file and frame folder under ``root`` (sorted), with same-name ``.txt`` / ``.json`` companions."""
    entries = []

    def visit(folder: Path):
        """Collect videos in ``folder``, descending into folders that are not frame folders."""
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_dir():
                if _is_frame_folder(path):
                    entries.append(path)
                else:
                    visit(path)
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                entries.append(path)

    visit(root)
    result = []
    for video in entries:
        stem = video.parent / (video.stem if video.is_file() else video.name)
        txt, meta = stem.with_name(stem.name + ".txt"), stem.with_name(stem.name + ".json")
        caption = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else ""
        result.append(VideoEntry(video, caption, meta if meta.is_file() else None, missing_caption=not caption))
    return result


# ----------------------------------------------------------------------------------------------
# Geometry helpers (pure functions)
# ----------------------------------------------------------------------------------------------


def cover_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """The aspect-preserving size whose shorter side (relative to ``target``) covers it: ``(h, w) >= target``."""
    th, tw = target
    scale = max(th / height, tw / width)
    return max(th, round(height * scale)), max(tw, round(width * scale))


def nearest_size(height: int, width: int, sizes) -> tuple[int, int]:
    """The ``(h, w)`` among ``sizes`` whose aspect ratio is nearest ``height / width`` (log ratio; first on ties)."""
    ratio = math.log(height / width)
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))


def resize_and_crop(frames: np.ndarray, resized: tuple[int, int], top: int, left: int, size) -> np.ndarray:
    """uint8 ``[F, H, W, 3]`` resized (bilinear) to ``resized = (h, w)`` then cropped to ``size`` at ``(top, left)``."""
    rh, rw = resized
    if (rh, rw) != frames.shape[1:3]:
        frames = np.stack([np.asarray(Image.fromarray(f).resize((rw, rh), Image.Resampling.BILINEAR)) for f in frames])
    return frames[:, top:top + size[0], left:left + size[1]]


def _transform_pixels(key: str, value, sx: float, sy: float, left: float, top: float):
    """Apply the resize+crop to a point / box / intrinsics value (any nesting); unknown shapes come back unchanged."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return value
    if key in POINT_KEYS and a.ndim >= 1 and a.shape[-1] == 2:
        a = a * [sx, sy] - [left, top]
    elif key in BOX_KEYS and a.ndim >= 1 and a.shape[-1] == 4:
        a = a * [sx, sy, sx, sy] - [left, top, left, top]
    elif key in INTRINSICS_KEYS and a.ndim >= 1 and a.shape[-1] == 4:
        a = a * [sx, sy, sx, sy] - [0, 0, left, top]
    elif key in INTRINSICS_KEYS and a.ndim >= 2 and a.shape[-2:] == (3, 3):
        a = a.copy()
        a[..., 0, 0] *= sx
        a[..., 1, 1] *= sy
        a[..., 0, 2] = a[..., 0, 2] * sx - left
        a[..., 1, 2] = a[..., 1, 2] * sy - top
    else:
        return value
    return a.tolist()


def adapt_metadata(meta, frame_indices, num_source: int, scale=(1.0, 1.0), crop_top_left=(0, 0)):
    """Slice per-frame arrays to ``frame_indices`` and move pixel quantities through the resize+crop (module docstring).

    ``scale = (sy, sx)``, ``crop_top_left = (top, left)``. Returns a new object; ``meta`` is not modified.
    """
    sy, sx = scale
    top, left = crop_top_left

    def walk(value, key):
        """A copy of ``value`` (found under ``key``) with per-frame slicing and pixel changes applied."""
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            if key in PER_FRAME_KEYS and len(value) == num_source and not _is_flat_intrinsics(key, value):
                value = [value[i] for i in frame_indices]
            if key in POINT_KEYS | BOX_KEYS | INTRINSICS_KEYS:
                return _transform_pixels(key, value, sx, sy, left, top)
            return [walk(v, None) for v in value]
        return value

    return walk(copy.deepcopy(meta), None)


def _is_flat_intrinsics(key: str, value: list) -> bool:
    """A single ``[fx, fy, cx, cy]`` (not one entry per frame), even when the clip happens to have 4 frames."""
    return key in INTRINSICS_KEYS and all(isinstance(v, numbers.Real) for v in value)


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


class VideoFolderDataset(Dataset):
    """Clips with captions and optional metadata from a folder or manifest (see the module docstring).

    Args:
        root: dataset folder.
        num_frames: ``F = 1 + 4k`` frames per sample, or a list of them (largest that fits per clip).
        size: ``(height, width)`` of a sample, or a list of them (nearest aspect ratio per clip).
        fps: resample clips to this rate first (None: each clip's own rate).
        crop: ``"center"`` (start at frame 0, centred crop) or ``"random"`` (random start and crop offset).
        manifest: manifest path (default: ``root/manifest.jsonl`` or ``.csv`` if present, else scan ``root``).
        seed: seed of the random starts and crops (with the index and the epoch).
        frame_stride: keep every ``frame_stride``-th frame (after resampling to ``fps``).
        warn: issue ``SkippedVideoWarning`` lines (pass False on non-main processes).
    """

    def __init__(self, root, num_frames=17, size=(64, 64), fps: float | None = None, crop: str = "center",
                 manifest=None, seed: int = 0, frame_stride: int | None = None, warn: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        self.frame_counts = _as_list(num_frames, "num_frames")
        for count in self.frame_counts:
            check_num_frames(count, 4, name="num_frames")
        self.sizes = _as_sizes(size)
        if fps is not None and not (isinstance(fps, numbers.Real) and fps > 0):
            raise ValueError(f"fps must be a positive number or None; got {fps!r}")
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random'; got {crop!r}")
        if frame_stride is not None and not (isinstance(frame_stride, int) and frame_stride >= 1):
            raise ValueError(f"frame_stride must be a positive int or None; got {frame_stride!r}")
        self.fps, self.crop, self.seed, self.frame_stride, self.warn = fps, crop, seed, frame_stride, warn
        self.manifest = find_manifest(self.root, manifest)
        self.entries = read_manifest(self.manifest) if self.manifest else discover_videos(self.root)
        if not self.entries:
            raise ValueError(f"no videos in {self.root}: expected a manifest.jsonl/.csv or files ending in "
                             f"{', '.join(VIDEO_SUFFIXES)} or folders of {', '.join(IMAGE_SUFFIXES)} frames")
        self.epoch = 0
        self.scanned = False
        self._probes: dict[int, dict] = {}
        self._bad: dict[int, tuple[str, str]] = {}  # index -> (kind: "unreadable" | "too_short", reason)

    # ------------------------------------------------------------------ torch Dataset

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        """Sample ``index``, or (when it is unusable) the next usable one with the same bucket key."""
        n = len(self.entries)
        key = self._target_key(index)  # None when not even the header of ``index`` can be read
        for step in range(n):
            j = (index + step) % n
            if j in self._bad or (step and key is not None and self._target_key(j) != key):
                continue
            try:
                return self.load_sample(j)
            except Exception as err:  # noqa: BLE001 - data must never stop a run; the reason is reported
                self.mark_unusable(j, err)
        raise RuntimeError(f"no usable video in {self.root}: {json.dumps(self.summary(), default=str)}")

    def set_epoch(self, epoch: int) -> None:
        """Use the random starts and crops of ``epoch`` (``crop="random"`` only changes with it)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ loading

    def load_sample(self, index: int, epoch: int | None = None) -> dict:
        """Decode and preprocess sample ``index`` (no skipping: read errors and too-short clips raise)."""
        entry = self.entries[index]
        epoch = self.epoch if epoch is None else epoch
        info = self._probe(index)
        frames_total, height, width = info["num_frames"], info["height"], info["width"]
        sequence, sample_fps = self._frame_sequence(info)
        count, size = self._target(index, info, len(sequence))
        rng = np.random.default_rng([self.seed, index, epoch]) if self.crop == "random" else None
        start = int(rng.integers(0, len(sequence) - count + 1)) if rng is not None else 0
        chosen = sequence[start:start + count]
        frames = load_video(entry.video, num_frames=chosen[-1] + 1)[chosen]
        if frames.shape[1:3] != (height, width):  # trust the decoded frames over the header
            height, width = frames.shape[1:3]
        resized = cover_size(height, width, size)
        if rng is not None:
            top, left = int(rng.integers(0, resized[0] - size[0] + 1)), int(rng.integers(0, resized[1] - size[1] + 1))
        else:
            top, left = (resized[0] - size[0]) // 2, (resized[1] - size[1]) // 2
        frames = resize_and_crop(frames, resized, top, left, size)
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
        scale = (resized[0] / height, resized[1] / width)
        metadata = self._metadata(entry)
        if metadata is not None:
            metadata = adapt_metadata(metadata, chosen, frames_total, scale, (top, left))
            metadata["sampling"] = dict(frame_indices=list(chosen), fps=sample_fps, source_size=[height, width],
                                        resized_size=list(resized), crop_top_left=[top, left], size=list(size),
                                        scale=list(scale))
        return {"video": video, "caption": entry.caption, "metadata": metadata, "path": str(entry.video),
                "index": index}

    def _probe(self, index: int) -> dict:
        """``video_info`` of sample ``index`` (remembered)."""
        if index not in self._probes:
            info = video_info(self.entries[index].video)
            if not info["num_frames"] or not info["height"] or not info["width"]:
                raise ValueError(f"{self.entries[index].video} reports no frames or no frame size: {info}")
            self._probes[index] = info
        return self._probes[index]

    def _frame_sequence(self, info: dict) -> tuple[list[int], float | None]:
        """Source frame indices after resampling to ``fps`` and striding, and the rate of that sequence."""
        n, source_fps = info["num_frames"], info["fps"]
        if self.fps is not None and source_fps:
            sequence, rate = resample_indices(n, source_fps, self.fps), float(self.fps)
        else:
            sequence, rate = list(range(n)), source_fps
        if self.frame_stride:
            sequence = sequence[::self.frame_stride]
            rate = rate / self.frame_stride if rate else rate
        return sequence, rate

    def _target(self, index: int, info: dict, available: int) -> tuple[int, tuple[int, int]]:
        """``(F, (height, width))`` for a clip; too few frames for every allowed count raises ``_TooShort``."""
        fitting = [c for c in self.frame_counts if c <= available]
        if not fitting:
            raise _TooShort(f"{available} frames{self._rate_words()} but a sample needs "
                            f"{min(self.frame_counts)}")
        return max(fitting), nearest_size(info["height"], info["width"], self.sizes)

    def _rate_words(self) -> str:
        words = f" at {self.fps:g} fps" if self.fps else ""
        return words + (f" with stride {self.frame_stride}" if self.frame_stride else "")

    def _metadata(self, entry: VideoEntry) -> dict | None:
        """The entry's metadata dict (JSON file or inline) merged with extra manifest fields, or None."""
        meta = entry.metadata
        if isinstance(meta, Path):
            try:
                meta = json.loads(meta.read_text(encoding="utf-8"))
            except FileNotFoundError as err:
                raise FileNotFoundError(f"metadata file not found: {meta}") from err
            except json.JSONDecodeError as err:
                raise ValueError(f"metadata file {meta} is not valid JSON: {err}") from err
        if meta is not None and not isinstance(meta, dict):
            raise ValueError(f"metadata of {entry.video} must be a JSON object; got {type(meta).__name__}")
        if entry.extra:
            meta = {**(meta or {}), **entry.extra}
        return meta

    # ------------------------------------------------------------------ buckets

    def bucket_key(self, index: int):
        """``(F, height, width)`` of sample ``index``, or None if it is known to be unusable (probing it if needed)."""
        return None if index in self._bad else self._target_key(index)

    def _target_key(self, index: int):
        """``(F, height, width)`` the sample would have (also for a sample that failed later), None if unknowable."""
        if len(self.frame_counts) == 1 and len(self.sizes) == 1:
            return (self.frame_counts[0], *self.sizes[0])
        try:
            info = self._probe(index)
            count, size = self._target(index, info, len(self._frame_sequence(info)[0]))
        except Exception as err:  # noqa: BLE001
            self.mark_unusable(index, err)
            return None
        return (count, *size)

    # ------------------------------------------------------------------ skipping and reporting

    def mark_unusable(self, index: int, err: BaseException) -> None:
        """Remember that sample ``index`` is unusable because of ``err`` and say so (once per sample)."""
        kind = "too_short" if isinstance(err, _TooShort) else "unreadable"
        reason = " ".join((str(err) if kind == "too_short" else f"{type(err).__name__}: {err}").split())
        self._record_unusable(index, kind, reason)

    def _record_unusable(self, index: int, kind: str, reason: str) -> None:
        """Mark sample ``index`` unusable (``kind``: "unreadable" or "too_short") and warn."""
        if index in self._bad:
            return
        self._bad[index] = (kind, reason)
        if self.warn:
            what = "too short" if kind == "too_short" else "unreadable"
            warnings.warn(f"skipping {what} video {self.entries[index].video}: {reason}", SkippedVideoWarning,
                          stacklevel=3)

    def scan(self, progress: bool = False, record: bool = True) -> dict:
        """Load every sample once (video and metadata), so that every bad file is known; return ``summary()``.

        ``record``: reuse and update ``root/.videogen-scan.json`` (``videogen.data.scan_record``), so files
        unchanged since the last scan with the same settings are not decoded again (their results are replayed,
        skip warnings included)."""
        from tqdm.auto import tqdm

        settings = self._scan_settings()
        known = scan_record.load_record(self.root, settings) if record else {}
        files = {}
        for index in tqdm(range(len(self.entries)), desc="scanning videos", disable=not progress):
            entry = self.entries[index]
            key, stamp = f"{index}\t{entry.video}", scan_record.entry_stamp(entry)
            past = known.get(key)
            if index in self._bad:
                pass
            elif past is not None and past[0] == stamp:  # unchanged since the recorded scan: replay its result
                if past[1] is not None:
                    self._record_unusable(index, *past[1])
            else:
                try:
                    self.load_sample(index, epoch=0)
                except Exception as err:  # noqa: BLE001
                    self.mark_unusable(index, err)
            files[key] = [stamp, list(self._bad[index]) if index in self._bad else None]
        if record:
            scan_record.save_record(self.root, settings, files)
        self.scanned = True
        return self.summary()

    def _scan_settings(self) -> dict:
        """What decides a sample's usability besides its files: the frame / size / rate settings and the manifest."""
        manifest = None if self.manifest is None else [str(self.manifest), *(scan_record.path_stamp(self.manifest) or [])]
        return dict(num_frames=self.frame_counts, sizes=[list(s) for s in self.sizes], fps=self.fps,
                    frame_stride=self.frame_stride, manifest=manifest)

    def is_usable(self, index: int) -> bool:
        """False once sample ``index`` is known to be unusable (True for samples not tried yet)."""
        return index not in self._bad

    def usable_indices(self) -> list[int]:
        """Indices not known to be unusable (all usable ones after ``scan()``)."""
        return [i for i in range(len(self.entries)) if i not in self._bad]

    def captions(self) -> list[str]:
        """Captions of the samples not known to be unusable, in order."""
        return [self.entries[i].caption for i in self.usable_indices()]

    def summary(self) -> dict:
        """Counts so far: ``total, usable, skipped, skipped_files, unreadable, too_short, missing_captions, reasons,
        scanned`` (before ``scan()`` or a full pass, ``usable`` counts samples not tried yet as usable)."""
        bad = sorted(self._bad.items())
        files = [str(self.entries[i].video) for i, _ in bad]
        return dict(
            total=len(self.entries), usable=len(self.entries) - len(bad), skipped=len(bad), skipped_files=files,
            unreadable=sum(kind == "unreadable" for _, (kind, _) in bad),
            too_short=sum(kind == "too_short" for _, (kind, _) in bad),
            missing_captions=sum(e.missing_caption for e in self.entries),
            reasons={f: reason for f, (_, (_, reason)) in zip(files, bad)}, scanned=self.scanned,
        )

    def cache_params(self) -> dict:
        """The preprocessing settings that determine a sample's pixels (part of a cache key)."""
        return dict(num_frames=self.frame_counts, sizes=[list(s) for s in self.sizes], fps=self.fps, crop=self.crop,
                    seed=self.seed if self.crop == "random" else None, frame_stride=self.frame_stride)


def _as_list(value, name: str) -> list[int]:
    """An int or a non-empty list of ints, as a list."""
    values = [value] if isinstance(value, numbers.Integral) else list(value)
    if not values or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a non-empty list of ints; got {value!r}")
    return [int(v) for v in values]


def _as_sizes(size) -> list[tuple[int, int]]:
    """``(h, w)`` or a list of them, as a list of int pairs (positive)."""
    sizes = [size] if len(size) == 2 and all(isinstance(s, numbers.Integral) for s in size) else list(size)
    out = []
    for s in sizes:
        if len(s) != 2 or not all(isinstance(v, numbers.Integral) and v > 0 for v in s):
            raise ValueError(f"size must be (height, width) with positive ints, or a list of them; got {size!r}")
        out.append((int(s[0]), int(s[1])))
    if not out:
        raise ValueError("size must not be an empty list")
    return out
