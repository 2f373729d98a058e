"""Export a trained pipeline for shipping: half-precision safetensors, generation defaults and SHA256SUMS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")


def export_pipeline(src, dst, dtype: str = "float16", generation_config: dict | None = None) -> Path:
    """Write the pipeline at ``src`` to ``dst`` with every weight stored as ``dtype`` (an adapter-only directory:
    ``export_adapter_dir``; loading upcasts again:
    ``videogen generate`` computes in fp32 on a CPU), ``generation_config.json`` (the defaults ``videogen
    generate`` uses for this model: ``src``'s own, such as the trainer's size and text length, updated by
    ``generation_config``), and ``SHA256SUMS`` (checked on every load). ``dst`` is replaced
    atomically: written beside it, then renamed."""
    import torch

    from videogen.loading import load_pipeline

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}; got {dtype!r}")
    src, dst = Path(src), Path(dst)
    if (src / "base.json").exists():
        return export_adapter_dir(src, dst, dtype, generation_config)
    pipe = load_pipeline(src)
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            component.to(getattr(torch, dtype))
    tmp = fresh_beside(dst)
    pipe.save_pretrained(tmp, safe_serialization=True)
    return finish(src, tmp, dst, generation_config)


def fresh_beside(dst: Path) -> Path:
    """An empty folder beside ``dst`` (``.NAME.tmp``) to write the export into before it replaces ``dst``."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finish(src: Path, tmp: Path, dst: Path, generation_config: dict | None) -> Path:
    """Write the generation defaults (``src``'s own updated by ``generation_config``) and ``SHA256SUMS`` into
    ``tmp``, then put ``tmp`` in the place of ``dst``."""
    from videogen.integrity import write_checksums

    own = src / "generation_config.json"
    merged = dict(json.loads(own.read_text()) if own.exists() else {}, **(generation_config or {}))
    if merged:
        (tmp / "generation_config.json").write_text(json.dumps(merged, indent=2) + "\n")
    write_checksums(tmp)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst


def export_adapter_dir(src, dst, dtype: str = "float16", generation_config: dict | None = None) -> Path:
    """``export_pipeline`` for an adapter-only directory (``base.json``: a trained camera or trajectory adapter
    over its base): the adapter in ``dtype``, ``base.json`` re-pointed so that ``dst`` finds the same base (the path
    kept relative, so ``checkpoints/`` moves as one), the generation defaults and ``SHA256SUMS``; the base is not
    copied."""
    import os

    import torch

    from pipelines.adapter_dir import BASE_FILE, read_base_info
    from videogen.loading import adapter_pipeline_class

    src, dst = Path(src), Path(dst)
    info, base = read_base_info(src)
    index = json.loads((src / "model_index.json").read_text())
    pipeline = adapter_pipeline_class(src)
    component = pipeline.adapter_component
    adapter = pipeline.adapter_class.from_pretrained(src / component).to(getattr(torch, dtype))
    tmp = fresh_beside(dst)
    rel = os.path.relpath(base, dst.resolve())
    adapter.save_pretrained(tmp / component, safe_serialization=True)
    (tmp / BASE_FILE).write_text(json.dumps({**info, "base": rel}, indent=2) + "\n")
    (tmp / "model_index.json").write_text(json.dumps({**index, "base": rel}, indent=2) + "\n")
    return finish(src, tmp, dst, generation_config)


def directory_size(path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def add_cli(subparsers):
    """Register ``videogen export`` on an argparse subparsers object; return its parser."""
    p = subparsers.add_parser("export", help="write a pipeline for shipping: fp16 weights, defaults, checksums")
    p.add_argument("--model", required=True, help="pipeline directory (e.g. runs/NAME/final)")
    p.add_argument("--out", required=True, help="output directory (replaced)")
    p.add_argument("--dtype", choices=DTYPES, default="float16")
    p.add_argument("--generation-config", dest="generation_config", default=None,
                   help="JSON object of `videogen generate` defaults (height, width, num_frames, steps, "
                        "guidance_scale, stg_scale, stg_blocks, stg_mode, fps, ...) or a path to a .json file")
    p.set_defaults(func=run_export)
    return p


def run_export(args) -> int:
    """Run ``videogen export`` and print the output directory and its size."""
    config = None
    if args.generation_config:
        text = args.generation_config
        config = json.loads(Path(text).read_text() if Path(text).is_file() else text)
        if not isinstance(config, dict):
            raise ValueError("--generation-config must be a JSON object")
    out = export_pipeline(args.model, args.out, args.dtype, config)
    print(f"{out} ({directory_size(out) / 2**20:.1f} MiB)")
    return 0
