"""Caption sensitivity: how much a DiT's denoising loss rises when one kind of word in the caption is swapped.

A text-to-video DiT that draws the right colour but ignores the motion words fails the motion metric of
``videogen eval`` however long it samples; this diagnostic says which words it listens to, without sampling.
For rendered ground-truth clips of the eval prompts (``evaluate.ground_truth_clips``, encoded by the
pipeline's VAE), it computes the flow-matching loss at a few noise levels with the true caption and with
captions whose colour, shape or motion words are swapped (``SWAPS``; e.g. left <-> right), plus the empty
caption. The *rise* ``loss(swapped) / loss(true) - 1`` is ~0 for words the model ignores and clearly
positive for words it uses. Each variant uses only the clips whose caption the swap changes.

With ``clean_first_frame`` the first frame is given and the loss covers the later frames only: there the motion
words decide where the object is in every later frame. A text-to-video DiT gets it as its clean latent frame 0 (as
``train.clean_first_frame_prob`` trains); a text-and-image DiT (Wan's I2V layout, ``image_optional``) gets it as
it was trained, through its image channels (``image_condition``: the first-frame mask and first-frame latents)
beside an all-noised input.
"""

from __future__ import annotations

import re

import numpy as np

SWAPS: dict[str, dict[str, str]] = {
    "color": {"red": "green", "green": "red", "blue": "yellow", "yellow": "blue", "magenta": "cyan", "cyan": "magenta"},
    "shape": {"circle": "square", "square": "triangle", "triangle": "circle"},
    "motion": {"left": "right", "right": "left", "up": "down", "down": "up"},
}
DEFAULT_SIGMAS = (0.9, 0.7, 0.5, 0.3)


def swap_words(caption: str, table: dict[str, str]) -> str:
    """``caption`` with every whole word found in ``table`` replaced by its entry (simultaneously, so
    ``left <-> right`` swaps rather than collapsing)."""
    if not table:
        return caption
    pattern = r"\b(" + "|".join(map(re.escape, table)) + r")\b"
    return re.sub(pattern, lambda m: table[m.group(1)], caption)


def caption_sensitivity(pipe, latents, captions, sigmas=DEFAULT_SIGMAS, max_sequence_length: int = 40,
                        seed: int = 0, clean_first_frame: bool = False, swaps=None, image_condition=None) -> dict:
    """Flow-matching loss of ``pipe.transformer`` on normalised ``latents`` ``[N, C, F, H, W]`` with their true
    ``captions`` and with each ``swaps`` variant (default ``SWAPS``) and the empty caption, at each noise level.

    Returns ``{"sigmas": [...], "variants": {name: {"clips": n, "loss": [per sigma], "true": [per sigma],
    "rise": [per sigma]}}}``; ``true`` is the true-caption loss on the same clips. Noise is drawn once from
    ``seed`` and shared by all variants, so differences come from the captions alone.

    ``image_condition`` (``[N, extra, F', H', W']``, the I2V channels of ``videogen.conditioning.image``, for a DiT
    with that many extra input channels): the first frame is given through them (``clean_first_frame`` then scores
    the later frames without touching the noisy input); without it an I2V-layout DiT gets all-zero channels (text
    alone, as ``image_optional`` trains)."""
    import torch

    from videogen.conditioning.text import encode_prompts

    if len(captions) != latents.shape[0]:
        raise ValueError(f"{len(captions)} captions for {latents.shape[0]} latents")
    swaps = SWAPS if swaps is None else swaps
    param = next(pipe.transformer.parameters())
    latents = latents.to(param.device, torch.float32)
    extra = pipe.transformer.config.in_channels - latents.shape[1]
    if image_condition is not None and tuple(image_condition.shape) != (latents.shape[0], extra, *latents.shape[2:]):
        raise ValueError(f"image_condition {tuple(image_condition.shape)} does not fit latents "
                         f"{tuple(latents.shape)} and a DiT with {extra} extra input channels")
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents.device)

    def encode(texts):
        return encode_prompts(pipe.tokenizer, pipe.text_encoder, texts, max_sequence_length, latents.device)

    def per_clip_losses(rows, states):
        """``[len(rows), len(sigmas)]``: each clip's mean squared error at each noise level."""
        out = []
        for sigma in sigmas:
            x = (1 - sigma) * latents[rows] + sigma * noise[rows]
            if clean_first_frame and image_condition is None:
                x[:, :, 0] = latents[rows, :, 0]
            t = torch.full((len(rows),), sigma * 1000.0, device=latents.device)
            if image_condition is not None:
                x = torch.cat([x, image_condition[rows].to(x)], dim=1)
            elif extra:  # a text-and-image model (image_optional): text alone is the all-zero image condition
                x = torch.cat([x, x.new_zeros(x.shape[0], extra, *x.shape[2:])], dim=1)
            with torch.no_grad():
                pred = pipe.transformer(x.to(param.dtype), t, states.to(param.dtype)).sample.float()
            error = (pred - (noise[rows] - latents[rows])).pow(2)
            out.append((error[:, :, 1:] if clean_first_frame else error).flatten(1).mean(1))
        return torch.stack(out, dim=1)

    everything = list(range(len(captions)))
    true_per_clip = per_clip_losses(everything, encode(list(captions)))  # once, shared by every variant
    variants = {}
    for name, table in [*swaps.items(), ("empty", None)]:
        swapped = [swap_words(c, table) if table is not None else "" for c in captions]
        rows = [i for i in everything if swapped[i] != captions[i]]
        if not rows:
            variants[name] = dict(clips=0, loss=None, true=None, rise=None)
            continue
        true = true_per_clip[rows].mean(0).tolist()
        loss = per_clip_losses(rows, encode([swapped[i] for i in rows])).mean(0).tolist()
        variants[name] = dict(clips=len(rows), loss=loss, true=true,
                              rise=[s / t - 1 if t > 0 else float("nan") for s, t in zip(loss, true)])
    return dict(sigmas=list(sigmas), clean_first_frame=clean_first_frame,
                first_frame=("image channels" if image_condition is not None else "clean latent frame 0")
                if clean_first_frame else None, variants=variants)


