"""Adapter-only pipeline directories: a trained adapter and a ``base.json`` pointing at the base pipeline it steers.

The shipped camera and trajectory models are such directories (the adapter in fp16, a few hundred kB to a few MB),
so ``checkpoints/`` holds the base once. ``AdapterDirMixin`` gives a control pipeline (a base plus one adapter
component) ``save_adapter`` and ``from_adapter_dir``; ``videogen.loading.load_pipeline`` and ``videogen export``
read and write the same layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

BASE_FILE = "base.json"  # an adapter-only pipeline directory: {"base": relative path of the base pipeline, ...}


def read_base_info(directory: Union[str, os.PathLike]) -> tuple[dict, Path]:
    """``(base.json's contents, the base pipeline directory it points at, resolved)``; a base that is not a
    pipeline directory is a ``FileNotFoundError`` naming both."""
    directory = Path(directory)
    info = json.loads((directory / BASE_FILE).read_text())
    base_dir = (directory / info["base"]).resolve()
    if not (base_dir / "model_index.json").exists():
        raise FileNotFoundError(f"{directory}/{BASE_FILE} points at the base {base_dir}, which is not a pipeline "
                                "directory (no model_index.json)")
    return info, base_dir


class AdapterDirMixin:
    """``save_adapter`` / ``from_adapter_dir`` for a pipeline made of a base pipeline and one adapter component.

    A class sets ``adapter_component`` (its component name, e.g. ``"camera_adapter"``) and ``adapter_class``, and
    may override ``adapter_info`` (extra ``base.json`` fields) and ``from_base_options`` (``from_base`` keywords
    read back from them)."""

    adapter_component: str = ""
    adapter_class: type = type(None)

    def adapter_info(self) -> dict:
        """Extra fields ``save_adapter`` writes to ``base.json`` (none by default)."""
        return {}

    @classmethod
    def from_base_options(cls, info: dict) -> dict:
        """Keyword arguments of ``from_base`` read back from ``base.json`` (none by default)."""
        return {}

    def save_adapter(self, directory: Union[str, os.PathLike], base: Union[str, os.PathLike]) -> Path:
        """Write only the adapter (``<adapter_component>/``), a ``base.json`` pointing at the base pipeline
        directory ``base`` (stored relative to ``directory``) and a ``model_index.json`` naming this class;
        ``from_adapter_dir`` (and ``videogen generate --model``) read it back over that base."""
        directory = Path(directory)
        adapter = getattr(self, self.adapter_component, None)
        if adapter is None:
            raise ValueError(f"this pipeline has no {self.adapter_component} to save")
        adapter.save_pretrained(directory / self.adapter_component)
        rel = os.path.relpath(Path(base).resolve(), directory.resolve())
        (directory / BASE_FILE).write_text(json.dumps({"base": rel, **self.adapter_info()}, indent=2) + "\n")
        index = {"_class_name": type(self).__name__, "_diffusers_version": "adapter-only",
                 self.adapter_component: [type(self).__module__, self.adapter_class.__name__], "base": rel}
        (directory / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        return directory

    @classmethod
    def from_adapter_dir(cls, directory: Union[str, os.PathLike], load_base=None):
        """The pipeline of an adapter-only directory (``save_adapter``): its base loaded with ``load_base(path)``
        (default: the text- or image-to-video class its ``model_index.json`` names; ``videogen.loading.load_pipeline``
        passes itself, so the base is checked and cast as any model) and the adapter from its folder."""
        from pipelines.image_to_video import load_base_pipeline

        directory = Path(directory)
        info, base_dir = read_base_info(directory)
        base = (load_base or load_base_pipeline)(base_dir)
        adapter = cls.adapter_class.from_pretrained(directory / cls.adapter_component)
        param = next(base.transformer.parameters())
        return cls.from_base(base, adapter.to(param.device), **cls.from_base_options(info))
