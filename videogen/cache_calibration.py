"""``videogen cache-calibrate``: fit TeaCache's polynomial and MagCache's ratios for a model from uncached runs.

The model samples a few prompts with every step computed; at each step and guidance pass the block stack's
residual ``r`` (output minus input) and block 0's residual ``f`` are compared with the previous step's:

    TeaCache     y = rel_L1(r_t, r_{t-1}) against x = rel_L1(e_t, e_{t-1}) (e: the time embedding), fitted by
                 ``numpy.polyfit`` (degree 4, as the published Wan polynomials)
    MagCache     mag_ratio_t = mean over tokens of |r_t| / |r_{t-1}| (1 at step 0)
    first-block  rel_L1(f_t, f_{t-1}), for turning a speed-up into a first-block threshold

each averaged over passes and prompts. They are written under ``step_cache_calibration`` in the model's
generation_config.json (its SHA256SUMS line updated), where the pipeline reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from videogen.caching import relative_l1
from videogen.step_cache import CALIBRATION_KEY, input_changes


def magnitude_ratio(current: torch.Tensor, previous: torch.Tensor) -> float:
    """MagCache's ratio: the mean over tokens of ``|current| / |previous|`` (norms over the channels)."""
    return float((current.float().norm(dim=-1) / previous.float().norm(dim=-1).clamp_min(1e-12)).mean())


class CalibrationRecorder:
    """A ``step_cache`` for the pipeline that computes every step and records, per step, the residual changes of
    each pass (pass it as ``pipe(..., step_cache=recorder)``, once per prompt)."""

    split_first_block = True

    def __init__(self):
        self.records: dict[int, list[tuple[float, float, float]]] = {}
        self.timesteps = None
        self.transformer = None

    def start(self, transformer, timesteps, calibration=None) -> "CalibrationRecorder":
        """Begin a run (the pipeline calls it); the previous residuals are forgotten, the records kept."""
        self.transformer, self.timesteps = transformer, timesteps.clone()
        self.previous, self.computed, self.step, self.first_residual = {}, [], 0, None
        return self

    def begin(self, step: int) -> None:
        """Start step ``step``."""
        self.step = step

    def planned(self, passes) -> bool:
        """Every step is computed."""
        return True

    def decide(self, passes, first_residual) -> bool:
        """Every step is computed."""
        return True

    def store(self, passes, residual, first_residual) -> None:
        """Nothing is reused, so nothing is kept."""

    def observe(self, step, passes, x_in, x_first, x_out) -> None:
        """Record the changes of each pass's stack and block-0 residuals since the previous step."""
        n = len(passes)
        for p, r, f in zip(passes, (x_out - x_in).chunk(n), (x_first - x_in).chunk(n)):
            if p in self.previous:
                r0, f0 = self.previous[p]
                self.records.setdefault(step, []).append((relative_l1(r, r0), magnitude_ratio(r, r0),
                                                          relative_l1(f, f0)))
            self.previous[p] = (r, f)

    def report(self) -> dict:
        """The run's report (every step computed)."""
        return dict(policy="calibration", computed_steps=list(self.computed), num_computed=len(self.computed),
                    num_steps=len(self.timesteps))

    def result(self, degree: int = 4) -> dict:
        """The calibration: TeaCache's fitted polynomial, MagCache's ratios, the first-block changes."""
        n = len(self.timesteps)
        if n < 3 or not self.records:
            raise ValueError("calibration needs at least 3 steps of at least one run")
        mean = {i: np.mean(np.asarray(v), axis=0) for i, v in self.records.items()}
        steps = sorted(mean)
        x = np.asarray(input_changes(self.transformer, self.timesteps, "e"))[steps]
        y = np.asarray([mean[i][0] for i in steps])
        coefficients = np.polyfit(x, y, min(degree, len(steps) - 1))
        ratios = [1.0] + [float(mean[i][1]) if i in mean else 1.0 for i in range(1, n)]
        first = [0.0] + [float(mean[i][2]) if i in mean else 0.0 for i in range(1, n)]
        return dict(steps=n, teacache=dict(input="e", coefficients=[float(c) for c in coefficients]),
                    magcache=dict(mag_ratios=ratios), first_block=dict(changes=first),
                    residual_changes=[0.0] + [float(mean[i][0]) if i in mean else 0.0 for i in range(1, n)],
                    input_changes=[0.0] + [float(v) for v in x])


