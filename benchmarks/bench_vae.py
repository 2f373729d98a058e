"""VAE decode: peak memory and wall time, ours (streaming, full-sequence) vs diffusers AutoencoderKLWan.

Same config and weights for all three (random init, seed 0, saved once as a diffusers directory and loaded by
each case through its own loader). Every measured case runs in a fresh subprocess:

    load model, build latents, warm-up decode of 2 latent frames -> gc + malloc_trim -> reset the kernel's
    peak-RSS mark (/proc/self/clear_refs "5") -> baseline = VmRSS -> decode (timed) -> peak = VmHWM - baseline
    -> decode again (timed); time = the faster of the two

so the peak counts only what the decode itself touched (activations, cache, im2col buffers, output), not the
model load. The child runs with MALLOC_MMAP_THRESHOLD_=65536 so glibc returns freed tensors to the OS at once
and RSS tracks live memory; with glibc's default dynamic threshold, freed blocks stay in the heap and the
peak measures heap fragmentation instead (about 300 MiB for every method here).
"Working" memory is the peak minus the output tensor, the part that streaming keeps flat.

    python benchmarks/bench_vae.py                       # base_dim 32, 64x64 px, 17/33/65 frames
    python benchmarks/bench_vae.py --base-dim 96 --frames 17 33
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = ("ours-streaming", "ours-full", "diffusers")


def _status(field: str) -> int:
    """A /proc/self/status memory field in bytes."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def run_case(method: str, frames: int, weights: str, height: int, width: int, threads: int) -> dict:
    """One decode in this (fresh) process; returns peak bytes above the pre-decode baseline and seconds."""
    torch.set_num_threads(threads)
    if method == "diffusers":
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(weights).eval()
        decode = lambda z: vae.decode(z).sample  # noqa: E731
    else:
        from videogen.models.vae import CausalVideoVAE

        vae = CausalVideoVAE.from_wan(weights)
        streaming = method == "ours-streaming"
        decode = lambda z: vae.decode(z, streaming=streaming).sample  # noqa: E731
    z_dim = vae.config.z_dim
    z = torch.randn(1, z_dim, 1 + (frames - 1) // 4, height // 8, width // 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        decode(z[:, :, :2])  # warm-up: one-time allocations (thread pools, kernel caches) are not the decode's
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = _status("VmRSS")
    times = []
    with torch.no_grad():
        start = time.perf_counter()
        out = decode(z)
        times.append(time.perf_counter() - start)
        peak = _status("VmHWM") - baseline
        assert out.shape == (1, 3, frames, height, width), out.shape
        del out
        start = time.perf_counter()
        decode(z)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    output = 3 * frames * height * width * 4
    return dict(peak=peak, output=output, seconds=seconds)


def main() -> None:
    """Parse arguments; as the parent, build the weights and spawn one subprocess per (method, frames) case."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dim", type=int, default=32)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "FRAMES", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:  # child process
        method, frames, weights = args.case
        print(json.dumps(run_case(method, int(frames), weights, args.height, args.width, args.threads)))
        return

    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ref = AutoencoderKLWan(base_dim=args.base_dim)  # Wan2.1 layout: z 16, mult [1,2,4,4], 2 res blocks
        ref.save_pretrained(tmp)
        params = sum(p.numel() for p in ref.parameters())
        del ref
        results = {}
        for frames in args.frames:
            for method in METHODS:
                cmd = [sys.executable, __file__, "--height", str(args.height), "--width", str(args.width),
                       "--threads", str(args.threads), "--case", method, str(frames), tmp]  # fmt: skip
                env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}  # freed tensors leave RSS at once
                proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                line = proc.stdout.strip().splitlines()[-1]
                results[method, frames] = json.loads(line)
                print(f"  {method:15s} {frames:3d} frames: {results[method, frames]}", file=sys.stderr)

    mib = lambda b: b / 2**20  # noqa: E731
    print(f"\nVAE decode, Wan2.1 layout base_dim={args.base_dim} ({params / 1e6:.1f} M params), z 16, "
          f"{args.height}x{args.width} px, batch 1, fp32, {args.threads} threads")  # fmt: skip
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads available")  # fmt: skip
    print("peak = VmHWM above the pre-decode VmRSS (fresh subprocess per case, warm-up first, MALLOC_MMAP_THRESHOLD_=65536); "
          "working = peak - output tensor; time = best of 2\n")
    print("| frames | method | peak MiB | working MiB | peak / diffusers | time s | time / diffusers |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for frames in args.frames:
        ref = results["diffusers", frames]
        for method in METHODS:
            r = results[method, frames]
            print(f"| {frames} | {method} | {mib(r['peak']):.1f} | {mib(r['peak'] - r['output']):.1f} | "
                  f"{r['peak'] / ref['peak']:.2f} | {r['seconds']:.2f} | {r['seconds'] / ref['seconds']:.2f} |")  # fmt: skip
    first, last = args.frames[0], args.frames[-1]
    for method in METHODS:
        a, b = results[method, first], results[method, last]
        print(f"{method}: peak {last} vs {first} frames = {b['peak'] / a['peak']:.2f}x, "
              f"working = {(b['peak'] - b['output']) / (a['peak'] - a['output']):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
