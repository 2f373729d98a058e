"""Reading checkpoints from disk and renaming their keys: the plumbing shared by every converter."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    """Load one weights file (safetensors or a torch pickle) onto the CPU."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"cannot read safetensors file {path}: it is corrupt or truncated ({err})") from err
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad pickle
        raise ValueError(f"cannot read checkpoint file {path}: {err}") from err
    # Some checkpoints wrap the weights: {"state_dict": ...} or {"model": ...}.
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return obj


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The weight files that make up the checkpoint at ``path`` (a file, or a directory of shards).

    A directory with a ``*.index.json`` uses the index's ``weight_map``; otherwise every
    ``*.safetensors`` file in it (sorted) is a shard, falling back to ``*.pth``/``*.bin``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path does not exist: {path}")
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise ValueError(f"{path} is not a weights file (expected one of {', '.join(WEIGHT_SUFFIXES)})")
        return [path]
    indexes = sorted(path.glob("*.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text())["weight_map"]
        files = [path / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"shards listed in {indexes[0].name} are missing: {', '.join(missing)}")
        return files
    for suffix in WEIGHT_SUFFIXES:
        files = sorted(path.glob(f"*{suffix}"))
        if files:
            return files
    raise FileNotFoundError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) found in directory {path}")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a whole checkpoint (one file or all shards of a directory) into one CPU state dict."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        part = _load_file(file)
        clash = state.keys() & part.keys()
        if clash:
            raise ValueError(f"key(s) appear in more than one shard ({file.name}): {sorted(clash)[:5]}")
        state.update(part)
    return state


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (e.g. ``model.diffusion_model.``)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


# --------------------------------------------------------------------------------------
# Key tables: a list of (our_template, their_template) pairs. A template is a key prefix
# in which `{name}` stands for an integer, e.g. ("blocks.{i}.self_attn.q.", "blocks.{i}.attn1.to_q.").
# The first template that matches the start of a key wins and the rest of the key is kept,
# so one table renames in both directions and round trips are exact.
# --------------------------------------------------------------------------------------


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    body = "".join(f"(?P<{p[1:-1]}>\\d+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(body + r"(?P<_rest>.*)$")


def rename_keys(
    state: Mapping[str, torch.Tensor], table: Sequence[tuple[str, str]], reverse: bool = False
) -> dict[str, torch.Tensor]:
    """Rename keys by a two-way template table (ours -> theirs, or theirs -> ours with ``reverse``).

    Keys that match no template keep their name; strict loading reports them afterwards.
    """
    pairs = [(b, a) if reverse else (a, b) for a, b in table]
    compiled = [(_template_regex(src), dst) for src, dst in pairs]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key = key
        for regex, dst in compiled:
            m = regex.match(key)
            if m:
                groups = {k: v for k, v in m.groupdict().items() if k != "_rest"}
                new_key = dst.format(**groups) + m.group("_rest")
                break
        if new_key in out:
            raise ValueError(f"two keys map to {new_key!r} (one of them is {key!r})")
        out[new_key] = value
    return out


def _listing(keys: Iterable[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint", assign: bool = False
) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is a ``ValueError`` listing them.

    ``assign=True`` adopts the tensors themselves (for a model built on the meta device).
    """
    expected = model.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    misshaped = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected.keys() & state.keys()
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys [{len(missing)}]: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys [{len(unexpected)}]: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys [{len(misshaped)}]: {_listing(misshaped)}")
    if problems:
        raise ValueError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True, assign=assign)


def read_config(path: str | os.PathLike) -> dict | None:
    """The ``config.json`` of a model directory, or None when there is none (an original checkpoint)."""
    path = Path(path)
    cfg = path / "config.json" if path.is_dir() else None
    if cfg is not None and cfg.exists():
        return json.loads(cfg.read_text())
    return None
