"""``videogen eval``: generate shapes-world prompts with any pipeline, measure them, and compare with rendered ground truth.

For every prompt and seed the pipeline generates a clip, and ``ground_truth_clips`` renders a clip of
the same prompt with ``render_clip`` (the *ceiling*: what a perfect model would score under the same
metrics). Both go through ``metrics.score_clip``; the summaries read as "model / ceiling". Outputs:
a table on stdout (metric | model | ceiling | model/ceiling), ``eval.json`` (config, per-sample
records, per-prompt diversity, summaries, ratios), ``contact_sheet.png`` (one row per sample: a few
frames of the model's clip, then of the ground truth) and ``contact_sheet.gif`` (the same rows animated).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from videogen.data.synthetic import (
    COLORS, CURVE, DEFAULT_HOLDOUT, MARGIN, MOTIONS, SHAPES, BackgroundSpec, ClipSpec, ObjectSpec, boxes_apart,
    camera_setup, image_geometry, object_radius, object_track, parse_holdout, render_clip, sample_object, shape_extent,
)
from videogen.evaluation.metrics import (
    ACCURACIES, MEANS, diversity, parse_prompt, psnr, score_clip, summarize,
)

DEFAULT_BACKGROUND = "gray"
_LONG_MOTION = {"left": "moving to the left", "right": "moving to the right", "up": "moving up", "down": "moving down",
                "still": "staying still", CURVE: "moving along a curved path"}
SHEET_ROWS = 24  # samples shown on the contact sheet
SHEET_FRAMES = 4  # frames per clip on the PNG


def prompt_for(color: str, shape: str, motion: str, background: str = DEFAULT_BACKGROUND) -> str:
    """The evaluation caption: ``caption_for``'s first ("long") template at medium size and normal speed,
    e.g. ``"a red circle moving to the left on a gray background"``."""
    return f"a {color} {shape} {_LONG_MOTION[motion]} on a {background} background"


def default_prompts() -> list[str]:
    """Every colour x shape x motion (6 x 3 x 5 = 90 single-object prompts) on the gray background."""
    return [prompt_for(c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS]


def holdout_prompts(holdout=None) -> list[str]:
    """One prompt per hold-out pattern (``DEFAULT_HOLDOUT`` when None); ``*`` expands to every value."""
    prompts = []
    for color, shape, motion in parse_holdout(DEFAULT_HOLDOUT if holdout is None else holdout):
        for c in COLORS if color == "*" else (color,):
            for s in SHAPES if shape == "*" else (shape,):
                for m in MOTIONS + (CURVE,) if motion == "*" else (motion,):
                    prompts.append(prompt_for(c, s, m))
    return prompts


def load_prompts(which: str) -> list[str]:
    """``"default"``, ``"holdout"``, or a text file with one prompt per line (blank lines and ``#`` comments skipped)."""
    if which == "default":
        return default_prompts()
    if which == "holdout":
        return holdout_prompts()
    path = Path(which)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts must be 'default', 'holdout' or a text file; {which!r} is none of them")
    lines = [line.strip() for line in path.read_text().splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise ValueError(f"no prompts in {path}")
    return prompts


# ----------------------------------------------------------------------------------------------
# Ground truth (the ceiling)
# ----------------------------------------------------------------------------------------------


def _place(obj: ObjectSpec, spec: ClipSpec, warps, rng: np.random.Generator) -> ObjectSpec | None:
    """``obj`` with a random start keeping it inside the frame over the whole clip (None if it cannot fit)."""
    H, W, F = spec.height, spec.width, spec.num_frames
    if obj.motion == CURVE:  # synthetic's own sampler draws the Bézier path
        for _ in range(100):
            drawn = sample_object(rng, spec, warps, fixed=(obj.color, obj.shape, CURVE))
            if drawn is not None:
                return drawn
        return None
    ex = shape_extent(obj.shape, object_radius(obj, H, W))
    lo = np.array([MARGIN - ex[0], MARGIN - ex[1]])
    hi = np.array([W - MARGIN - ex[2], H - MARGIN - ex[3]])
    shift = object_track(replace(obj, start=(0.0, 0.0)), F, H, W)[-1]
    low, high = lo - np.minimum(shift, 0), hi - np.maximum(shift, 0)
    if (low > high).any():
        return None
    start = tuple(float(v) for v in rng.uniform(low, high))
    return replace(obj, start=start)


def spec_for_prompt(prompt: str, seed: int, frames: int = 17, height: int = 64, width: int = 64,
                    attempts: int = 200) -> ClipSpec:
    """A static-camera ``ClipSpec`` matching ``prompt`` (every object phrase; size/speed as named, else medium/normal;
    background as named, else gray), with positions drawn from ``seed``. Unnamed colours/shapes/motions are drawn too."""
    parsed = parse_prompt(prompt)
    rng = np.random.default_rng([seed, sum(map(ord, prompt))])
    bg = parsed["background"] or dict(kind="solid", name=DEFAULT_BACKGROUND)
    background = BackgroundSpec(bg["kind"], bg["name"], seed if bg["kind"] == "texture" else 0)
    spec = ClipSpec((), background, "static", frames, height, width)
    warps = camera_setup(spec)[3]
    wanted = parsed["objects"] or [dict(color=None, shape=None, motion=None, size="medium", speed=None)]
    boxes_so_far = []
    for index, words in enumerate(wanted):
        used = {o.color for o in spec.objects}
        for _ in range(attempts):
            color = words["color"] or str(rng.choice([c for c in COLORS if c not in used]))
            motion = words["motion"] or str(rng.choice(MOTIONS))
            speed = (words["speed"] or "normal") if motion in ("left", "right", "up", "down") else None
            obj = ObjectSpec(words["shape"] or str(rng.choice(SHAPES)), color, words["size"], motion, speed)
            obj = _place(obj, spec, warps, rng)
            if obj is None:
                continue
            boxes = image_geometry(obj, object_track(obj, frames, height, width), warps, height, width)[1]
            if all(boxes_apart(boxes, other) for other in boxes_so_far):
                spec = ClipSpec(spec.objects + (obj,), background, "static", frames, height, width)
                boxes_so_far.append(boxes)
                break
        else:
            raise ValueError(f"cannot place object {index + 1} of {prompt!r} in a {height}x{width} clip")
    return spec


def ground_truth_clips(prompts, seeds, frames: int = 17, height: int = 64, width: int = 64) -> list[np.ndarray]:
    """Rendered clips ``uint8 [F, H, W, 3]`` matching each prompt, for every seed (prompt-major order)."""
    return [render_clip(spec_for_prompt(p, s, frames, height, width))[0] for p in prompts for s in seeds]


# ----------------------------------------------------------------------------------------------
# Generation and scoring
# ----------------------------------------------------------------------------------------------


def to_uint8(video) -> np.ndarray:
    """Float frames in [0, 1] (or uint8) to uint8 ``[F, H, W, 3]``."""
    video = np.asarray(video)
    if video.dtype == np.uint8:
        return video
    return np.round(np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)


def encode_clips(vae, clips: np.ndarray):
    """uint8 clips ``[N, F, H, W, 3]`` mapped to [-1, 1] and encoded by ``vae``: the posterior mode
    ``[N, z, F', H', W']`` (not normalised), on the VAE's device and dtype. Call under ``torch.no_grad``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    param = next(vae.parameters())
    return vae.encode(x.to(param.device, param.dtype)).latent_dist.mode()


def vae_round_trip(vae, frames: np.ndarray) -> np.ndarray:
    """``frames`` (uint8 ``[H, W, 3]`` image or ``[F, H, W, 3]`` clip) encoded by ``vae`` (posterior mode) and
    decoded back, in the same shape: what the VAE alone keeps of a frame or clip."""
    import torch

    clip = frames[None] if frames.ndim == 3 else frames
    with torch.no_grad():
        y = vae.decode(encode_clips(vae, clip[None])).sample[0].float().clamp(-1, 1)
    out = to_uint8(((y + 1) / 2).permute(1, 2, 3, 0).cpu().numpy())
    return out[0] if frames.ndim == 3 else out


def write_result(out_dir, name: str, result: dict) -> Path:
    """Write an evaluation's ``result`` as ``out_dir/name`` (JSON; the folder made if needed), say so, return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / name}")
    return out / name


def vae_psnr_by_frame(vae, clips) -> np.ndarray:
    """PSNR (dB) of every frame of each uint8 clip ``[F, H, W, 3]`` after a round trip through ``vae``: ``[N, F]``."""
    return np.array([[psnr(r, c) for r, c in zip(vae_round_trip(vae, clip), clip)] for clip in clips])


def run_vae_eval(vae, prompts, seeds, num_frames: int = 17, height: int = 64, width: int = 64, out_dir=None,
                 progress: bool = True) -> dict:
    """The VAE alone on the eval's ground truth (the clips ``ground_truth_clips`` renders for ``prompts`` x
    ``seeds``): per-frame PSNR of the round trip, averaged over clips per frame index, its mean, and the last
    frame's drop from the first. Prints a line, writes ``vae.json`` to ``out_dir`` (when given), returns the dict."""
    from tqdm.auto import tqdm

    prompts, seeds = list(prompts), [int(s) for s in seeds]
    clips = ground_truth_clips(prompts, seeds, num_frames, height, width)
    scores = np.array([vae_psnr_by_frame(vae, [clip])[0] for clip in tqdm(clips, desc="vae round trip",
                                                                           disable=not progress)])
    by_frame = scores.mean(axis=0)
    result = dict(config=dict(prompts=prompts, seeds=seeds, num_frames=num_frames, height=height, width=width),
                  summary=dict(mean_psnr=float(scores.mean()), first_frame_psnr=float(by_frame[0]),
                               last_frame_psnr=float(by_frame[-1]), min_clip_psnr=float(scores.mean(axis=1).min()),
                               clips=len(clips)),
                  psnr_by_frame=[round(float(v), 3) for v in by_frame])
    s = result["summary"]
    print(f"VAE round trip over {len(clips)} clips: mean {s['mean_psnr']:.2f} dB per frame, frame 0 "
          f"{s['first_frame_psnr']:.2f} dB, last frame {s['last_frame_psnr']:.2f} dB, worst clip {s['min_clip_psnr']:.2f} dB")
    if out_dir is not None:
        write_result(out_dir, "vae.json", result)
    return result


def evaluate_pipeline(pipe, prompts, seeds, height: int = 64, width: int = 64, num_frames: int = 17,
                      num_inference_steps: int = 20, guidance=None, progress: bool = True, images=None,
                      max_sequence_length: int = 512, step_cache=None):
    """Generate every prompt with every seed (``torch.Generator`` seeded with the seed) and score the clips.

    ``step_cache``: a ``videogen.step_cache.StepCache`` for every generation; each record then has
    ``steps_computed``.

    ``images`` (image-to-video): one uint8 ``[H, W, 3]`` first frame per (prompt, seed), prompt-major; each
    record then also has ``first_frame_psnr`` (generated frame 0 vs the image) and ``vae_psnr`` (the image
    through the pipeline's VAE and back: the ceiling the first frame can reach).
    Returns ``(records, frames)``: one record per clip (``prompt``, ``seed`` and ``score_clip``'s dict) and
    the uint8 clips in the same (prompt-major) order.
    """
    import torch
    from tqdm.auto import tqdm

    jobs = [(p, s) for p in prompts for s in seeds]
    records, clips = [], []
    if hasattr(pipe, "set_progress_bar_config"):  # one bar for the whole run, not one per generation
        pipe.set_progress_bar_config(disable=True)
    if images is not None and len(images) != len(jobs):
        raise ValueError(f"got {len(images)} images for {len(jobs)} (prompt, seed) pairs")
    for k, (prompt, seed) in enumerate(tqdm(jobs, desc="videogen eval", disable=not progress)):
        kwargs = dict(guidance=guidance) if guidance is not None else {}
        if step_cache is not None:
            kwargs["step_cache"] = step_cache
        if images is not None:
            kwargs["image"] = images[k]
        out = pipe(prompt=prompt, height=height, width=width, num_frames=num_frames,
                   num_inference_steps=num_inference_steps, generator=torch.Generator("cpu").manual_seed(int(seed)),
                   max_sequence_length=max_sequence_length, output_type="np", **kwargs)
        clip = to_uint8(out.frames[0])
        record = dict(prompt=prompt, seed=int(seed), **score_clip(clip, prompt))
        if getattr(out, "step_cache", None) is not None:
            record["steps_computed"] = out.step_cache["num_computed"]
        if images is not None:
            record["first_frame_psnr"] = psnr(clip[0], images[k])
            record["vae_psnr"] = psnr(vae_round_trip(pipe.vae, images[k]), images[k])
        records.append(record)
        clips.append(clip)
    return records, clips


def score_clips(prompts, seeds, clips) -> list[dict]:
    """Records (``prompt``, ``seed``, ``score_clip``) of clips given in prompt-major order."""
    jobs = [(p, s) for p in prompts for s in seeds]
    return [dict(prompt=p, seed=int(s), **score_clip(c, p)) for (p, s), c in zip(jobs, clips)]


def diversity_by_prompt(records, clips) -> dict:
    """``{prompt: diversity of its clips across seeds}``."""
    groups: dict[str, list] = {}
    for r, c in zip(records, clips):
        groups.setdefault(r["prompt"], []).append(c)
    return {p: diversity(cs) for p, cs in groups.items()}


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

TABLE_ROWS = [(f"{a}_accuracy", f"{a} accuracy (%)", True) for a in ACCURACIES] + \
    [(m, m.replace("_", " ") + " (lower=better)", False) for m in MEANS] + [("diversity", "diversity (0-1)", True)]
I2V_ROWS = [("first_frame_psnr", "first-frame PSNR vs image (dB)", False), ("vae_psnr", "VAE round-trip PSNR (dB)", False)]


def ratios(model: dict, ceiling: dict) -> dict:
    """``model / ceiling`` for the higher-is-better figures (accuracies, diversity); None where undefined."""
    out = {}
    for key, _, higher in TABLE_ROWS:
        if higher:
            m, c = model.get(key), ceiling.get(key)
            out[key] = None if m is None or not c else m / c
    return out


def format_table(model: dict, ceiling: dict, vae: dict | None = None) -> str:
    """The stdout table: metric | model | ceiling | model/ceiling, plus the ground truth through the VAE when
    ``vae`` is given (what the pipeline's decoder can show at best)."""
    fmt = lambda v, nd=3: "-" if v is None else f"{v:.{nd}f}"  # noqa: E731
    r = ratios(model, ceiling)
    head = f"{'metric':<32} {'model':>9} {'ceiling':>9} {'model/ceiling':>14}"
    lines = [head + (f" {'VAE round trip':>15}" if vae else ""), "-" * (67 + (16 if vae else 0))]
    rows = TABLE_ROWS + [row for row in I2V_ROWS if model.get(row[0]) is not None]
    for key, label, _ in rows:
        nd = 1 if key.endswith("accuracy") or key.endswith("psnr") else 3
        line = f"{label:<32} {fmt(model.get(key), nd):>9} {fmt(ceiling.get(key), nd):>9} {fmt(r.get(key), 2):>14}"
        lines.append(line + (f" {fmt(vae.get(key), nd):>15}" if vae else ""))
    return "\n".join(lines)


def _label(width: int, text: str, height: int = 12) -> np.ndarray:
    """A white strip ``[height, width, 3]`` with ``text`` in black."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((2, 0), text, fill="black")
    return np.asarray(image)


def sheet_rows(prompts_seeds, model_clips, truth_clips, frame_indices) -> list[np.ndarray]:
    """One image per sample: a label strip over ``model frames | gap | ground-truth frames`` at ``frame_indices``."""
    rows = []
    for (prompt, seed), m, t in zip(prompts_seeds, model_clips, truth_clips):
        scale = max(1, 64 // m.shape[1])
        up = lambda f: np.repeat(np.repeat(f, scale, 0), scale, 1)  # noqa: E731
        gap = np.full((m.shape[1] * scale, 4, 3), 255, np.uint8)
        strip = np.concatenate([up(m[i]) for i in frame_indices] + [gap] + [up(t[i]) for i in frame_indices], axis=1)
        rows.append(np.concatenate([_label(strip.shape[1], f"{prompt} (seed {seed})"), strip], axis=0))
    return rows


def write_contact_sheets(out_dir: Path, records, model_clips, truth_clips, fps: float = 8) -> tuple[str, str]:
    """Write ``contact_sheet.png`` (``SHEET_FRAMES`` frames per clip) and ``contact_sheet.gif`` (every frame)
    for the first ``SHEET_ROWS`` samples: model on the left, ground truth on the right."""
    from PIL import Image

    from videogen.io import save_video

    n = min(SHEET_ROWS, len(records))
    keys = [(r["prompt"], r["seed"]) for r in records[:n]]
    F = model_clips[0].shape[0]
    picks = sorted(set(np.linspace(0, F - 1, SHEET_FRAMES).round().astype(int).tolist()))
    png = out_dir / "contact_sheet.png"
    Image.fromarray(np.concatenate(sheet_rows(keys, model_clips[:n], truth_clips[:n], picks), axis=0)).save(png)
    frames = [np.concatenate(sheet_rows(keys, model_clips[:n], truth_clips[:n], [k]), axis=0) for k in range(F)]
    gif = save_video(np.stack(frames), out_dir / "contact_sheet.gif", fps=fps)
    return str(png), gif


def run_eval(pipe, prompts, seeds, height: int = 64, width: int = 64, num_frames: int = 17,
             num_inference_steps: int = 20, guidance=None, out_dir=None, config: dict | None = None,
             progress: bool = True, task: str = "t2v", vae_ceiling: bool = True,
             max_sequence_length: int = 512, step_cache=None) -> dict:
    """Evaluate ``pipe`` and the rendered ceiling on ``prompts`` x ``seeds``; write ``eval.json`` and the contact
    sheets to ``out_dir`` (when given), print the table, and return the ``eval.json`` dict.

    ``vae_ceiling``: also score the ground-truth clips after a round trip through ``pipe.vae`` (summary ``vae``):
    a generated clip is decoded by that VAE, so this is the most the pipeline can show.

    ``task="i2v"``: the pipeline (an ``ImageToVideoPipeline``) animates each ground-truth clip's first frame;
    the records add first-frame PSNR and the VAE round-trip PSNR (see ``evaluate_pipeline``). ``step_cache``: a
    ``videogen.step_cache.StepCache`` for every generation (the steps computed are in the records)."""
    if task not in ("t2v", "i2v"):
        raise ValueError(f"task must be 't2v' or 'i2v'; got {task!r}")
    prompts, seeds = list(prompts), [int(s) for s in seeds]
    truth_clips = ground_truth_clips(prompts, seeds, num_frames, height, width)
    images = [clip[0] for clip in truth_clips] if task == "i2v" else None
    model_records, model_clips = evaluate_pipeline(pipe, prompts, seeds, height, width, num_frames,
                                                   num_inference_steps, guidance, progress, images,
                                                   max_sequence_length, step_cache)
    truth_records = score_clips(prompts, seeds, truth_clips)
    div_model, div_truth = diversity_by_prompt(model_records, model_clips), diversity_by_prompt(truth_records, truth_clips)
    model, ceiling = summarize(model_records, div_model), summarize(truth_records, div_truth)
    vae = None
    if vae_ceiling:
        vae_clips = [vae_round_trip(pipe.vae, clip) for clip in truth_clips]
        vae_records = score_clips(prompts, seeds, vae_clips)
        vae = summarize(vae_records, diversity_by_prompt(vae_records, vae_clips))
    result = dict(
        config=dict(config or {}, task=task, prompts=prompts, seeds=seeds, height=height, width=width,
                    num_frames=num_frames, max_sequence_length=max_sequence_length,
                    num_inference_steps=num_inference_steps, guidance=repr(guidance),
                    step_cache=None if step_cache is None else repr(step_cache)),
        summary=dict(model=model, ceiling=ceiling, **({"vae": vae} if vae else {})), ratios=ratios(model, ceiling),
        diversity=dict(model=div_model, ceiling=div_truth), records=dict(model=model_records, ceiling=truth_records),
    )
    print(format_table(model, ceiling, vae))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png, gif = write_contact_sheets(out, model_records, model_clips, truth_clips)
        result["files"] = dict(json=str(out / "eval.json"), png=png, gif=gif)
        (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out / 'eval.json'}, {png}, {gif}")
    return result


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