def calibrate(pipe, prompts: Sequence[str], call_kwargs: dict, seed: int = 0) -> dict:
    """Run ``pipe`` uncached on each prompt (``call_kwargs``: size, steps, guidance, ...; the latents only, no
    decoding) and return the calibration (``CalibrationRecorder.result``) with the prompts it used."""
    recorder = CalibrationRecorder()
    for k, prompt in enumerate(prompts):
        generator = torch.Generator(device="cpu").manual_seed(seed + k)
        pipe(prompt=prompt, **call_kwargs, generator=generator, output_type="latent", step_cache=recorder)
    return dict(recorder.result(), prompts=list(prompts), seed=seed)


def update_checksum(model_dir: Path, name: str) -> None:
    """Rewrite ``name``'s line of the directory's SHA256SUMS (if it has one and lists it) for its new bytes."""
    from videogen.integrity import CHECKSUMS, sha256

    sums = model_dir / CHECKSUMS
    if not sums.is_file():
        return
    lines = sums.read_text().splitlines()
    fixed = [f"{sha256(model_dir / name)}  {name}" if line.partition("  ")[2] == name else line for line in lines]
    sums.write_text("".join(line + "\n" for line in fixed))


def write_calibration(model_dir, calibration: dict) -> Path:
    """Store ``calibration`` under ``step_cache_calibration`` in the directory's generation_config.json (other
    settings kept; the file created if missing) and keep its checksum valid; return the file's path."""
    model_dir = Path(model_dir)
    path = model_dir / "generation_config.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings[CALIBRATION_KEY] = calibration
    path.write_text(json.dumps(settings, indent=2) + "\n")
    update_checksum(model_dir, path.name)
    return path


def cmd_cache_calibrate(args) -> int:
    """Run ``videogen cache-calibrate`` from parsed arguments."""
    from videogen.evaluation.evaluate import load_prompts
    from videogen.loading import (generation_arguments, generation_defaults, load_pipeline, resolve_model,
                                  use_scheduler)

    model = resolve_model(args.model)
    settings = generation_defaults(model, vars(args))
    prompts = load_prompts(args.prompts)[: args.limit]
    if not prompts:
        raise ValueError("need at least one prompt")
    kwargs = generation_arguments(model, prompts[0], settings, seed=args.seed)
    for key in ("prompt", "generator"):
        kwargs.pop(key)
    pipe = load_pipeline(model, args.device)
    use_scheduler(pipe, settings["scheduler"])
    pipe.set_progress_bar_config(disable=not args.progress)
    result = calibrate(pipe, prompts, kwargs, args.seed)
    if args.dry_run:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{write_calibration(model, result)}: step_cache_calibration from {len(prompts)} prompt(s), "
          f"{result['steps']} steps")
    return 0


def add_cli(subparsers):
    """Register ``videogen cache-calibrate`` on an argparse subparsers object; return its parser."""
    p = subparsers.add_parser("cache-calibrate", help="fit TeaCache's polynomial and MagCache's ratios for a model "
                              "(uncached runs) and store them in its generation_config.json")
    p.add_argument("--model", default=None, help="pipeline directory (default: the embedded text-to-video model)")
    p.add_argument("--prompts", default="default", help="'default' (the shapes-world prompts), 'holdout', or a .txt "
                   "file with one prompt per line")
    p.add_argument("--limit", type=int, default=4, help="use the first N prompts (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first prompt (then +1 per prompt)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's; ratios are resampled to "
                   "other step counts)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--num-frames", dest="num_frames", type=int)
    p.add_argument("--max-sequence-length", dest="max_sequence_length", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the calibration, write nothing")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=cmd_cache_calibrate)
    return p
