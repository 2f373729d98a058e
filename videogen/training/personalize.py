"""Personalization from a few clips (Set-and-Sequence, two stages): an identity LoRA on single frames, then a motion
residual on the full clips over the frozen identity basis; prior preservation from the base model's own videos."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

from videogen.io import load_video, save_video

PRESETS = {
    "attention": ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                  "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o"],
    "attention-ffn": ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                      "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"],
}
PRESETS["attention-ffn-image"] = PRESETS["attention-ffn"] + ["cross_attn.k_img", "cross_attn.v_img"]
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".png", ".jpg", ".jpeg")


def find_clips(directory) -> list[Path]:
    """The clips (videos, or images as one-frame clips) in ``directory``, sorted; none is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no clips folder at {directory}")
    clips = sorted(p for p in directory.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
    if not clips:
        raise ValueError(f"no clips in {directory} (looked for {', '.join(VIDEO_SUFFIXES)})")
    return clips


def default_caption(concept: str) -> str:
    """The caption of a clip that has none naming the concept."""
    return f"a video of {concept}"


def concept_caption(clip: Path, concept: str) -> str:
    """The clip's own caption (same-name .txt) if it names the concept, else ``"a video of <concept>"``."""
    txt = clip.with_suffix(".txt")
    if txt.exists():
        text = txt.read_text().strip()
        if concept.lower() in text.lower().split():
            return text
        warnings.warn(f"{txt.name} does not name the concept {concept!r}; using 'a video of {concept}'")
    return default_caption(concept)


def check_concept_word(tokenizer, concept: str) -> None:
    """Warn when the tokenizer already knows the concept word (the LoRA would redefine an existing word), and say
    when it does not know it at all (it becomes the unknown token, shared with every other unknown word)."""
    ids = tokenizer(concept, add_special_tokens=False).input_ids
    if tokenizer.unk_token_id is not None and ids and all(i == tokenizer.unk_token_id for i in ids):
        warnings.warn(f"the tokenizer does not know {concept!r}: it is read as the unknown token, so every word "
                      "it does not know will call up the concept")
    elif len(ids) == 1:
        warnings.warn(f"the tokenizer already knows {concept!r} as one word; the LoRA will change what it means "
                      "(a rare or made-up word keeps the base model's vocabulary intact)")


def is_blank(frames, threshold: float = 4.0) -> bool:
    """Whether a clip ``[F, H, W, 3]`` (0-255) has no content: its pixels' spread within a frame, averaged over
    frames, is below ``threshold`` grey levels (an empty background with codec noise is ~2; one small object ~25)."""
    import numpy as np

    frames = np.asarray(frames, dtype=np.float64)
    return bool(frames.reshape(frames.shape[0], -1, frames.shape[-1]).std(1).mean() < threshold)


def _prepare_clips(clips: Sequence[Path], concept: str, work: Path, num_frames: int, height: int, width: int) -> list:
    """Copy each clip as a 1 + 4k-frame mp4 into ``work`` (images repeated, long clips cut, short ones looped),
    noting clips of another size (the dataset fits them: resize to cover, centre crop)."""
    import numpy as np

    rows = []
    for i, clip in enumerate(clips):
        frames = load_video(clip)
        if frames.shape[1:3] != (height, width):
            print(f"note: {clip.name} is {frames.shape[2]}x{frames.shape[1]}; it is resized to cover {width}x{height} "
                  "and centre-cropped")
        if frames.shape[0] < num_frames:
            frames = np.concatenate([frames] * (num_frames // frames.shape[0] + 1))
        out = work / f"clip{i:03d}.mp4"
        save_video(frames[:num_frames], out, fps=8)
        rows.append({"video": out.name, "caption": concept_caption(clip, concept)})
    bare = sum(r["caption"] == default_caption(concept) for r in rows)
    if bare:
        print(f"note: {bare} of {len(rows)} clips have no caption naming {concept!r} and train as 'a video of "
              f"{concept}'; captions in the form of your prompts ('a {concept} moving to the left on a black "
              "background') bind the word far better (measured on the shapes world: README, Personalization)")
    return rows


def still_clips(data: Path, rows: list, out: Path, num_frames: int, per_clip: int = 4) -> list:
    """Stage 1's set of frames as still clips: ``per_clip`` evenly spaced frames of each clip in ``rows`` (under
    ``data``), each held for ``num_frames`` frames, written to ``out`` with the clip's caption; returns their rows."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    still = []
    for row in rows:
        frames = load_video(data / row["video"])
        for k, index in enumerate(np.linspace(0, len(frames) - 1, per_clip).round().astype(int)):
            name = f"{Path(row['video']).stem}-still{k}.mp4"
            save_video(np.repeat(frames[index][None], num_frames, 0), out / name, fps=8)
            still.append({"video": name, "caption": row["caption"]})
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in still))
    return still


def personalize(clips_dir, concept: str, out_dir, model=None, class_prompt: Optional[str] = None,
                preset: str = "attention", rank: int = 8, alpha: Optional[float] = None,
                steps: tuple[int, int] = (300, 300), learning_rate: float = 1e-3, batch_size: int = 4,
                prior_videos: int = 4, seed: int = 0, identity_frames: str = "still", progress: bool = True) -> dict:
    """Train a LoRA that binds ``concept`` (a new word) to the subject of the clips in ``clips_dir``.

    Stage 1 (Set): an identity LoRA on the clips' frames as an unordered set (the appearance without the motion):
    with ``identity_frames="still"`` each sample is one frame held still for the model's clip length (for a base
    never trained on images, as the embedded default: measured, one-frame samples there break the later frames
    of its videos); with ``"single"``, one random frame per sample (for bases trained on images too, as Wan).
    Stage 2 (Sequence): that LoRA's B factors frozen, its A factors trained on
    the full clips; the change of A is the motion residual (``delta W = B_id (A_id + A_motion)``). Prior
    preservation: with ``class_prompt``, ``prior_videos`` videos the base model generates for it are trained on
    beside the clips, with that caption. Writes ``identity.safetensors``, ``motion.safetensors`` and the combined
    ``lora.safetensors`` (diffusers format, which every videogen pipeline and diffusers load) and
    ``personalize.json`` (settings, times, final losses) to ``out_dir``; returns that dict."""
    from videogen.convert.lora import LoraFile, ModuleLora, read_lora, save_lora
    from videogen.loading import default_model, generation_defaults, load_pipeline
    from videogen.training.config import load_config
    from videogen.training.trainer import Trainer

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if identity_frames not in ("still", "single"):
        raise ValueError(f"identity_frames must be 'still' or 'single'; got {identity_frames!r}")
    if not concept or not concept.strip() or len(concept.split()) != 1:
        raise ValueError(f"the concept must be one word; got {concept!r}")
    clips = find_clips(clips_dir)
    model = Path(model) if model else default_model("text")
    d = generation_defaults(model)
    out, work = Path(out_dir), Path(out_dir) / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    pipe = load_pipeline(model)
    check_concept_word(pipe.tokenizer, concept)
    is_i2v = type(pipe).__name__ == "ImageToVideoPipeline"
    if is_i2v and not pipe.config.get("image_optional", False):
        raise ValueError("personalize trains on text-to-video samples; this image-to-video model cannot generate "
                         "from text alone")
    started = time.perf_counter()
    rows = _prepare_clips(clips, concept, work / "data", d["num_frames"], d["height"], d["width"])
    blank = 0
    if class_prompt:
        import torch

        from videogen.guidance import cfg_stg

        pipe.set_progress_bar_config(disable=not progress)
        for k in range(prior_videos):
            frames = pipe(prompt=class_prompt, height=d["height"], width=d["width"], num_frames=d["num_frames"],
                          num_inference_steps=d["steps"], max_sequence_length=d["max_sequence_length"],
                          guidance=cfg_stg(d["guidance_scale"], d["stg_scale"], d["stg_blocks"], d["stg_mode"]),
                          generator=torch.Generator().manual_seed(10_000 + k)).frames[0]
            save_video(frames, work / "data" / f"prior{k:03d}.mp4", fps=8)
            rows.append({"video": f"prior{k:03d}.mp4", "caption": class_prompt})
            blank += is_blank(load_video(work / "data" / f"prior{k:03d}.mp4"))
        if blank:
            warnings.warn(f"{blank} of the base model's {prior_videos} videos of the class prompt {class_prompt!r} "
                          "are blank (no content): prior preservation on them teaches the LoRA to draw nothing. "
                          "Name the class as the base model knows it (the embedded default needs a colour: "
                          "'a red square ...'), or leave --class-prompt out")
    del pipe
    (work / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prior_time = time.perf_counter() - started

    stills = still_clips(work / "data", rows, work / "still", d["num_frames"]) if identity_frames == "still" else None

    def stage(name, root, frames, max_steps, lora, image_dropout):
        overrides = [f"output_dir={work / name}", f"model.pretrained={model}", f"data.root={root}",
                     f"data.num_frames={frames}", f"data.height={d['height']}", f"data.width={d['width']}",
                     f"data.batch_size={min(batch_size, len(rows))}", f"data.max_sequence_length={d['max_sequence_length']}",
                     "data.crop=random", f"train.max_steps={max_steps}", f"train.learning_rate={learning_rate}",
                     "train.ema_decay=null", "train.caption_dropout=0.0", f"seed={seed}", "checkpoint.every=1000000",
                     "log.tensorboard=false", f"train.i2v={str(is_i2v).lower()}",
                     *([f"train.image_dropout={image_dropout}"] if is_i2v else []),
                     *(f"lora.{k}={v}" for k, v in lora.items())]
        cfg = load_config(None, overrides)
        t0 = time.perf_counter()
        Trainer(cfg).train()
        losses = [json.loads(line)["loss"] for line in (work / name / "log.jsonl").read_text().splitlines()]
        return work / name / "final" / "lora", time.perf_counter() - t0, losses

    alpha = float(alpha if alpha is not None else rank)
    targets = json.dumps(PRESETS[preset])
    # A text-and-image base: stage 1 trains text-only (with the frame given, a one-frame sample is its own answer
    # and teaches the word nothing); stage 2 drops the image for half the samples, as the base was trained, so the
    # LoRA serves both tasks.
    ident_dir, t1, loss1 = stage("stage1", work / ("still" if stills else "data"), d["num_frames"] if stills else 1,
                                 steps[0], {"rank": rank, "alpha": alpha, "target_modules": targets}, 1.0)
    both_dir, t2, loss2 = stage("stage2", work / "data", d["num_frames"], steps[1],
                                {"init": ident_dir, "train_factors": "A"}, 0.5)
    identity, combined = read_lora(ident_dir), read_lora(both_dir)
    motion = LoraFile({n: ModuleLora(down=combined.modules[n].down - m.down, up=m.up, alpha=m.alpha)
                       for n, m in identity.modules.items()}, "diffusers")
    out.mkdir(parents=True, exist_ok=True)
    for file, lora in (("identity", identity), ("motion", motion), ("lora", combined)):
        save_lora(lora, out / f"{file}.safetensors", "diffusers")
    report = dict(concept=concept, model=str(model), clips=[c.name for c in clips], class_prompt=class_prompt,
                  prior_videos=prior_videos if class_prompt else 0, blank_prior_videos=blank if class_prompt else 0,
                  preset=preset, rank=rank, alpha=alpha,
                  steps=list(steps), learning_rate=learning_rate, seed=seed,
                  image_dropout=dict(stage1=1.0, stage2=0.5) if is_i2v else None, identity_frames=identity_frames,
                  seconds=dict(prior=round(prior_time, 1), stage1=round(t1, 1), stage2=round(t2, 1)),
                  final_loss=dict(stage1=loss1[-1] if loss1 else None, stage2=loss2[-1] if loss2 else None),
                  files=dict(identity=str(out / "identity.safetensors"), motion=str(out / "motion.safetensors"),
                             lora=str(out / "lora.safetensors")))
    (out / "personalize.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def add_cli(subparsers):
    """Register ``videogen personalize``."""
    p = subparsers.add_parser("personalize", help="a LoRA that binds a new word to the subject of a few clips "
                              "(Set-and-Sequence: identity on frames, then motion on clips)")
    p.add_argument("--clips", required=True, help="folder of clips or images (same-name .txt captions optional)")
    p.add_argument("--concept", required=True, help="the new word, e.g. 'zorp' (prompts then say 'a zorp moving left')")
    p.add_argument("--class-prompt", dest="class_prompt", default=None,
                   help="prior preservation: the base model's own videos of this prompt are trained on too")
    p.add_argument("-o", "--out", required=True, help="output folder (identity/motion/lora .safetensors)")
    p.add_argument("--model", default=None, help="base pipeline (default: the embedded text-to-video model)")
    p.add_argument("--preset", choices=list(PRESETS), default="attention")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=None, help="default: the rank (scale 1)")
    p.add_argument("--steps", default="300,300", help="stage 1 and stage 2 steps, e.g. 300,300")
    p.add_argument("--learning-rate", dest="learning_rate", type=float, default=1e-3)
    p.add_argument("--prior-videos", dest="prior_videos", type=int, default=4)
    p.add_argument("--identity-frames", dest="identity_frames", choices=["still", "single"], default="still",
                   help="stage 1's samples: one frame held still for a whole clip (default; for bases never trained "
                   "on images) or one frame alone (bases trained on images too, as Wan)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_personalize)
    return p


def run_personalize(args) -> int:
    """Run ``videogen personalize`` and print where the LoRA went."""
    try:
        steps = tuple(int(s) for s in args.steps.split(","))
    except ValueError:
        raise ValueError(f"--steps must be two integers, e.g. 300,300; got {args.steps!r}") from None
    if len(steps) != 2 or min(steps) < 1:
        raise ValueError(f"--steps must be two positive integers; got {args.steps!r}")
    report = personalize(args.clips, args.concept, args.out, args.model, args.class_prompt, args.preset, args.rank,
                         args.alpha, steps, args.learning_rate, prior_videos=args.prior_videos, seed=args.seed,
                         identity_frames=args.identity_frames)
    print(f"{report['files']['lora']} (identity and motion beside it; {report['seconds']})")
    return 0
