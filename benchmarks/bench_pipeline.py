"""Guidance batching and end-to-end speed: one CFG+STG step batched vs sequential, and TextToVideoPipeline vs
diffusers WanPipeline at identical tiny-but-not-trivial components, all in one process."""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _tiny import tiny_text_encoder, tiny_tokenizer  # noqa: E402  (locally built tokenizer + UMT5 encoder)
from bench_dit import timed  # noqa: E402  (same folder)

from pipelines import Conditions, TextToVideoPipeline, make_scheduler  # noqa: E402
from videogen.guidance import CFG, STG, Guidance  # noqa: E402
from videogen.models import CausalVideoVAE, VideoDiT  # noqa: E402


def median_time(fn, repeats):
    """Median wall time of ``repeats`` calls after a warm-up (see ``bench_dit.timed``)."""
    return statistics.median(timed(fn, repeats))


def build(dim, layers, heads, ffn, vae_dim, text_dim=16):
    """Reference and our pipeline sharing random weights."""
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=vae_dim, z_dim=16).eval()
    dit = WanTransformer3DModel(num_attention_heads=heads, attention_head_dim=dim // heads, in_channels=16,
                                out_channels=16, text_dim=text_dim, freq_dim=256, ffn_dim=ffn, num_layers=layers).eval()
    vae.save_pretrained(tmp / "vae")
    dit.save_pretrained(tmp / "dit")
    tok, enc = tiny_tokenizer(), tiny_text_encoder()
    ref = WanPipeline(tokenizer=tok, text_encoder=enc, vae=vae, transformer=dit, scheduler=make_scheduler("unipc"))
    ours = TextToVideoPipeline(tokenizer=tok, text_encoder=enc, vae=CausalVideoVAE.from_wan(tmp / "vae"),
                               transformer=VideoDiT.from_wan(tmp / "dit"), scheduler=make_scheduler("unipc"))
    for p in (ref, ours):
        p.set_progress_bar_config(disable=True)
    return ref, ours


def bench_step(args):
    """One CFG + STG step's predictions: one batched forward of 3 passes vs 3 sequential forwards."""
    _, pipe = build(args.dim, args.layers, args.heads, args.ffn, vae_dim=8)
    f, h, w = args.latent
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, f, h, w, generator=gen)
    conds = Conditions(torch.randn(1, 512, 16, generator=gen), torch.randn(1, 512, 16, generator=gen))
    guidance = Guidance(CFG(5.0), STG(1.0, blocks=[2], mode="attention"))
    passes = guidance.passes(0, 10)
    t = torch.tensor(500.0)
    results = {}
    with torch.inference_mode():
        for name, batched in (("batched", True), ("sequential", False)):
            results[name] = median_time(lambda: pipe.predict(latents, t, passes, conds, batched), args.repeats)
        a = guidance.combine(pipe.predict(latents, t, passes, conds, True), 0, 10)
        b = guidance.combine(pipe.predict(latents, t, passes, conds, False), 0, 10)
    tokens = f * (h // 2) * (w // 2)
    print(f"\n## one CFG+STG-A step (3 passes), DiT dim {args.dim}, {args.layers} layers, {tokens} tokens")
    print(f"batched    {results['batched']:.3f} s")
    print(f"sequential {results['sequential']:.3f} s")
    print(f"ratio batched/sequential: {results['batched'] / results['sequential']:.3f}x;  max|diff| {float((a - b).abs().max()):.2g}")


def bench_end_to_end(args):
    """Whole generation (encode text, denoise with CFG, decode) vs WanPipeline."""
    ref, ours = build(256, 4, 4, 1024, vae_dim=32)
    kw = dict(prompt="a red circle moving left", height=args.size, width=args.size, num_frames=args.frames,
              num_inference_steps=args.steps, guidance_scale=5.0, output_type="np")
    run = lambda p: p(**kw, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    diff = abs(run(ours) - run(ref)).max()
    times = {"videogen": [], "diffusers": []}
    for _ in range(args.repeats):  # interleaved so machine load drifts affect both alike
        for name, p in (("videogen", ours), ("diffusers", ref)):
            start = time.perf_counter()
            run(p)
            times[name].append(time.perf_counter() - start)
    mo, mr = statistics.median(times["videogen"]), statistics.median(times["diffusers"])
    print(f"\n## end to end: {args.frames} frames {args.size}x{args.size}, {args.steps} steps CFG, "
          "DiT dim 256 x 4 layers, VAE base 32")
    print(f"videogen  {mo:.3f} s\ndiffusers {mr:.3f} s\nratio videogen/diffusers: {mo / mr:.3f}x;  max|diff| {diff:.2g}")

    plain = ours(**{**kw, "output_type": "latent"}, generator=torch.Generator().manual_seed(0)).frames
    zero = ours(**{**kw, "output_type": "latent"}, guidance=Guidance(CFG(5.0), STG(0.0)),
                generator=torch.Generator().manual_seed(0)).frames
    stg = ours(**{**kw, "output_type": "latent"}, guidance=Guidance(CFG(5.0), STG(1.0, blocks=[1])),
               generator=torch.Generator().manual_seed(0)).frames
    print(f"STG scale 0 vs plain CFG: max|diff| = {float((zero - plain).abs().max())} (equal: {torch.equal(zero, plain)})")
    print(f"STG scale 1 (block 1) vs plain CFG: max|diff| = {float((stg - plain).abs().max()):.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=2048)
    parser.add_argument("--latent", type=int, nargs=3, default=(5, 24, 52))
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU fp32")
    bench_step(args)
    bench_end_to_end(args)


if __name__ == "__main__":
    main()
