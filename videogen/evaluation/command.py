"""The ``videogen eval`` command: its arguments, and the dispatch to the evaluations (text/image-to-video on the
shapes world, caption sensitivity)."""

from __future__ import annotations

from pathlib import Path

# The evaluation modules are imported by cmd_eval, not here: the CLI registers this command on every start, and the
# metrics module alone costs ~0.25 s of a 2-core CPU's start-up (measured with python -X importtime).


def add_cli(subparsers):
    """Register ``videogen eval`` on an argparse subparsers object; return its parser."""
    p = subparsers.add_parser("eval", help="measure a pipeline on shapes-world prompts against rendered ground truth")
    p.add_argument("--model", required=True, help="pipeline directory (videogen or diffusers Wan2.1 T2V / I2V); "
                   "for --task vae also a VAE directory")
    p.add_argument("--task", choices=["t2v", "i2v", "vae", "concept", "camera", "trajectory"], default="t2v",
                   help="i2v: animate each ground-truth clip's first frame (an image-to-video pipeline); vae: the "
                        "VAE's round-trip PSNR per frame on the same ground truth; concept: how often a "
                        "personalized word (--concept, with --lora) shows its colour in unseen scenes; camera: "
                        "camera poses estimated from the frames of a camera-control pipeline (RotErr, TransErr, "
                        "CamMC, direction accuracy) against rendered ground truth and the model with the camera off; "
                        "trajectory: TrajError (px) of a trajectory-control pipeline's objects on held-out paths "
                        "(lines, arcs, zigzags at unseen speeds) against rendered ground truth and the adapter off")
    p.add_argument("--concept", default=None, help="--task concept: the personalized word")
    p.add_argument("--camera-motions", dest="camera_motions", type=lambda s: [v.strip() for v in s.split(",")],
                   default=None, help="--task camera: comma-separated shapes-world camera motions (default: all 12)")
    p.add_argument("--camera-scales", dest="camera_scales", type=lambda s: [float(v) for v in s.split(",")],
                   default=None, help="--task camera: CMG scales to sweep (default: the model's camera_scale)")
    p.add_argument("--camera-nulls", dest="camera_nulls", type=lambda s: s.split(","), default=None,
                   help="--task camera: null cameras to sweep (identity, zeros, off)")
    p.add_argument("--camera-windows", dest="camera_windows",
                   type=lambda s: [tuple(float(x) for x in w.split(":")) for w in s.split(",")], default=None,
                   help="--task camera: camera windows to sweep, START:STOP fractions, comma-separated")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="--task camera / trajectory: skip the model with the camera (the trajectory adapter) off")
    p.add_argument("--num-cases", dest="num_cases", type=int, default=None,
                   help="--task trajectory: held-out path cases (default 12: 3 kinds x 2 speeds x 1 or 2 objects)")
    p.add_argument("--case-seed", dest="case_seed", type=int, default=0,
                   help="--task trajectory: the seed the held-out paths are drawn with")
    p.add_argument("--concept-color", dest="concept_color", default="purple", help="--task concept: its colour")
    p.add_argument("--concept-shape", dest="concept_shape", default=None, help="--task concept: its shape")
    p.add_argument("--prompts", default="default",
                   help="'default' (every color x shape x motion), 'holdout', or a .txt file with one prompt per line")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--seeds", type=int, default=None, help="seeds per prompt (0..N-1; default 4, --task trajectory 2)")
    p.add_argument("--steps", type=int, default=None,
                   help="denoising steps (default 20; --task trajectory 12, so 12 cases x 2 seeds x (model + floor) "
                        "take ~10 minutes at 64x64 on a CPU)")
    # Guidance defaults: the model's generation_config.json (what `videogen generate` uses), else CFG 5, no STG.
    p.add_argument("--guidance-scale", dest="guidance_scale", type=float, default=None, help="CFG scale (<= 1: off)")
    p.add_argument("--stg-scale", dest="stg_scale", type=float, default=None, help="STG scale (0: off)")
    p.add_argument("--stg-blocks", dest="stg_blocks", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="comma-separated block indices STG perturbs")
    p.add_argument("--stg-mode", dest="stg_mode", choices=["block", "attention"], default=None)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--num-frames", dest="num_frames", type=int, default=17, help="1 + 4k frames")
    p.add_argument("--out", default="eval", help="output folder (eval.json, contact_sheet.png/.gif)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-sequence-length", dest="max_sequence_length", type=int, default=None,
                   help="text tokens (default: the model's generation_config.json, else 512)")
    p.add_argument("--no-vae-ceiling", dest="vae_ceiling", action="store_false",
                   help="skip scoring the ground truth after a round trip through the pipeline's VAE")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--sensitivity", action="store_true",
                   help="instead of generating: how much the DiT's loss on the ground truth rises when the prompts' "
                        "colour, shape or motion words are swapped (videogen.evaluation.sensitivity)")
    p.add_argument("--lora", action="append", default=None, metavar="PATH[:SCALE]",
                   help="evaluate with this LoRA loaded (any Wan scheme), at SCALE (default 1); repeatable")
    p.add_argument("--lora-nonstrict", dest="lora_nonstrict", action="store_true",
                   help="load a LoRA's matching keys and warn about the rest")
    from videogen.step_cache import add_speed_arguments

    add_speed_arguments(p)
    p.set_defaults(func=cmd_eval)
    return p


