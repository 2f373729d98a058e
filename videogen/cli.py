"""The `videogen` command: generate, camera-preset, convert, info (and the commands the library modules add)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from videogen.loading import (
    apply_loras,
    generation_arguments,
    generation_defaults,
    load_pipeline,
    resolve_model,
    use_attention,
    use_scheduler,
)

CAMERA_FLAGS = {"camera_scale": "--camera-scale", "camera_null": "--camera-null", "camera_strength": "--camera-strength",
                "camera_window": "--camera-window", "camera_speed": "--camera-speed"}
TRAJECTORY_FLAGS = {"trajectory_scale": "--trajectory-scale", "trajectory_strength": "--trajectory-strength"}

COMPONENT_CLASSES = {
    "transformer": ("WanTransformer3DModel", "VideoDiT", "WanModel"),
    "vae": ("AutoencoderKLWan", "CausalVideoVAE"),
}


def detect_component(path: Path) -> str:
    """Tell whether ``path`` holds a DiT or a VAE, from its config.json or else from its weight keys."""
    from videogen.convert.state_dict import load_state_dict, read_config

    cfg = read_config(path) or {}
    for component, classes in COMPONENT_CLASSES.items():
        if cfg.get("_class_name") in classes:
            return component
    keys = load_state_dict(path).keys()
    if any(k.endswith("patch_embedding.weight") for k in keys):
        return "transformer"
    if any(k.startswith(("encoder.conv1.", "encoder.conv_in.")) for k in keys):
        return "vae"
    raise ValueError(f"cannot tell what {path} holds: neither Wan DiT nor Wan VAE weights")


def load_component(path: Path, component: str, num_heads: int | None = None):
    """Load a DiT or VAE from any supported layout (``num_heads``: for bare DiT weights of a non-public width)."""
    if component == "transformer":
        from videogen.models.transformer import VideoDiT

        try:
            return VideoDiT.from_wan(path, num_heads=num_heads)
        except ValueError as err:
            if "cannot tell num_heads" in str(err):
                raise ValueError(f"{err}; on the command line: --num-heads N") from None
            raise
    from videogen.models.vae import CausalVideoVAE

    return CausalVideoVAE.from_wan(path)


def cmd_convert(args) -> int:
    """Convert Wan2.1 weights (diffusers or original layout; a model or a pipeline directory) to our format."""
    src, dst = Path(args.src), Path(args.dst)
    if not src.exists():
        raise FileNotFoundError(f"source does not exist: {src}")
    if (src / "model_index.json").exists():  # a whole pipeline: convert the model subfolders we know
        jobs = [(src / name, dst / name, name) for name in COMPONENT_CLASSES if (src / name).exists()]
    else:
        component = detect_component(src) if args.component == "auto" else args.component
        jobs = [(src, dst, component)]
    for job_src, job_dst, component in jobs:
        model = load_component(job_src, component, args.num_heads)
        if args.to == "diffusers":
            if component != "transformer":
                raise ValueError("--to diffusers is implemented for the transformer only; the VAE keeps our format")
            from videogen.convert.wan import save_diffusers_transformer

            save_diffusers_transformer(model, job_dst)
        else:
            model.save_pretrained(job_dst)
        count = sum(p.numel() for p in model.parameters())
        print(f"{component}: {job_src} -> {job_dst} ({type(model).__name__}, {count / 1e6:.2f} M parameters)")
    return 0


def cmd_info(args) -> int:
    """Print the components, configs and parameter counts of a model or pipeline directory."""
    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(f"path does not exist: {path}")
    if (path / "model_index.json").exists():
        index = json.loads((path / "model_index.json").read_text())
        print(f"pipeline {index.get('_class_name')} at {path}")
        parts = [(name, path / name) for name, spec in index.items() if not name.startswith("_") and spec]
    else:
        parts = [(detect_component(path), path)]
    for name, part in parts:
        if name in COMPONENT_CLASSES:
            model = load_component(part, name if name in COMPONENT_CLASSES else detect_component(part))
            count = sum(p.numel() for p in model.parameters())
            print(f"\n[{name}] {type(model).__name__}: {count:,} parameters")
            print(json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")}, indent=2, default=str))
        else:
            cfg = next((part / f for f in ("config.json", "scheduler_config.json", "tokenizer_config.json")
                        if (part / f).exists()), None)
            print(f"\n[{name}] " + (cfg.read_text() if cfg else "(no config)"))
    return 0


def cmd_generate(args) -> int:
    """Generate a video from a prompt (and ``--image``, for image-to-video models; ``--camera``, for camera-control
    models) with a pipeline checkpoint (default: the embedded one)."""
    from videogen.io import save_video

    camera_only = [flag for key, flag in CAMERA_FLAGS.items() if getattr(args, key) is not None]
    if camera_only and args.camera is None:
        raise ValueError(f"{', '.join(camera_only)} need --camera PRESET|POSE_FILE")
    trajectory_only = [flag for key, flag in TRAJECTORY_FLAGS.items() if getattr(args, key) is not None]
    if trajectory_only and args.trajectory is None:
        raise ValueError(f"{', '.join(trajectory_only)} need --trajectory FILE|'x,y x,y'")
    # With no --model, the embedded default that takes every condition given (a first frame: the I2V default);
    # image and camera arguments are checked, and the files read, before any model is loaded.
    model = resolve_model(args.model, image=args.image is not None, last_image=args.last_image is not None,
                          camera=args.camera is not None, trajectory=args.trajectory is not None)
    d = generation_defaults(model, vars(args))
    kwargs = generation_arguments(model, args.prompt, d, image=args.image, last_image=args.last_image,
                                  camera=args.camera, trajectory=args.trajectory, seed=args.seed)
    pipe = load_pipeline(model, args.device, args.dtype)
    use_attention(pipe, d["attention"])
    for report in apply_loras(pipe, args.lora, strict=not args.lora_nonstrict):
        print(report, file=sys.stderr)
    use_scheduler(pipe, d["scheduler"])
    out = pipe(**kwargs, output_type="np")
    if out.step_cache is not None:
        c = out.step_cache
        print(f"step cache {c['policy']}: computed {c['num_computed']} of {c['num_steps']} steps "
              f"(threshold {c['threshold']:.4g})", file=sys.stderr)
    path = save_video(out.frames[0], args.output, fps=d["fps"])
    print(path)
    return 0


def cmd_camera_preset(args) -> int:
    """Write a camera preset as an editable text pose file (the form ``--camera FILE`` and VideoX-Fun read)."""
    from videogen.conditioning.camera import write_camera_preset

    write_camera_preset(args.output, args.name, args.frames, args.height, args.width, speed=args.speed)
    print(args.output)
    return 0


def _window(text: str) -> list[float]:
    """``A,B`` -> ``[A, B]`` (the camera window as fractions of the schedule)."""
    try:
        start, stop = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,STOP fractions of the schedule (e.g. 0,0.4); got {text!r}")
    return [start, stop]


def cmd_train(args) -> int:
    """Train (DiT flow matching, LoRA, or VAE) from a YAML config plus key=value overrides."""
    from videogen.training.config import load_config
    from videogen.training.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    trainer = Trainer(cfg)
    if args.dry_run:
        if trainer.accelerator.is_main_process:
            print(trainer.describe())
        return 0
    summary = trainer.train(resume=args.resume)
    if trainer.accelerator.is_main_process:
        skipped = summary["skipped"].get("skipped", 0)
        print(f"trained to step {summary['step']}" + (f"; {skipped} unreadable data file(s) skipped" if skipped else ""))
    return 0


def add_lora_arguments(parser) -> None:
    """``--lora PATH[:SCALE]`` (repeatable) and ``--lora-nonstrict`` on a subcommand (generate, eval)."""
    parser.add_argument("--lora", action="append", default=None, metavar="PATH[:SCALE]",
                        help="a LoRA file of any Wan scheme (diffusers, ComfyUI, musubi, ...), at SCALE (default 1); "
                             "repeat for several")
    parser.add_argument("--lora-nonstrict", dest="lora_nonstrict", action="store_true",
                        help="load a LoRA's matching keys and warn about the rest (default: an error listing them)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `videogen` command."""
    parser = argparse.ArgumentParser(prog="videogen", description="Latent video diffusion toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate a video from a text prompt (and a first frame: --image)")
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output", default="out.mp4")
    gen.add_argument("--image", help="first frame (image-to-video models); fitted to the video size by resizing to "
                     "cover, then center cropping")
    gen.add_argument("--last-image", dest="last_image", help="last frame (first-last-frame generation)")
    gen.add_argument("--model", default=None, help="pipeline directory (default: the embedded model that takes the "
                     "conditions given: checkpoints/shapes-t2v, one model for text- and image-to-video (--image); "
                     "with --camera checkpoints/shapes-camera, with --trajectory checkpoints/shapes-trajectory, "
                     "adapters over it)")
    gen.add_argument("--camera", help="camera path for camera-control models: a preset (pan-left, zoom-in, orbit-right, "
                     "...; see `videogen camera-preset`) or a pose file (CameraCtrl/RealEstate10K text or JSON)")
    gen.add_argument("--camera-scale", dest="camera_scale", type=float,
                     help="camera motion guidance scale s_c (0, the default: none; CFG keeps the camera in both passes)")
    gen.add_argument("--camera-null", dest="camera_null", choices=["identity", "zeros", "off"],
                     help="null camera of camera motion guidance: identity (a static camera, default), zeros, or off "
                          "(the adapter not run)")
    gen.add_argument("--camera-strength", dest="camera_strength", type=float,
                     help="multiplies the camera adapter's output (default 1)")
    gen.add_argument("--camera-window", dest="camera_window", type=_window,
                     help="START,STOP fractions of the schedule in which the camera is on (default 0,1; e.g. 0,0.4: "
                          "the high-noise steps only)")
    gen.add_argument("--camera-speed", dest="camera_speed", type=float, help="scales a preset's motion (default 1)")
    gen.add_argument("--trajectory", help="tracks for trajectory-control models: a track file (.json ours, .pth ATI, "
                     ".npy Wan-Move, .txt Tora) or one object inline, 'x0,y0 x1,y1 ...' in output pixels (a path "
                     "at constant speed over the clip); track i moves the i-th object the prompt names")
    gen.add_argument("--trajectory-scale", dest="trajectory_scale", type=float,
                     help="trajectory guidance scale (0, the default: none; the trajectory is in every pass)")
    gen.add_argument("--trajectory-strength", dest="trajectory_strength", type=float,
                     help="multiplies the trajectory adapter's fuser terms (default 1; 0: off)")
    gen.add_argument("--num-frames", dest="num_frames", type=int, help="1 + 4k frames")
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--steps", type=int, help="denoising steps")
    gen.add_argument("--guidance-scale", dest="guidance_scale", type=float, help="CFG scale (<= 1 disables CFG)")
    gen.add_argument("--stg-scale", dest="stg_scale", type=float, help="spatiotemporal skip guidance scale (0: off)")
    gen.add_argument("--stg-blocks", dest="stg_blocks", type=lambda s: [int(v) for v in s.split(",")],
                     help="comma-separated block indices STG perturbs, e.g. 2 or 1,2")
    gen.add_argument("--stg-mode", dest="stg_mode", choices=["block", "attention"],
                     help="block: skip whole blocks (STG-R); attention: self-attention returns V (STG-A)")
    gen.add_argument("--negative-prompt", dest="negative_prompt")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--fps", type=float)
    gen.add_argument("--scheduler", choices=["unipc", "euler"], help="default: the checkpoint's own")
    gen.add_argument("--max-sequence-length", dest="max_sequence_length", type=int, default=None,
                     help="text tokens, padded (default: the checkpoint's generation_config, else Wan's 512; a model "
                          "samples best at the length it was trained with)")
    add_lora_arguments(gen)
    from videogen.step_cache import add_speed_arguments

    add_speed_arguments(gen)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    gen.set_defaults(func=cmd_generate)

    preset = sub.add_parser("camera-preset", help="write a camera preset as an editable pose file")
    preset.add_argument("name", help="preset name: static, pan-left/right/up/down (and diagonals, e.g. pan-left-up), "
                        "zoom-in/out, roll-cw/ccw, orbit-left/right")
    preset.add_argument("-o", "--output", required=True, help="pose file to write (CameraCtrl / VideoX-Fun text form)")
    preset.add_argument("--frames", type=int, default=81, help="number of poses (video frames; default 81)")
    preset.add_argument("--height", type=int, default=480, help="video height the intrinsics are for (default 480)")
    preset.add_argument("--width", type=int, default=832, help="video width the intrinsics are for (default 832)")
    preset.add_argument("--speed", type=float, default=1.0, help="scales the motion (default 1)")
    preset.set_defaults(func=cmd_camera_preset)

    conv = sub.add_parser("convert", help="convert Wan2.1 weights (diffusers or original layout) to videogen's format")
    conv.add_argument("src", help="model directory, checkpoint file, or diffusers pipeline directory")
    conv.add_argument("dst", help="output directory")
    conv.add_argument("--component", choices=["auto", "transformer", "vae"], default="auto")
    conv.add_argument("--to", choices=["videogen", "diffusers"], default="videogen",
                      help="output layout: videogen's own (default) or diffusers keys (transformer only)")
    conv.add_argument("--num-heads", dest="num_heads", type=int, default=None,
                      help="attention heads of a bare DiT checkpoint (no config.json) whose width no public Wan2.1 "
                           "model has; the public 1.3B and 14B widths need none")
    conv.set_defaults(func=cmd_convert)

    train = sub.add_parser("train", help="train a DiT (full or LoRA) or a VAE from a YAML config")
    train.add_argument("--config", required=True, help="YAML config (see configs/)")
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.max_steps=100")
    train.add_argument("--resume", default=None, help="'latest' or a checkpoint directory")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config, dataset summary and "
                       "parameter counts, then exit")
    train.set_defaults(func=cmd_train)

    from videogen import cache_calibration, export, ui
    from videogen.convert import lora as lora_files
    from videogen.training import personalize
    from videogen.data import cache as data_cache, synthetic
    from videogen.evaluation import command as eval_command, concept

    synthetic.add_cli(sub)
    data_cache.add_cli(sub)
    eval_command.add_cli(sub)
    cache_calibration.add_cli(sub)
    concept.add_cli(sub)
    export.add_cli(sub)
    ui.add_cli(sub)
    lora_files.add_cli(sub)
    personalize.add_cli(sub)

    info = sub.add_parser("info", help="print a model's or pipeline's components, configs and parameter counts")
    info.add_argument("path")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    """Entry point of the `videogen` console script."""
    args = build_parser().parse_args(argv)
    # One line per warning (a skipped data file, say), without Python's source-line echo.
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"videogen {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
