"""DiT forward wall time: videogen VideoDiT vs diffusers WanTransformer3DModel, same config and weights, one process."""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from diffusers import WanTransformer3DModel

from videogen.models.transformer import VideoDiT


def timed(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=2048)
    parser.add_argument("--latent", type=int, nargs=3, default=(5, 24, 52), metavar=("F", "H", "W"))
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    cfg = dict(patch_size=(1, 2, 2), num_attention_heads=args.heads, attention_head_dim=args.dim // args.heads,
               in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=args.ffn, num_layers=args.layers)
    torch.manual_seed(0)
    ref = WanTransformer3DModel(**cfg).eval()
    ref.save_pretrained("/tmp/videogen-bench-dit")
    ours = VideoDiT.from_wan("/tmp/videogen-bench-dit")
    ref.to(args.device, dtype)
    ours.to(args.device, dtype)

    f, h, w = args.latent
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, f, h, w, generator=gen).to(args.device, dtype)
    t = torch.tensor([500.0], device=args.device)
    ctx = torch.randn(1, args.text_tokens, 4096, generator=gen).to(args.device, dtype)
    tokens = f * (h // 2) * (w // 2)

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def run(model):
        def call():
            with torch.inference_mode():
                model(x, t, ctx)
            sync()
        return call

    with torch.inference_mode():
        err = (ours(x, t, ctx).sample.float() - ref(x, t, ctx).sample.float()).abs().max().item()
    # Interleave the two models so drift in machine load affects both alike.
    ours_t, ref_t = [], []
    for _ in range(args.repeats):
        ours_t += timed(run(ours), 1)
        ref_t += timed(run(ref), 1)
    mo, mr = statistics.median(ours_t), statistics.median(ref_t)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}, {args.dtype}")
    print(f"config: dim {args.dim}, {args.layers} layers, {args.heads} heads, ffn {args.ffn}, "
          f"latent {f}x{h}x{w} = {tokens} tokens, text {args.text_tokens} tokens")
    print(f"max|ours - diffusers| = {err:.3g}")
    print(f"{'':12s} {'median s':>10s} {'min s':>10s}")
    print(f"{'videogen':12s} {mo:10.4f} {min(ours_t):10.4f}")
    print(f"{'diffusers':12s} {mr:10.4f} {min(ref_t):10.4f}")
    print(f"ratio videogen/diffusers (median): {mo / mr:.3f}x")


if __name__ == "__main__":
    main()
