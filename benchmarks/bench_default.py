"""The README's first command, timed: `videogen generate` with the embedded default model, end to end (a fresh
process: imports, checksum check, load, sampling, decode, mp4 write) beside a bare `python -c "import torch"`
(interleaved, so both see the same machine), their ratio, an import breakdown, and an in-process breakdown by stage."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red circle moving to the right on a black background"


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def end_to_end(repeats: int, model: Path) -> tuple[list[float], list[float]]:
    """Wall seconds of ``repeats`` fresh ``videogen generate PROMPT -o out.mp4`` processes (default model), each
    right after a fresh ``python -c "import torch"`` process: (generate times, bare-torch times)."""
    gen, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            bare.append(_wall([sys.executable, "-c", "import torch"]))
            gen.append(_wall([sys.executable, "-m", "videogen.cli", "generate", PROMPT, "-o", f"{tmp}/out{i}.mp4",
                              "--model", str(model)]))
    return gen, bare


# Cumulative imports on the way to a pipeline, each in a fresh process: what each layer adds over the one before.
IMPORT_LAYERS = [
    ("torch", "import torch"),
    ("+ torch._dynamo (diffusers.utils.torch_utils imports it unconditionally)", "import torch._dynamo"),
    ("+ the rest of diffusers.utils", "import diffusers.utils"),
    ("+ diffusers.DiffusionPipeline (every autoencoder, UNet block, peft)", "from diffusers import DiffusionPipeline"),
    ("+ transformers' T5", "from diffusers import DiffusionPipeline; import transformers.models.t5.modeling_t5"),
    ("+ videogen's pipelines and CLI", "import pipelines.text_to_video, videogen.cli as c; c.build_parser()"),
]


def import_layers(repeats: int) -> list[tuple[str, float]]:
    """Median wall seconds of a fresh process running each IMPORT_LAYERS statement."""
    return [(name, statistics.median(_wall([sys.executable, "-c", stmt]) for _ in range(repeats)))
            for name, stmt in IMPORT_LAYERS]


def breakdown(model: Path) -> dict:
    """Seconds per stage in one process: imports, load (with checksums), text encoding + sampling, decode, write."""
    t0 = time.perf_counter()
    import torch

    from videogen.guidance import cfg_stg
    from videogen.io import save_video
    from videogen.loading import generation_defaults, load_pipeline

    t1 = time.perf_counter()
    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    t2 = time.perf_counter()
    d = generation_defaults(model)
    guidance = cfg_stg(d["guidance_scale"], d["stg_scale"], d["stg_blocks"], d["stg_mode"])  # as `generate` does
    latents = pipe(prompt=PROMPT, height=d["height"], width=d["width"], num_frames=d["num_frames"],  # keyword: I2V too
                   num_inference_steps=d["steps"], guidance=guidance,
                   max_sequence_length=d["max_sequence_length"], generator=torch.Generator().manual_seed(0),
                   output_type="latent").frames
    t3 = time.perf_counter()
    with torch.no_grad():
        video = pipe.vae.decode(pipe.vae.denormalize_latents(latents)).sample
    frames = ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1).numpy()
    t4 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_video(frames, f"{tmp}/out.mp4", fps=d["fps"])
    t5 = time.perf_counter()
    return dict(imports=t1 - t0, load=t2 - t1, sample=t3 - t2, decode=t4 - t3, write=t5 - t4,
                steps=d["steps"], frames=d["num_frames"], size=f"{d['height']}x{d['width']}",
                guidance=repr(guidance))


def main() -> None:
    """Print the end-to-end median and the in-process breakdown."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--model", default=str(ROOT / "checkpoints" / "shapes-t2v"))
    args = p.parse_args()
    model = Path(args.model)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    times, bare = end_to_end(args.repeats, model)
    print(f"videogen generate (fresh process, default model): median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} runs")
    print(f'python -c "import torch" (fresh process, interleaved): median {statistics.median(bare):.2f} s, '
          f"min {min(bare):.2f} s, max {max(bare):.2f} s")
    print(f"ratio generate / bare torch import: {statistics.median(times) / statistics.median(bare):.2f}x "
          "(goal <= 2.5x)")
    previous = 0.0
    for name, seconds in import_layers(args.repeats):
        print(f"  import layer {name}: {seconds:.2f} s (+{seconds - previous:.2f})")
        previous = seconds
    parts = breakdown(model)
    print("in-process breakdown: " + ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in parts.items()))


if __name__ == "__main__":
    main()
