"""Step caching measured: for TeaCache, MagCache and first-block cache at x1.5, x2 and x2.5, the wall-clock
speed-up against the uncached run with the same seed, the PSNR of the video against that run, the steps computed,
and (the embedded default) the shapes-world eval figures; on the embedded default and on a Wan2.1-1.3B-shaped DiT
with random weights at a CPU-feasible size. One run, side by side; prints markdown tables and writes JSON.

    python benchmarks/step_cache.py [--out step_cache.json] [--eval-prompts 8] [--wan-layers 4] [--wan-size 80,80,17]

The sampling loop's time (``pipe.denoise``) is reported beside the end-to-end time: on the embedded default the
VAE decode and text encoding are a large share of a generation, and a step cache shortens only the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("teacache", "magcache", "first-block")
SPEEDUPS = (1.5, 2.0, 2.5)
PROMPTS = ["a red circle moving to the right on a black background", "a blue square moving up"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two videos in [0, 1]; inf when equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def time_denoising(pipe) -> list:
    """Make ``pipe.denoise`` append its wall-clock seconds to the returned list (the sampling loop alone)."""
    seconds, denoise = [], pipe.denoise

    def wrapped(*args, **kwargs):
        start = time.perf_counter()
        try:
            return denoise(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    pipe.denoise = wrapped
    return seconds


def timed(pipe, call: dict, seed: int, step_cache=None):
    """(frames, seconds end to end (text, sampling, decoding), seconds of the sampling loop, steps computed or
    None) of one generation."""
    loop = pipe.__dict__.get("_loop_seconds")
    if loop is None:
        loop = pipe.__dict__["_loop_seconds"] = time_denoising(pipe)
    start = time.perf_counter()
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(seed), output_type="np", step_cache=step_cache)
    seconds = time.perf_counter() - start
    return out.frames[0], seconds, loop[-1], None if out.step_cache is None else out.step_cache["num_computed"]


def sweep(pipe, calls: list[dict], caches: dict) -> list[dict]:
    """For each setting (and uncached): summed wall-clock over the calls, the speed-up, the mean PSNR against
    the uncached videos, the mean steps computed. The uncached run of each call is repeated after the sweep and
    the faster time kept, so a busy moment of the shared machine does not inflate the speed-ups."""
    base = [timed(pipe, c, k) for k, c in enumerate(calls)]
    rows = []
    for (policy, speedup), cache in caches.items():
        runs = [timed(pipe, c, k, cache) for k, c in enumerate(calls)]
        rows.append(dict(policy=policy, speedup_target=speedup, seconds=sum(r[1] for r in runs),
                         loop_seconds=sum(r[2] for r in runs),
                         psnr=float(np.mean([psnr(r[0], b[0]) for r, b in zip(runs, base)])),
                         computed=float(np.mean([r[3] for r in runs]))))
    again = [timed(pipe, c, k) for k, c in enumerate(calls)]
    uncached = sum(min(a[1], b[1]) for a, b in zip(base, again))
    uncached_loop = sum(min(a[2], b[2]) for a, b in zip(base, again))
    for row in rows:
        row["speedup"] = uncached / row["seconds"]
        row["loop_speedup"] = uncached_loop / row["loop_seconds"]
    steps = calls[0]["num_inference_steps"]
    return [dict(policy="none", speedup_target=1.0, seconds=uncached, loop_seconds=uncached_loop, speedup=1.0,
                 loop_speedup=1.0, psnr=float("inf"), computed=float(steps))] + rows


def caches_for(calibration: dict, teacache_coefficients=None) -> dict:
    """One ``StepCache`` per (policy, target speed-up), all with ``calibration``."""
    from videogen.step_cache import StepCache

    out = {}
    for policy in POLICIES:
        for speedup in SPEEDUPS:
            extra = dict(coefficients=teacache_coefficients) if policy == "teacache" and teacache_coefficients else {}
            out[(policy, speedup)] = StepCache(policy, speedup=speedup, calibration=calibration, **extra)
    return out


def default_model_bench(eval_prompts: int, seeds: int) -> dict:
    """The embedded default at its own settings (size, steps, CFG + STG): calibrated in memory on the holdout
    prompts, then the sweep on PROMPTS and the shapes-world eval on ``eval_prompts`` prompts x ``seeds``."""
    from videogen.cache_calibration import calibrate
    from videogen.evaluation.evaluate import default_prompts, holdout_prompts, run_eval
    from videogen.guidance import cfg_stg
    from videogen.loading import default_model, generation_arguments, generation_defaults, load_pipeline

    model = default_model("text")
    settings = generation_defaults(model)
    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    call = generation_arguments(model, PROMPTS[0], settings)
    call.pop("generator")
    start = time.perf_counter()
    calibration = calibrate(pipe, holdout_prompts()[:3], {k: v for k, v in call.items() if k != "prompt"})
    calibrate_seconds = time.perf_counter() - start
    calls = [dict(call, prompt=p) for p in PROMPTS]
    caches = caches_for(calibration)
    rows = sweep(pipe, calls, caches)

    evals = {}
    if eval_prompts:
        every = default_prompts()
        chosen = [every[i] for i in np.linspace(0, len(every) - 1, eval_prompts).round().astype(int)]
        guidance = cfg_stg(settings["guidance_scale"], settings["stg_scale"], settings["stg_blocks"],
                           settings["stg_mode"])
        for key, cache in [(("none", 1.0), None)] + list(caches.items()):
            result = run_eval(pipe, chosen, range(seeds), settings["height"], settings["width"],
                              settings["num_frames"], settings["steps"], guidance, None, progress=False,
                              vae_ceiling=False, max_sequence_length=settings["max_sequence_length"],
                              step_cache=cache)
            evals[f"{key[0]} x{key[1]}"] = result["summary"]["model"]
    keys = ("height", "width", "num_frames", "steps", "guidance_scale", "stg_scale", "stg_mode")
    return dict(model=os.path.relpath(model, ROOT), settings={k: settings[k] for k in keys},
                calibrate_seconds=calibrate_seconds, rows=rows, eval=evals, eval_prompts=eval_prompts, seeds=seeds)


def wan_shaped_bench(layers: int, height: int, width: int, num_frames: int, steps: int, text_tokens: int,
                     videos: int = 1) -> dict:
    """A Wan2.1-1.3B-shaped DiT (width 1536, 12 heads, FFN 8960, patch 1x2x2, 16 latent channels, text 4096) with
    random weights and ``layers`` blocks, sampled with CFG 5 from random text states (UniPC, shift 3) and decoded
    by the default model's VAE (16 channels). TeaCache uses Wan's published 1.3B polynomial; MagCache and
    first-block a calibration on another seed."""
    from pipelines import TextToVideoPipeline, make_scheduler
    from videogen.cache_calibration import calibrate
    from videogen.guidance import CFG, Guidance
    from videogen.loading import default_model, load_pipeline
    from videogen.models.transformer import VideoDiT

    torch.manual_seed(0)
    dit = VideoDiT(dim=1536, num_heads=12, ffn_dim=8960, num_layers=layers, text_dim=4096, freq_dim=256).eval()
    base = load_pipeline(default_model("text"))
    pipe = TextToVideoPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, transformer=dit,
                               vae=base.vae, scheduler=make_scheduler("unipc", flow_shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(1)

    def states():
        s = torch.randn(1, text_tokens, 4096, generator=g) * 0.1
        s[:, text_tokens // 2:] = 0  # padded, as Wan pads its 512 tokens
        return s

    negative = states()
    calls = [dict(prompt_embeds=states(), negative_prompt_embeds=negative, height=height, width=width,
                  num_frames=num_frames, num_inference_steps=steps, guidance=Guidance(CFG(5.0))) for _ in range(videos)]
    start = time.perf_counter()
    calibration = calibrate(pipe, [None], {**calls[0], "prompt_embeds": states()}, seed=100)
    calibrate_seconds = time.perf_counter() - start
    rows = sweep(pipe, calls, caches_for(calibration, teacache_coefficients="t2v-1.3b"))
    params = sum(p.numel() for p in dit.parameters())
    return dict(layers=layers, params=params, size=[height, width, num_frames], steps=steps, text_tokens=text_tokens,
                tokens=(num_frames - 1) // 4 * (height // 16) * (width // 16) + (height // 16) * (width // 16),
                calibrate_seconds=calibrate_seconds, rows=rows)


def table(rows: list[dict]) -> str:
    """The sweep as a markdown table."""
    lines = ["| policy | target | steps computed | end to end (s) | speed-up | sampling loop (s) | loop speed-up | "
             "PSNR vs uncached (dB) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        quality = "-" if r["psnr"] == float("inf") else f"{r['psnr']:.1f}"
        lines.append(f"| {r['policy']} | x{r['speedup_target']:g} | {r['computed']:.1f} | {r['seconds']:.1f} | "
                     f"x{r['speedup']:.2f} | {r['loop_seconds']:.1f} | x{r['loop_speedup']:.2f} | {quality} |")
    return "\n".join(lines)


def eval_table(evals: dict) -> str:
    """The shapes-world eval figures per setting as a markdown table."""
    names = ("color_accuracy", "shape_accuracy", "count_accuracy", "motion_accuracy")
    lines = ["| setting | " + " | ".join(n.replace("_accuracy", " %") for n in names) + " | area drift |",
             "|---|" + "---|" * (len(names) + 1)]
    for key, s in evals.items():
        cells = ["-" if s.get(n) is None else f"{s[n]:.1f}" for n in names]
        drift = "-" if s.get("area_drift") is None else f"{s['area_drift']:.3f}"
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {drift} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the benchmark and print its tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="step_cache.json")
    p.add_argument("--eval-prompts", dest="eval_prompts", type=int, default=8, help="0: no eval")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--wan-layers", dest="wan_layers", type=int, default=4, help="0: skip the Wan-shaped model")
    p.add_argument("--wan-size", dest="wan_size", default="96,96,17", help="HEIGHT,WIDTH,FRAMES")
    p.add_argument("--wan-steps", dest="wan_steps", type=int, default=20)
    p.add_argument("--wan-text-tokens", dest="wan_text_tokens", type=int, default=128)
    p.add_argument("--wan-videos", dest="wan_videos", type=int, default=1, help="random text states (videos)")
    p.add_argument("--skip-default", dest="skip_default", action="store_true")
    args = p.parse_args(argv)
    machine = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                   cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                   load_average=os.getloadavg())
    result = dict(machine=machine)
    if not args.skip_default:
        result["default"] = default_model_bench(args.eval_prompts, args.seeds)
        print("## embedded default\n\n" + table(result["default"]["rows"]) + "\n")
        if result["default"]["eval"]:
            print(eval_table(result["default"]["eval"]) + "\n")
    if args.wan_layers:
        h, w, f = (int(v) for v in args.wan_size.split(","))
        result["wan"] = wan_shaped_bench(args.wan_layers, h, w, f, args.wan_steps, args.wan_text_tokens,
                                         args.wan_videos)
        print(f"## Wan2.1-1.3B-shaped, {args.wan_layers} layers, random weights\n\n" + table(result["wan"]["rows"]))
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}; machine: {machine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