TRAJECTORY_SEEDS = 2  # --task trajectory's default seeds and steps: ~10 minutes of a CPU for the embedded size
TRAJECTORY_STEPS = 12


def _class_name(model: Path) -> str:
    """The pipeline class a directory's model_index.json names."""
    from videogen.loading import pipeline_class_name

    return pipeline_class_name(model) or "pipeline of unknown class"


def cmd_eval(args) -> int:
    """Run ``videogen eval`` from parsed arguments."""
    from videogen.evaluation.evaluate import load_prompts, run_eval
    from videogen.guidance import cfg_stg
    from videogen.loading import apply_loras, generation_defaults, load_pipeline, use_attention
    from videogen.step_cache import step_cache_from_settings

    model = Path(args.model)
    trajectory = args.task == "trajectory"
    if args.seeds is None:
        args.seeds = TRAJECTORY_SEEDS if trajectory else 4
    if args.steps is None:
        args.steps = TRAJECTORY_STEPS if trajectory else 20
    if trajectory:
        prompts = ["(the held-out cases name their own prompts)"]
    elif args.task == "camera" and args.prompts in ("default", "camera"):
        from videogen.evaluation.camera import DEFAULT_CAMERA_PROMPTS

        prompts = list(DEFAULT_CAMERA_PROMPTS)[: args.limit]
    else:
        prompts = load_prompts(args.prompts)[: args.limit]
    if args.seeds < 1 or not prompts:
        raise ValueError("need at least one prompt and one seed")
    if args.task == "vae":
        from videogen.evaluation.evaluate import run_vae_eval
        from videogen.models.vae import CausalVideoVAE

        if (model / "model_index.json").exists():
            from videogen.integrity import verify_checkpoint

            verify_checkpoint(model)
            model = model / "vae"
        vae = CausalVideoVAE.from_wan(model).float().to(args.device)
        run_vae_eval(vae, prompts, range(args.seeds), args.num_frames, args.height, args.width, args.out,
                     args.progress)
        return 0
    if not (model / "model_index.json").exists():
        raise FileNotFoundError(f"no pipeline directory (model_index.json) at {model}")
    if trajectory:
        from videogen.loading import is_trajectory_control

        if not is_trajectory_control(model):  # before anything loads
            raise ValueError(f"--task trajectory needs a trajectory-control model (a TrajectoryControlPipeline with a "
                             f"trajectory adapter); {model} holds a {_class_name(model)}, which has no trajectory "
                             "adapter")
    d = generation_defaults(model, vars(args))  # guidance and text length: flags, else the model's own defaults
    guidance = cfg_stg(d["guidance_scale"], d["stg_scale"], d["stg_blocks"], d["stg_mode"])
    pipe = load_pipeline(model, args.device)
    use_attention(pipe, d["attention"])
    for report in apply_loras(pipe, args.lora, strict=not args.lora_nonstrict):
        print(report)
    step_cache = step_cache_from_settings(d["step_cache"], d["speedup"], d["step_cache_threshold"])
    config = dict(model=str(model), lora=args.lora or [], prompt_set=args.prompts, guidance_scale=d["guidance_scale"],
                  stg_scale=d["stg_scale"], stg_blocks=d["stg_blocks"], stg_mode=d["stg_mode"], device=args.device)
    if args.task == "camera":
        from videogen.evaluation.camera import EVAL_MOTIONS, run_camera_eval, sweep_settings

        if type(pipe).__name__ != "CameraControlPipeline":
            raise ValueError(f"--task camera needs a camera-control pipeline; {model} holds a {type(pipe).__name__}")
        settings = sweep_settings(args.camera_scales or [d["camera_scale"]], args.camera_nulls,
                                  args.camera_windows or [tuple(d["camera_window"])])
        stg = dict(stg_scale=d["stg_scale"], stg_blocks=d["stg_blocks"], stg_mode=d["stg_mode"])
        run_camera_eval(pipe, prompts, range(args.seeds), args.camera_motions or EVAL_MOTIONS, settings, args.height,
                        args.width, args.num_frames, args.steps, d["guidance_scale"], d["max_sequence_length"],
                        args.out, args.floor, args.progress, stg)
        return 0
    if trajectory:
        from videogen.evaluation.evaluate import write_result
        from videogen.evaluation.trajectory import DEFAULT_NUM_CASES, held_out_cases, run_trajectory_eval

        if getattr(pipe, "trajectory_adapter", None) is None:
            raise ValueError(f"--task trajectory measures a Tora-mode trajectory adapter on text-to-video; {model} "
                             "has no trajectory adapter (ATI / Wan-Move checkpoints need a start image)")
        num_cases = DEFAULT_NUM_CASES if args.num_cases is None else args.num_cases
        cases = held_out_cases(num_cases, args.case_seed, args.num_frames, args.height, args.width)
        stg = dict(stg_scale=d["stg_scale"], stg_blocks=d["stg_blocks"], stg_mode=d["stg_mode"])
        result = run_trajectory_eval(pipe, cases, range(args.seeds), args.height, args.width, args.num_frames,
                                     args.steps, d["guidance_scale"], d["max_sequence_length"], None, args.floor,
                                     args.progress, stg, d["trajectory_strength"], d["trajectory_scale"])
        result["config"].update({k: v for k, v in config.items() if k != "prompt_set"})
        write_result(args.out, "trajectory_eval.json", result)
        return 0
    is_i2v = type(pipe).__name__ == "ImageToVideoPipeline"
    text_too = is_i2v and pipe.config.get("image_optional", False)  # one model for both tasks
    if (args.task == "i2v") != is_i2v and not (args.task in ("t2v", "concept") and text_too):
        raise ValueError(f"--task {args.task} needs a{'n image' if args.task == 'i2v' else ' text'}-to-video "
                         f"pipeline; {model} holds a {type(pipe).__name__}")
    if args.task == "concept":
        from videogen.evaluation.concept import run_concept_eval

        if not args.concept:
            raise ValueError("--task concept needs --concept WORD")
        run_concept_eval(pipe, args.concept, args.concept_color, args.concept_shape, range(args.seeds), args.steps,
                         guidance, args.height, args.width, args.num_frames, d["max_sequence_length"], args.out,
                         args.progress)
        return 0
    if args.sensitivity:
        from videogen.evaluation.sensitivity import run_sensitivity

        if is_i2v and not text_too:
            raise ValueError("--sensitivity measures a text-to-video pipeline")
        run_sensitivity(pipe, prompts, range(args.seeds), args.num_frames, args.height, args.width,
                        d["max_sequence_length"], args.out)
        return 0
    run_eval(pipe, prompts, range(args.seeds), args.height, args.width, args.num_frames, args.steps,
             guidance, args.out, config, args.progress, args.task, args.vae_ceiling, d["max_sequence_length"],
             step_cache)
    return 0
