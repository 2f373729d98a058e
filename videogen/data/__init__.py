"""Video data: datasets, caches and the synthetic shapes world."""

import importlib

_LAZY = {
    "VideoFolderDataset": "video_dataset", "VideoEntry": "video_dataset", "SkippedVideoWarning": "video_dataset",
    "BucketBatchSampler": "buckets", "collate_videos": "buckets",
    "CachedDataset": "cache", "build_cache": "cache", "content_key": "cache", "model_identity": "cache",
}
__all__ = list(_LAZY)


def __getattr__(name):
    """Import the dataset, bucket and cache names on first use (``import videogen.data`` stays light)."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
