"""`videogen personalize` end to end on a tiny pipeline: two stages, the identity basis frozen in stage 2, the
motion residual, prior preservation, and the bad inputs."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from _tiny import tiny_pipeline_parts
from pipelines import TextToVideoPipeline
from videogen.io import load_video, save_video


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    _, parts = tiny_pipeline_parts(path)
    TextToVideoPipeline(**parts).save_pretrained(path / "pipe")
    (path / "pipe" / "generation_config.json").write_text(json.dumps(
        dict(height=32, width=32, num_frames=5, steps=2, max_sequence_length=16, guidance_scale=3.0)))
    return path / "pipe"


def make_clips(folder, sizes=(32, 32, 48)):
    folder.mkdir()
    for i, size in enumerate(sizes):
        video = np.zeros((5, size, size, 3), np.uint8)
        for f in range(5):
            video[f, 8:16, 2 + 3 * f: 10 + 3 * f] = (230, 120, 20)  # an orange square moving right
        save_video(video, folder / f"c{i}.mp4", fps=8)
    return folder


def test_two_stages_identity_frozen_motion_residual_and_prior(base, tmp_path, capsys):
    from videogen.cli import main

    clips = make_clips(tmp_path / "clips")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="does not know 'zorp'"):
        assert main(["personalize", "--clips", str(clips), "--concept", "zorp", "--class-prompt", "a red square",
                     "-o", str(out), "--model", str(base), "--steps", "3,3", "--rank", "2",
                     "--prior-videos", "1"]) == 0
    text = capsys.readouterr().out
    assert "c2.mp4 is 48x48" in text  # the odd-sized clip is noted (and resized by the dataset)
    assert "3 of 3 clips have no caption naming 'zorp'" in text
    report = json.loads((out / "personalize.json").read_text())
    assert report["prior_videos"] == 1 and report["steps"] == [3, 3] and report["seconds"]["stage1"] > 0
    # stage 1's set: 4 frames of each clip (and of the prior video), each held still for the model's 5 frames
    stills = [json.loads(line) for line in (out / "work" / "still" / "manifest.jsonl").read_text().splitlines()]
    assert len(stills) == 4 * 4 and {r["caption"] for r in stills} == {"a video of zorp", "a red square"}
    still = load_video(out / "work" / "still" / stills[1]["video"]).astype(float)
    assert still.shape[0] == 5 and np.abs(still - still[:1]).max() < 8  # one frame, held (codec noise only)
    assert "num_frames: 5" in (out / "work" / "stage1" / "config.yaml").read_text()
    identity = load_file(str(out / "identity.safetensors"))
    motion = load_file(str(out / "motion.safetensors"))
    combined = load_file(str(out / "lora.safetensors"))
    a_keys = [k for k in identity if k.endswith("lora_A.weight")]
    b_keys = [k for k in identity if k.endswith("lora_B.weight")]
    assert a_keys and b_keys and set(identity) == set(motion) == set(combined)
    assert all(torch.equal(identity[k], combined[k]) for k in b_keys)  # stage 2 kept the identity basis
    assert all(torch.equal(motion[k], identity[k]) for k in b_keys)
    assert any(not torch.equal(identity[k], combined[k]) for k in a_keys)  # ... and trained a residual on A
    assert all(torch.allclose(combined[k] - identity[k], motion[k], atol=1e-6) for k in a_keys)
    # the LoRA loads into the pipeline and changes what the concept prompt generates
    pipe = TextToVideoPipeline.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt="a zorp moving left", height=32, width=32, num_frames=5, num_inference_steps=2,
                max_sequence_length=16, output_type="np")
    plain = pipe(**args, generator=torch.Generator().manual_seed(0)).frames
    pipe.load_lora_weights(str(out / "lora.safetensors"))
    assert np.abs(pipe(**args, generator=torch.Generator().manual_seed(0)).frames - plain).max() > 0


def test_text_and_image_base_with_prior(tmp_path):
    """On a text-and-image model (the embedded default's kind: ImageToVideoPipeline, image_optional) the prior
    videos are generated from the class prompt alone and both stages train with the I2V condition."""
    from _tiny import tiny_i2v_pipeline_parts
    from pipelines import ImageToVideoPipeline
    from videogen.io import load_video
    from videogen.training.personalize import personalize

    _, parts = tiny_i2v_pipeline_parts(tmp_path)
    ImageToVideoPipeline(**parts, image_optional=True).save_pretrained(tmp_path / "joint")
    (tmp_path / "joint" / "generation_config.json").write_text(json.dumps(
        dict(height=32, width=32, num_frames=5, steps=2, max_sequence_length=16, guidance_scale=3.0)))
    with pytest.warns(UserWarning, match="does not know 'zorp'"):
        report = personalize(make_clips(tmp_path / "clips", (32, 32)), "zorp", tmp_path / "out",
                             model=tmp_path / "joint", class_prompt="a red square", steps=(2, 2), rank=2,
                             prior_videos=1, identity_frames="single", progress=False)
    prior = load_video(tmp_path / "out" / "work" / "data" / "prior000.mp4")
    assert prior.shape == (5, 32, 32, 3) and report["prior_videos"] == 1 and report["blank_prior_videos"] == 0
    assert report["image_dropout"] == {"stage1": 1.0, "stage2": 0.5}  # stage 1 text-only: a frame is its own answer
    for stage, dropout, frames in (("stage1", 1.0, 1), ("stage2", 0.5, 5)):  # "single": one-frame samples
        saved = (tmp_path / "out" / "work" / stage / "config.yaml").read_text()
        assert f"image_dropout: {dropout}" in saved and f"num_frames: {frames}" in saved
    assert not (tmp_path / "out" / "work" / "still").exists()
    assert report["final_loss"]["stage1"] is not None and report["final_loss"]["stage2"] is not None


def test_blank_prior_videos_are_caught():
    """A class prompt the base model draws nothing for (the embedded default, asked for a colourless square) gives
    blank prior videos: `is_blank` tells them from a clip with one small object, codec noise included."""
    from videogen.training.personalize import is_blank

    rng = np.random.default_rng(0)
    empty = np.clip(32 + rng.normal(0, 1.5, (17, 64, 64, 3)), 0, 255)
    one = empty.copy()
    one[:, 20:30, 20:30] = (128, 0, 255)
    assert is_blank(empty) and not is_blank(one)


def test_bad_inputs(base, tmp_path):
    from videogen.training.personalize import check_concept_word, personalize

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no clips in"):
        personalize(tmp_path / "empty", "zorp", tmp_path / "o", model=base)
    with pytest.raises(FileNotFoundError):
        personalize(tmp_path / "nope", "zorp", tmp_path / "o", model=base)
    with pytest.raises(ValueError, match="identity_frames must be"):
        personalize(tmp_path / "empty", "zorp", tmp_path / "o", model=base, identity_frames="video")
    with pytest.raises(ValueError, match="one word"):
        personalize(tmp_path / "empty", "two words", tmp_path / "o", model=base)
    pipe = TextToVideoPipeline.from_pretrained(base)
    with pytest.warns(UserWarning, match="already knows 'red'"):
        check_concept_word(pipe.tokenizer, "red")


def test_concept_clips_prompts_and_eval(base, tmp_path, capsys):
    """The shapes world's new concept: clips of a colour no training clip has, scored 100 % by the concept metric
    (against a palette with the concept colours); the training samplers never draw it; `videogen eval --task
    concept` scores the held-out concept prompts."""
    from videogen.cli import main
    from videogen.data.synthetic import CONCEPT_COLORS, sample_clip_spec
    from videogen.evaluation.concept import concept_prompts, concept_scores, write_concept_clips
    from videogen.io import load_video

    paths = write_concept_clips(tmp_path / "zorp", "orange", "square", num=4)
    assert not any(p.with_suffix(".txt").exists() for p in paths)
    captioned = write_concept_clips(tmp_path / "captioned", "orange", "square", num=2, concept="zorp")
    assert [p.with_suffix(".txt").read_text().strip() for p in captioned] == [
        "a zorp moving to the left on a black background", "a zorp moving to the right on a black background"]
    scores = concept_scores([load_video(p) for p in paths], "orange", "square")
    assert scores["color_accuracy"] == 100.0 and scores["shape_accuracy"] == 100.0
    # the clips move left, right, left, right: scored against prompts of up / right / left / still
    moved = concept_scores([load_video(p) for p in paths], "orange", motions=["up", "right", "left", "still"])
    assert moved["motion_accuracy"] == 50.0 and moved["clip_motion"] == 100.0
    rng = np.random.default_rng(0)
    drawn = {o.color for _ in range(300) for o in sample_clip_spec(rng).objects}
    assert drawn and not drawn & set(CONCEPT_COLORS)
    prompts = concept_prompts("zorp")
    assert all("zorp" in p for p in prompts) and not any("left" in p or "right" in p for p in prompts)
    assert sum("black" in p for p in prompts) == 3 and sum("white" in p or "gray" in p for p in prompts) == 6
    assert main(["eval", "--task", "concept", "--concept", "zorp", "--model", str(base), "--seeds", "1", "--steps",
                 "1", "--height", "32", "--width", "32", "--num-frames", "5", "--no-progress",
                 "--out", str(tmp_path / "e")]) == 0
    result = json.loads((tmp_path / "e" / "concept.json").read_text())
    assert result["n"] == len(prompts) and 0.0 <= result["color_accuracy"] <= 100.0
    assert len(result["directions"]) == len(prompts) and 0.0 <= result["motion_accuracy"] <= 100.0
    both = (3 * result["color_accuracy_clip_background"] + 6 * result["color_accuracy_new_background"]) / 9
    assert abs(both - result["color_accuracy"]) < 1e-9
    assert "concept 'zorp'" in capsys.readouterr().out
