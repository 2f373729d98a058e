"""The scan record of a video folder: which clips a past ``VideoFolderDataset.scan()`` found usable, so a rescan of
unchanged files decodes nothing.

The record is ``<root>/.videogen-scan.json``: the dataset settings that decide usability (frame counts, sizes,
fps, stride, the manifest's size and mtime) and, per sample (its index and video path), a stamp of the video (and
of its metadata file) with the result: ``null`` (usable) or ``[kind, reason]``. A file whose stamp differs, or any
change of the settings, is scanned again (in a folder without a manifest, a new file shifts the indices after it,
so those rescan). Writing it is best effort: a read-only folder is scanned every time, as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from videogen.io import write_atomically

RECORD_NAME = ".videogen-scan.json"
VERSION = 1


def path_stamp(path) -> list | None:
    """``[size, mtime_ns]`` of a file; for a folder of frames, of every file in it (sorted); None if missing."""
    path = Path(path)
    try:
        if path.is_dir():
            return sorted([p.name, *path_stamp(p)] for p in path.iterdir() if p.is_file())
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def entry_stamp(entry) -> list:
    """The stamp of a ``VideoEntry``: its video's and, when it is a file, its metadata's."""
    meta = path_stamp(entry.metadata) if isinstance(entry.metadata, Path) else None
    return [path_stamp(entry.video), meta]


def load_record(root, settings: dict) -> dict:
    """``{"index\tvideo path": [stamp, result]}`` recorded for these ``settings`` ({} when none, unreadable or stale)."""
    try:
        record = json.loads((Path(root) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("version") != VERSION or record.get("settings") != settings:
        return {}
    files = record.get("files")
    return files if isinstance(files, dict) else {}


def save_record(root, settings: dict, files: dict) -> bool:
    """Write the record (atomically); False when the folder is not writable."""
    text = json.dumps(dict(version=VERSION, settings=settings, files=files))
    try:
        write_atomically(Path(root) / RECORD_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError:
        return False
    return True
