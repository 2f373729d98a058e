"""Personalization on the shapes world: clips of a concept no training clip shows (a new colour), prompts that put it
in motions and backgrounds those clips never had, and how often generated videos show it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videogen.data.synthetic import (
    CONCEPT_COLORS,
    OBJECT_COLORS,
    BackgroundSpec,
    ClipSpec,
    ObjectSpec,
    render_clip,
)
from videogen.evaluation.metrics import chroma_palette, measure_clip

CLIP_MOTIONS = ("left", "right")  # what the concept clips show
CLIP_BACKGROUND = "black"  # ... and on what
# Held out for the concept: motions the clips never had, on their background and on backgrounds they never had.
EVAL_SCENES = (("up", "white"), ("down", "gray"), ("still", "white"), ("up", "gray"), ("down", "white"),
               ("still", "gray"), ("up", "black"), ("down", "black"), ("still", "black"))


def write_concept_clips(out_dir, color: str = "purple", shape: str = "square", num: int = 6, seed: int = 0,
                        frames: int = 17, height: int = 64, width: int = 64, concept: str | None = None) -> list[Path]:
    """``num`` mp4 clips of one ``color`` ``shape`` (a ``CONCEPT_COLORS`` colour) moving left or right on black,
    at varied starts and sizes. With ``concept``, each gets a same-name .txt caption in the training captions'
    form ("a <concept> moving to the left on a black background"); without, none (``videogen personalize`` then
    writes "a video of <concept>")."""
    from videogen.io import save_video

    if color not in CONCEPT_COLORS:
        raise ValueError(f"concept colours are {', '.join(CONCEPT_COLORS)} (the training clips use the others)")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(num):
        motion = CLIP_MOTIONS[i % len(CLIP_MOTIONS)]
        x = float(rng.uniform(0.55, 0.75) if motion == "left" else rng.uniform(0.25, 0.45)) * width
        y = float(rng.uniform(0.3, 0.7)) * height
        obj = ObjectSpec(shape, color, str(rng.choice(["medium", "large"])), motion, "normal", (x, y))
        spec = ClipSpec((obj,), BackgroundSpec("solid", CLIP_BACKGROUND), "static", frames, height, width)
        paths.append(Path(save_video(render_clip(spec)[0], out / f"{color}-{i:02d}.mp4", fps=8)))
        if concept:
            paths[-1].with_suffix(".txt").write_text(f"a {concept} moving to the {motion} on a {CLIP_BACKGROUND} "
                                                     "background\n")
    return paths


def concept_prompts(concept: str) -> list[str]:
    """Prompts that put ``concept`` in the held-out scenes (``EVAL_SCENES``)."""
    words = {"still": "staying still", "up": "moving up", "down": "moving down"}
    return [f"a {concept} {words[m]} on a {bg} background" for m, bg in EVAL_SCENES]


def concept_scores(clips, color: str, shape: str | None = None, motions=None) -> dict:
    """Share (%) of ``clips`` whose main object is ``color`` (named against every colour, the concept ones too),
    and ``shape`` if given. With ``motions`` (the prompted motion of each clip): ``motion_accuracy``, the share
    that move as prompted, and ``clip_motion``, the share that move as the concept clips did (``CLIP_MOTIONS``)
    although the prompt said otherwise: the clips' motion copied into the concept."""
    palette = chroma_palette(OBJECT_COLORS)
    measures = [measure_clip(c, palette) for c in clips]
    colors = [m["dominant_color"] for m in measures]
    out = dict(color_accuracy=100.0 * np.mean([c == color for c in colors]), colors=colors, n=len(clips))
    if shape is not None:
        out["shape_accuracy"] = 100.0 * np.mean([m["shape"] == shape for m in measures])
    if motions is not None:
        if len(motions) != len(clips):
            raise ValueError(f"{len(motions)} motions for {len(clips)} clips")
        directions = [m["direction"] for m in measures]
        out["directions"] = directions
        out["motion_accuracy"] = 100.0 * np.mean([d == m for d, m in zip(directions, motions)])
        other = [d in CLIP_MOTIONS for d, m in zip(directions, motions) if m not in CLIP_MOTIONS]
        out["clip_motion"] = 100.0 * float(np.mean(other)) if other else None
    return out


def run_concept_eval(pipe, concept: str, color: str, shape: str | None, seeds, num_inference_steps: int = 20,
                     guidance=None, height: int = 64, width: int = 64, num_frames: int = 17,
                     max_sequence_length: int = 40, out_dir=None, progress: bool = True) -> dict:
    """Generate ``concept_prompts(concept)`` x ``seeds`` with ``pipe`` (LoRAs loaded or not), score them with
    ``concept_scores``, print a line, write ``concept.json`` to ``out_dir``; return the dict."""
    from videogen.evaluation.evaluate import evaluate_pipeline, write_result

    prompts, seeds = concept_prompts(concept), list(seeds)
    _, clips = evaluate_pipeline(pipe, prompts, seeds, height, width, num_frames, num_inference_steps,
                                 guidance, progress, None, max_sequence_length)
    scenes = [scene for scene in EVAL_SCENES for _ in seeds]  # evaluate_pipeline's order: prompt-major, then seed
    scores = concept_scores(clips, color, shape, [m for m, _ in scenes])
    for name, keep in (("clip_background", lambda bg: bg == CLIP_BACKGROUND),
                       ("new_background", lambda bg: bg != CLIP_BACKGROUND)):
        part = [c for c, (_, bg) in zip(scores["colors"], scenes) if keep(bg)]
        scores[f"color_accuracy_{name}"] = 100.0 * float(np.mean([c == color for c in part]))
    result = dict(concept=concept, color=color, shape=shape, prompts=prompts, seeds=[int(s) for s in seeds],
                  **scores)
    line = f"concept {concept!r} ({color} {shape or ''}): colour {scores['color_accuracy']:.1f} % of {scores['n']} videos"
    if shape:
        line += f", shape {scores['shape_accuracy']:.1f} %"
    line += (f" (new motions on the clips' {CLIP_BACKGROUND}: {scores['color_accuracy_clip_background']:.1f} %, on new "
             f"backgrounds: {scores['color_accuracy_new_background']:.1f} %), motion as prompted "
             f"{scores['motion_accuracy']:.1f} %")
    if scores["clip_motion"] is not None:
        line += f", the clips' left/right where not prompted {scores['clip_motion']:.1f} %"
    print(line)
    if out_dir is not None:
        write_result(out_dir, "concept.json", result)
    return result


def add_cli(subparsers):
    """Register ``videogen concept-clips``: the clips of a new concept, to personalize on."""
    p = subparsers.add_parser("concept-clips", help="render clips of a concept no training clip has (a new colour)")
    p.add_argument("--out", required=True)
    p.add_argument("--color", choices=list(CONCEPT_COLORS), default="purple")
    p.add_argument("--shape", default="square")
    p.add_argument("--num", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concept", default=None, help="also write captions naming this word ('a WORD moving to the "
                   "left on a black background'); without it the clips have none")
    p.set_defaults(func=run_concept_clips)
    return p


def run_concept_clips(args) -> int:
    """Run ``videogen concept-clips``."""
    paths = write_concept_clips(args.out, args.color, args.shape, args.num, args.seed, concept=args.concept)
    print(f"wrote {len(paths)} clips to {args.out}")
    return 0