def ground_truth_latents(pipe, prompts, seeds, num_frames: int = 17, height: int = 64, width: int = 64):
    """Rendered ground-truth clips of ``prompts`` x ``seeds`` (prompt-major) encoded by ``pipe.vae`` (posterior
    mode, normalised as the DiT sees them), and the matching captions."""
    from videogen.evaluation.evaluate import ground_truth_clips

    clips = np.stack(ground_truth_clips(prompts, seeds, num_frames, height, width))
    return clip_latents(pipe, clips), [p for p in prompts for _ in seeds]


def clip_latents(pipe, clips: np.ndarray):
    """uint8 clips ``[N, F, H, W, 3]`` encoded by ``pipe.vae`` (posterior mode), normalised as the DiT sees them."""
    import torch

    from videogen.evaluation.evaluate import encode_clips

    with torch.no_grad():
        return pipe.vae.normalize_latents(encode_clips(pipe.vae, clips)).float()


def first_image_condition(pipe, clips: np.ndarray):
    """The I2V channels (``videogen.conditioning.image.image_condition``) of uint8 clips ``[N, F, H, W, 3]``: their
    frame 0 as the given first image, for a clip of the same length."""
    import torch

    from videogen.conditioning.image import image_condition

    first = torch.from_numpy(np.ascontiguousarray(clips[:, 0])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        return image_condition(pipe.vae, first, clips.shape[1])


def format_sensitivity(result: dict) -> str:
    """A table: one row per variant, the loss rise (%) at each noise level."""
    sigmas = result["sigmas"]
    head = "all frames noised"
    if result["clean_first_frame"]:
        given = "first image given" if result.get("first_frame") == "image channels" else "clean frame 0"
        head = f"{given}, later frames scored"
    lines = [f"caption sensitivity ({head}): loss rise when the words are swapped, %",
             f"{'words':<8} {'clips':>5} " + " ".join(f"{'sigma ' + format(s, '.2g'):>10}" for s in sigmas)]
    for name, v in result["variants"].items():
        cells = ["-" * 10] * len(sigmas) if v["rise"] is None else [f"{100 * r:>10.1f}" for r in v["rise"]]
        lines.append(f"{name:<8} {v['clips']:>5} " + " ".join(cells))
    return "\n".join(lines)


def run_sensitivity(pipe, prompts, seeds, num_frames: int = 17, height: int = 64, width: int = 64,
                    max_sequence_length: int = 40, out_dir=None) -> dict:
    """``caption_sensitivity`` on the ground truth of ``prompts`` x ``seeds``, with all frames noised and with the
    first frame given (through the image channels of a text-and-image DiT, else as a clean latent frame 0); prints
    both tables, writes ``sensitivity.json`` to ``out_dir`` (when given), returns the dict."""
    from videogen.evaluation.evaluate import ground_truth_clips

    seeds = [int(s) for s in seeds]
    clips = np.stack(ground_truth_clips(prompts, seeds, num_frames, height, width))  # rendered once, used twice
    latents, captions = clip_latents(pipe, clips), [p for p in prompts for _ in seeds]
    condition = None
    if pipe.transformer.config.in_channels > latents.shape[1]:  # Wan's I2V layout: give the first image as trained
        condition = first_image_condition(pipe, clips)
    result = {}
    for key, clean in (("plain", False), ("clean_first_frame", True)):
        result[key] = caption_sensitivity(pipe, latents, captions, max_sequence_length=max_sequence_length,
                                          clean_first_frame=clean, image_condition=condition if clean else None)
        print(format_sensitivity(result[key]))
    if out_dir is not None:
        from videogen.evaluation.evaluate import write_result

        write_result(out_dir, "sensitivity.json", result)
    return result
