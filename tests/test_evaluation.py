"""Shapes-world evaluation: metrics are ~100% on rendered ground truth, low on deliberately wrong clips; `videogen eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videogen.data.synthetic import COLORS, MOTIONS, SHAPES, caption_for, render_clip, sample_clip_spec
from videogen.evaluation.evaluate import (
    default_prompts, ground_truth_clips, holdout_prompts, prompt_for, score_clips, spec_for_prompt,
)
from videogen.evaluation.metrics import diversity, label_components, measure_clip, parse_prompt, score_clip, summarize
from videogen.io import load_video, save_video

BACKGROUND_WORDS = ("gray", "black", "white", "checkered", "striped", "mottled gray")
FRAMES, SIZE = 9, 64


def _prompts():
    """Every colour x shape x motion once, the background cycling through solid colours and textures."""
    combos = [(c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS]
    return [prompt_for(c, s, m, BACKGROUND_WORDS[i % len(BACKGROUND_WORDS)]) for i, (c, s, m) in enumerate(combos)]


@pytest.fixture(scope="module")
def truth():
    """(prompts, clips) of rendered ground truth, one seed per prompt."""
    prompts = _prompts()
    return prompts, ground_truth_clips(prompts, [0], FRAMES, SIZE, SIZE)


def _accuracies(prompts, clips):
    summary = summarize(score_clips(prompts, [0], clips))
    return {k: summary[f"{k}_accuracy"] for k in ("color", "shape", "count", "motion")}


def test_prompt_sets():
    prompts = default_prompts()
    assert len(prompts) == len(set(prompts)) == 90
    parsed = {(p["color"], p["shape"], p["motion"]) for p in map(parse_prompt, prompts)}
    assert parsed == {(c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS}
    held = [(p["color"], p["shape"], p["motion"]) for p in map(parse_prompt, holdout_prompts())]
    assert ("red", "circle", "left") in held and ("cyan", "triangle", "curve") in held and len(held) == 6


def test_parse_prompt_recovers_every_caption_template():
    rng = np.random.default_rng(0)
    for _ in range(150):
        spec = sample_clip_spec(rng, frames=5)
        caption = caption_for(spec, rng)
        p = parse_prompt(caption)
        first = spec.objects[0]
        assert (p["color"], p["shape"], p["motion"], p["speed"]) == (first.color, first.shape, first.motion, first.speed), caption
        assert p["count"] == len(spec.objects), caption
        assert [(o["color"], o["shape"], o["motion"]) for o in p["objects"]] == \
            [(o.color, o.shape, o.motion) for o in spec.objects], caption
        if "background" in caption:
            assert p["background"] == dict(kind=spec.background.kind, name=spec.background.name), caption
    assert parse_prompt("red circle slides left")["motion"] == "left"
    assert parse_prompt("a blue square staying still")["motion"] == "still"
    assert parse_prompt("two green triangles moving up")["count"] == 2
    assert parse_prompt("a red circle staying still on a gray background while the camera pans left")["motion"] == "still"


def test_label_components_matches_a_flood_fill():
    rng = np.random.default_rng(1)
    mask = rng.random((24, 24)) < 0.5
    labels = label_components(mask)
    assert (labels[~mask] == -1).all()
    # same label <=> 4-connected: neighbours on the mask share labels, and labels are 0..n-1
    assert (labels[:, 1:][mask[:, 1:] & mask[:, :-1]] == labels[:, :-1][mask[:, 1:] & mask[:, :-1]]).all()
    assert (labels[1:][mask[1:] & mask[:-1]] == labels[:-1][mask[1:] & mask[:-1]]).all()
    n = labels.max() + 1
    assert set(np.unique(labels[mask])) == set(range(n))
    spiral = np.zeros((9, 9), bool)
    spiral[1, 1:8] = spiral[1:8, 7] = spiral[7, 1:8] = spiral[3:8, 1] = spiral[3, 1:6] = spiral[3:6, 5] = True
    assert label_components(spiral).max() == 0
    two = np.zeros((5, 5), bool)
    two[1, 1] = two[2, 2] = True  # diagonal only: not 4-connected
    assert label_components(two).max() == 1


def test_metrics_are_perfect_on_ground_truth(truth):
    prompts, clips = truth
    assert _accuracies(prompts, clips) == dict(color=100.0, shape=100.0, count=100.0, motion=100.0)
    records = score_clips(prompts, [0], clips)
    summary = summarize(records)
    assert summary["area_drift"] < 0.01 and summary["color_drift"] < 1e-6
    for r in records:  # exactly one object found in every frame
        assert r["objects_per_frame"] == [1] * FRAMES


def test_metrics_survive_an_mp4_round_trip(truth, tmp_path):
    prompts, clips = truth
    decoded = []
    for i, clip in enumerate(clips):
        decoded.append(load_video(save_video(clip, tmp_path / f"{i}.mp4", fps=8)))
    accuracies = _accuracies(prompts, decoded)
    assert accuracies == dict(color=100.0, shape=100.0, count=100.0, motion=100.0), accuracies
    summary = summarize(score_clips(prompts, [0], decoded))
    assert summary["area_drift"] < 0.03 and summary["color_drift"] < 0.02


def test_displacement_matches_the_rendered_trajectory():
    spec = spec_for_prompt("a red circle moving to the right on a gray background", seed=3, frames=9)
    clip, meta = render_clip(spec)
    track = np.array(meta["objects"][0]["trajectory"])
    dx, dy = measure_clip(clip)["displacement"]
    assert dx == pytest.approx((track[-1, 0] - track[0, 0]) / 64, abs=0.005) and abs(dy) < 0.005
    assert dx == pytest.approx(0.35, abs=0.01)  # "normal" speed crosses 35% of the frame


def test_recoloured_clips_fail_color(truth):
    prompts, clips = truth
    swapped = [c[..., [1, 2, 0]] for c in clips]  # red->blue, green->red, blue->green, yellow->magenta, ...
    accuracies = _accuracies(prompts, swapped)
    assert accuracies["color"] == 0.0
    assert accuracies["shape"] == accuracies["count"] == accuracies["motion"] == 100.0  # only colour is wrong


def test_reversed_clips_fail_motion(truth):
    prompts, clips = truth
    moving = [(p, c[::-1]) for p, c in zip(prompts, clips) if parse_prompt(p)["motion"] != "still"]
    assert len(moving) == 72
    accuracies = _accuracies([p for p, _ in moving], [c for _, c in moving])
    assert accuracies["motion"] == 0.0 and accuracies["color"] == 100.0


def test_wrong_shape_and_extra_object_fail(truth):
    prompts, _ = truth
    sample = prompts[::5]
    other = {"circle": "square", "square": "triangle", "triangle": "circle"}
    wrong_shape, two_objects = [], []
    for p in sample:
        q = parse_prompt(p)
        wrong = p.replace(q["shape"], other[q["shape"]])
        wrong_shape.append(render_clip(spec_for_prompt(wrong, 0, FRAMES, SIZE, SIZE))[0])
        extra = "green" if q["color"] != "green" else "red"
        # a small circle (area 104 px) is smaller than any medium object (triangle 118 px), so the prompt's object
        # stays the dominant one; a small square (133 px) would outgrow a medium triangle and win the colour vote
        both = p.replace(" on a ", f" and a small {extra} circle staying still on a ")
        two_objects.append(render_clip(spec_for_prompt(both, 0, FRAMES, SIZE, SIZE))[0])
    bad_shape, bad_count = _accuracies(sample, wrong_shape), _accuracies(sample, two_objects)
    assert bad_shape["shape"] == 0.0 and bad_shape["color"] == 100.0
    assert bad_count["count"] == 0.0 and bad_count["color"] == 100.0


def test_empty_clip_scores_nothing():
    blank = np.full((5, 32, 32, 3), 128, np.uint8)
    r = score_clip(blank, "a red circle moving up on a gray background")
    assert r["dominant_color"] is None and r["count"] == 0
    assert r["color_ok"] is False and r["shape_ok"] is False and r["count_ok"] is False and r["motion_ok"] is False


def test_diversity(truth):
    _, clips = truth
    assert diversity([clips[0], clips[0].copy(), clips[0]]) == 0.0
    prompt = default_prompts()[0]
    seeds = ground_truth_clips([prompt], [0, 1, 2], FRAMES, SIZE, SIZE)
    assert 0.0 < diversity(seeds) <= 1.0
    assert diversity([np.zeros((2, 4, 4, 3), np.uint8), np.full((2, 4, 4, 3), 255, np.uint8)]) == 1.0
    assert diversity([clips[0]]) == 0.0


def test_videogen_eval_end_to_end(tmp_path, capsys):
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline

    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    # unset guidance and text length come from the model's own generation defaults, as in `videogen generate`
    (tmp_path / "pipe" / "generation_config.json").write_text(
        json.dumps({"guidance_scale": 2.0, "stg_blocks": [1], "max_sequence_length": 16}))
    (tmp_path / "prompts.txt").write_text("a red circle moving to the left on a gray background\n\n"
                                          "# a comment\na blue square staying still on a black background\n")
    from videogen.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tmp_path / "pipe"), "--prompts", str(tmp_path / "prompts.txt"),
                 "--seeds", "1", "--steps", "1", "--height", "32", "--width", "32", "--num-frames", "5",
                 "--out", str(out), "--no-progress", "--stg-scale", "1"]) == 0
    text = capsys.readouterr().out
    assert "model/ceiling" in text and "color accuracy (%)" in text
    color_row = next(line for line in text.splitlines() if line.startswith("color accuracy"))
    assert color_row.split()[4] == "100.0"  # the ceiling column
    result = json.loads((out / "eval.json").read_text())
    ceiling = result["summary"]["ceiling"]
    assert all(ceiling[f"{k}_accuracy"] == 100.0 for k in ("color", "shape", "count", "motion"))
    assert len(result["records"]["model"]) == len(result["records"]["ceiling"]) == 2
    # the VAE column: the same ground truth through the pipeline's (untrained) VAE, scored the same way
    from videogen.evaluation.evaluate import score_clips, vae_round_trip
    from videogen.evaluation.metrics import summarize

    pipe = TextToVideoPipeline.from_pretrained(tmp_path / "pipe")
    prompts = result["config"]["prompts"]
    truth = ground_truth_clips(prompts, [0], 5, 32, 32)
    round_trips = [vae_round_trip(pipe.vae, c) for c in truth]
    assert round_trips[0].shape == truth[0].shape and not np.array_equal(round_trips[0], truth[0])
    expected = summarize(score_clips(prompts, [0], round_trips))
    assert result["summary"]["vae"]["color_accuracy"] == expected["color_accuracy"]
    assert "VAE round trip" in text
    assert result["config"]["num_inference_steps"] == 1 and result["config"]["stg_scale"] == 1.0
    assert (result["config"]["guidance_scale"], result["config"]["stg_blocks"]) == (2.0, [1])
    assert result["config"]["max_sequence_length"] == 16 and result["config"]["stg_mode"] == "block"
    assert set(result["ratios"]) == {"color_accuracy", "shape_accuracy", "count_accuracy", "motion_accuracy",
                                     "diversity"}
    sheet = load_video(out / "contact_sheet.gif")
    assert sheet.shape[0] == 5 and sheet.shape[1] > 2 * 64  # two rows of 64-px (upscaled) frames plus labels
    from PIL import Image

    assert Image.open(out / "contact_sheet.png").size[1] == sheet.shape[1]


def test_psnr():
    from videogen.evaluation.metrics import psnr

    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == 99.0
    b[0, 0, 0] = 255  # MSE = 255^2 / 48
    assert psnr(a, b) == pytest.approx(10 * np.log10(48))
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(a, np.zeros((4, 4), np.uint8))


def test_videogen_eval_i2v(tmp_path, capsys):
    """`videogen eval --task i2v` conditions on the rendered first frames and reports first-frame and VAE PSNR;
    a text-to-video model is refused for it."""
    from _tiny import tiny_i2v_pipeline_parts, tiny_pipeline_parts
    from pipelines import ImageToVideoPipeline, TextToVideoPipeline
    from videogen.cli import main
    from videogen.evaluation.metrics import psnr

    _, parts = tiny_i2v_pipeline_parts(tmp_path)
    ImageToVideoPipeline(**parts).save_pretrained(tmp_path / "i2v")
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tmp_path / "i2v"), "--prompts", "holdout", "--limit", "2", "--seeds", "1",
            "--steps", "1", "--height", "32", "--width", "32", "--num-frames", "5", "--out", str(out), "--no-progress"]
    assert main(args + ["--task", "i2v"]) == 0
    text = capsys.readouterr().out
    assert "first-frame PSNR vs image (dB)" in text and "VAE round-trip PSNR (dB)" in text
    result = json.loads((out / "eval.json").read_text())
    assert result["config"]["task"] == "i2v"
    records = result["records"]["model"]
    truth = ground_truth_clips([r["prompt"] for r in records], [0], 5, 32, 32)
    pipe = ImageToVideoPipeline.from_pretrained(tmp_path / "i2v")
    from videogen.evaluation.evaluate import vae_round_trip

    for record, clip in zip(records, truth):
        assert record["vae_psnr"] == pytest.approx(psnr(vae_round_trip(pipe.vae, clip[0]), clip[0]))
        assert 0 < record["first_frame_psnr"] < 99
    summary = result["summary"]["model"]
    assert summary["vae_psnr"] == pytest.approx(np.mean([r["vae_psnr"] for r in records]))
    _, t2v_parts = tiny_pipeline_parts(tmp_path / "t2v_parts")
    TextToVideoPipeline(**t2v_parts).save_pretrained(tmp_path / "t2v")
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "t2v"), *args[3:], "--task", "i2v"]) != 0
    assert "--task i2v needs an image-to-video pipeline" in capsys.readouterr().err


def test_swap_words_swaps_whole_words_at_once():
    from videogen.evaluation.sensitivity import SWAPS, swap_words

    assert swap_words("a red circle moving to the left", SWAPS["motion"]) == "a red circle moving to the right"
    assert swap_words("left right left", SWAPS["motion"]) == "right left right"  # simultaneous, not chained
    assert swap_words("a reddish upward blur", {**SWAPS["color"], **SWAPS["motion"]}) == "a reddish upward blur"
    assert swap_words("a red square", {}) == "a red square"


def test_caption_sensitivity_on_the_shipped_model(tmp_path, capsys):
    """The embedded default uses its colour words (swapping them raises the loss a lot) and the empty caption costs
    it too; variants share the noise, so their true-caption losses agree; the CLI writes the same figures."""
    from pathlib import Path

    from videogen.cli import main
    from videogen.loading import load_pipeline
    from videogen.evaluation.sensitivity import caption_sensitivity, ground_truth_latents

    model = Path(__file__).resolve().parent.parent / "checkpoints" / "shapes-t2v"
    pipe = load_pipeline(model)
    prompts = ["a red circle moving to the left on a gray background", "a blue square staying still on a gray background"]
    latents, captions = ground_truth_latents(pipe, prompts, [0])
    assert latents.shape == (2, 16, 5, 16, 16) and captions == prompts
    result = caption_sensitivity(pipe, latents, captions, sigmas=(0.7,))
    v = result["variants"]
    assert v["color"]["clips"] == 2 and v["motion"]["clips"] == 1 and v["shape"]["clips"] == 2
    assert v["color"]["true"] == v["shape"]["true"]  # same clips, same noise
    assert v["color"]["rise"][0] > 0.1 and v["empty"]["rise"][0] > 0.02
    assert caption_sensitivity(pipe, latents, captions, sigmas=(0.7,), swaps={"none": {"zebra": "horse"}})[
        "variants"]["none"] == dict(clips=0, loss=None, true=None, rise=None)
    with pytest.raises(ValueError, match="captions for"):
        caption_sensitivity(pipe, latents, captions[:1])
    import torch

    # The default is a text-and-image DiT: given the first image through its I2V channels (as trained), it predicts
    # the later frames better than from text alone; a condition of the wrong shape is refused.
    from videogen.conditioning.image import image_condition
    from videogen.evaluation.evaluate import ground_truth_clips

    first = torch.from_numpy(np.stack([c[0] for c in ground_truth_clips(prompts, [0])])).permute(0, 3, 1, 2)
    with torch.no_grad():
        condition = image_condition(pipe.vae, first.float() / 127.5 - 1, 17)
    given = caption_sensitivity(pipe, latents, captions, sigmas=(0.7,), clean_first_frame=True,
                                image_condition=condition)
    alone = caption_sensitivity(pipe, latents, captions, sigmas=(0.7,), clean_first_frame=True,
                                image_condition=torch.zeros_like(condition))
    assert given["first_frame"] == "image channels"
    assert given["variants"]["color"]["true"][0] < 0.95 * alone["variants"]["color"]["true"][0]
    with pytest.raises(ValueError, match="does not fit"):
        caption_sensitivity(pipe, latents, captions, image_condition=condition[:, :4])
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n")
    assert main(["eval", "--model", str(model), "--prompts", str(prompt_file), "--seeds", "1", "--sensitivity",
                 "--out", str(tmp_path / "out")]) == 0
    assert "caption sensitivity (all frames noised)" in capsys.readouterr().out
    written = json.loads((tmp_path / "out" / "sensitivity.json").read_text())
    assert set(written) == {"plain", "clean_first_frame"}
    assert written["clean_first_frame"]["first_frame"] == "image channels"
    assert written["plain"]["variants"]["color"]["rise"][1] == pytest.approx(v["color"]["rise"][0], rel=1e-4)


def test_videogen_eval_vae_reports_per_frame_psnr(tmp_path, capsys):
    """`videogen eval --task vae` round-trips the eval's ground truth through a VAE (a VAE directory or a
    pipeline's) and reports PSNR per frame index, computed here independently from the same clips."""
    from _tiny import tiny_pipeline_parts
    from pipelines import TextToVideoPipeline
    from videogen.cli import main
    from videogen.evaluation.evaluate import vae_round_trip
    from videogen.evaluation.metrics import psnr

    _, parts = tiny_pipeline_parts(tmp_path)
    TextToVideoPipeline(**parts).save_pretrained(tmp_path / "pipe")
    common = ["--prompts", "holdout", "--limit", "2", "--seeds", "2", "--height", "32", "--width", "32",
              "--num-frames", "5", "--no-progress"]
    assert main(["eval", "--task", "vae", "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "a"), *common]) == 0
    assert "VAE round trip over 4 clips" in capsys.readouterr().out
    assert main(["eval", "--task", "vae", "--model", str(tmp_path / "pipe" / "vae"), "--out", str(tmp_path / "b"),
                 *common]) == 0
    a = json.loads((tmp_path / "a" / "vae.json").read_text())
    b = json.loads((tmp_path / "b" / "vae.json").read_text())
    assert a["psnr_by_frame"] == b["psnr_by_frame"] and len(a["psnr_by_frame"]) == 5
    prompts = a["config"]["prompts"]
    clips = ground_truth_clips(prompts, [0, 1], 5, 32, 32)
    expected = np.mean([[psnr(r, c) for r, c in zip(vae_round_trip(parts["vae"], clip), clip)] for clip in clips], 0)
    assert np.allclose(a["psnr_by_frame"], expected, atol=1e-3)
    assert a["summary"]["mean_psnr"] == pytest.approx(float(np.mean(expected)), abs=1e-6)
