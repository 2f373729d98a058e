"""ImageToVideoPipeline against diffusers' WanImageToVideoPipeline (no image tokens, CLIP tokens, first-last frame),
plus the image conditioning functions, batching, guidance, loading and input checks."""

import warnings

import diffusers.pipelines.wan.pipeline_wan as wan_t2v
import diffusers.pipelines.wan.pipeline_wan_i2v as wan_i2v
import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline
from PIL import Image

from _oracle import max_abs_diff
from _tiny import tiny_i2v_pipeline_parts, tiny_pipeline_parts
from pipelines import ImageToVideoPipeline, TextToVideoPipeline
from videogen.conditioning.image import fit_image, frame_mask, image_condition, load_image
from videogen.guidance import CFG, STG, Guidance

ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=3, guidance_scale=4.0)
CASES = {"plain": (False, False), "image_tokens": (True, False), "first_last": (True, True)}


def random_image(seed, height=32, width=48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module", autouse=True)
def _oracle_prompt_cleaning():
    """diffusers' I2V pipeline calls ftfy unconditionally (not installed here); give it WanPipeline's cleaning,
    which is the same text normalisation with ftfy optional, and is what ours uses."""
    saved = wan_i2v.prompt_clean
    wan_i2v.prompt_clean = wan_t2v.prompt_clean
    yield
    wan_i2v.prompt_clean = saved


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    """case name -> (diffusers reference, ours), built once per module."""
    built = {}

    def get(case):
        if case not in built:
            ref, ours = tiny_i2v_pipeline_parts(tmp_path_factory.mktemp(case), *CASES[case])
            pair = WanImageToVideoPipeline(**ref), ImageToVideoPipeline(**ours)
            for p in pair:
                p.set_progress_bar_config(disable=True)
            built[case] = pair
        return built[case]

    return get


def run(pipe, **kw):
    return pipe(**{**ARGS, **kw}, generator=torch.Generator().manual_seed(0)).frames


def as_tensor(frames):
    return torch.as_tensor(np.asarray(frames))


# ----------------------------------------------------------------------------------------------
# Conditioning functions
# ----------------------------------------------------------------------------------------------


def diffusers_mask(num_frames, temporal_factor, last):
    """The lines of WanImageToVideoPipeline.prepare_latents that build ``mask_lat_size`` (batch 1, 1x1 latents)."""
    batch_size, latent_height, latent_width = 1, 1, 1
    mask_lat_size = torch.ones(batch_size, 1, num_frames, latent_height, latent_width)
    if not last:
        mask_lat_size[:, :, list(range(1, num_frames))] = 0
    else:
        mask_lat_size[:, :, list(range(1, num_frames - 1))] = 0
    first_frame_mask = mask_lat_size[:, :, 0:1]
    first_frame_mask = torch.repeat_interleave(first_frame_mask, dim=2, repeats=temporal_factor)
    mask_lat_size = torch.concat([first_frame_mask, mask_lat_size[:, :, 1:, :]], dim=2)
    mask_lat_size = mask_lat_size.view(batch_size, -1, temporal_factor, latent_height, latent_width)
    return mask_lat_size.transpose(1, 2)[0, :, :, 0, 0]


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("num_frames, temporal_factor", [(1, 4), (5, 4), (9, 4), (21, 4), (81, 4), (7, 2)])
def test_frame_mask_matches_diffusers(num_frames, temporal_factor, last):
    mask = frame_mask(num_frames, temporal_factor, last)
    assert mask.shape == (temporal_factor, (num_frames - 1) // temporal_factor + 1)
    assert torch.equal(mask, diffusers_mask(num_frames, temporal_factor, last))


def test_frame_mask_values():
    assert frame_mask(9).tolist() == [[1, 0, 0]] * 4
    assert frame_mask(9, last=True).tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 1]]


def test_fit_image_policy():
    exact = torch.rand(3, 32, 48)
    assert fit_image(exact, 32, 48) is exact
    # Wide: left half dark, right half bright; the target is square, so the sides are cut and the centre stays.
    wide = torch.full((3, 64, 192), 0.2)
    wide[:, :, 96:] = 0.8
    out = fit_image(wide, 32, 32)  # scale 0.5 -> 32x96 -> columns 32..64
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out[:, :, :14], torch.tensor(0.2), atol=1e-5)
    assert torch.allclose(out[:, :, 18:], torch.tensor(0.8), atol=1e-5)
    # Tall: the top and bottom are cut.
    tall = torch.zeros(3, 96, 32)
    tall[:, :48] = 1.0
    out = fit_image(tall, 32, 32)
    assert out.shape == (3, 32, 32) and 0 <= out.min() and out.max() <= 1  # bicubic overshoot is clamped
    assert (out[:, :14] == 1).all() and (out[:, 18:] == 0).all()
    # Same aspect ratio: a plain resize.
    image = torch.rand(3, 64, 96)
    expected = torch.nn.functional.interpolate(image[None], size=(32, 48), mode="bicubic", antialias=True)[0]
    assert torch.allclose(fit_image(image, 32, 48), expected.clamp(0, 1))
    # Not a multiple: the cover size is rounded, never below the target.
    assert fit_image(torch.rand(3, 37, 53), 32, 48).shape == (3, 32, 48)


def test_fit_image_warns_when_upscaling_a_small_image():
    with pytest.warns(UserWarning, match="10x12 is much smaller than the 32x48 video; it will be upscaled"):
        assert fit_image(torch.rand(3, 10, 12), 32, 48).shape == (3, 32, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_image(torch.rand(3, 20, 30), 32, 48)  # not much smaller: no warning


def test_load_image_sources(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    Image.fromarray(array).save(tmp_path / "frame.png")
    rgba = Image.fromarray(np.concatenate([array, np.full((20, 30, 1), 7, np.uint8)], axis=-1), mode="RGBA")
    sources = [tmp_path / "frame.png", str(tmp_path / "frame.png"), Image.fromarray(array), rgba, array,
               array.astype(np.float64) / 255, expected, expected[None]]
    for source in sources:
        got = load_image(source)
        assert got.dtype == torch.float32 and got.shape == (3, 20, 30)
        assert max_abs_diff(got, expected) <= 1e-6, type(source)
    assert load_image(Image.fromarray(array).convert("L")).shape == (3, 20, 30)  # grey PIL -> RGB


@pytest.mark.parametrize(
    "source, message",
    [
        (np.zeros((20, 30, 4), np.uint8), "the image has 4 channel(s); 3 (RGB) are needed"),
        (torch.zeros(1, 20, 30), "the image has 1 channel(s); 3 (RGB) are needed"),
        (np.zeros((20, 30), np.uint8), "2-D (grayscale)"),
        (np.full((20, 30, 3), 255.0), "values must lie in [0, 1]"),
        (torch.full((3, 20, 30), -1.0), "values must lie in [0, 1]"),
        (42, "cannot use a int as an image"),
    ],
)
def test_load_image_errors(source, message):
    with pytest.raises(ValueError) as err:
        load_image(source)
    assert message in str(err.value)


def test_load_image_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read image .*missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image .*notes.png"):
        load_image(str(tmp_path / "notes.png"))


def test_image_condition_layout(pipes):
    _, ours = pipes("plain")
    images = torch.rand(2, 3, 32, 48) * 2 - 1
    cond = image_condition(ours.vae, images, 9)
    assert cond.shape == (2, 4 + 4, 3, 4, 6) and cond.dtype == torch.float32
    assert torch.equal(cond[:, :4], frame_mask(9)[None, :, :, None, None].expand(2, -1, -1, 4, 6))
    video = torch.cat([images[:, :, None], torch.zeros(2, 3, 8, 32, 48)], dim=2)
    latents = ours.vae.normalize_latents(ours.vae.encode(video).latent_dist.mode())
    assert torch.equal(cond[:, 4:], latents)
    last = image_condition(ours.vae, images, 9, last_images=images.flip(0))
    assert torch.equal(last[:, :4, :, 0, 0], frame_mask(9, last=True).expand(2, -1, -1))
    assert max_abs_diff(last[:, 4:, -1], cond[:, 4:, -1]) > 1e-3  # the last latent frame sees the last image


# ----------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_type", ["latent", "np"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_wan_i2v_pipeline(pipes, case, output_type):
    ref, ours = pipes(case)
    kw = dict(image=random_image(1), prompt="a red circle moving left", negative_prompt="green",
              output_type=output_type)
    if case == "first_last":
        kw["last_image"] = random_image(2)
    expected, got = as_tensor(run(ref, **kw)), as_tensor(run(ours, **kw))
    assert got.shape == ((1, 4, 3, 4, 6) if output_type == "latent" else (1, 9, 32, 48, 3))
    assert max_abs_diff(got, expected) <= 1e-5
    if output_type == "latent":  # the image really conditions the result (so the comparison means something)
        other = as_tensor(run(ours, **{**kw, "image": random_image(3)}))
        assert max_abs_diff(other, got) > 1e-3


def test_plain_model_with_last_image_matches_diffusers(pipes):
    ref, ours = pipes("plain")
    kw = dict(image=random_image(1), last_image=random_image(2), prompt="a blue square", output_type="latent")
    assert max_abs_diff(as_tensor(run(ours, **kw)), as_tensor(run(ref, **kw))) <= 1e-5


def test_precomputed_image_embeds_equal_the_encoder(pipes):
    _, ours = pipes("first_last")
    first, last = random_image(1), random_image(2)
    embeds = ours.encode_image([first, last])
    assert embeds.shape == (2, 17, 16)
    kw = dict(image=first, last_image=last, prompt="a red circle", output_type="latent")
    assert torch.equal(run(ours, image_embeds=embeds, **kw), run(ours, **kw))


def test_image_of_another_size_is_fitted(pipes):
    _, ours = pipes("plain")
    big = torch.rand(3, 80, 80)
    kw = dict(prompt="a red circle", output_type="latent")
    assert torch.equal(run(ours, image=big, **kw), run(ours, image=fit_image(big, 32, 48), **kw))


# ----------------------------------------------------------------------------------------------
# Batches and guidance
# ----------------------------------------------------------------------------------------------


def test_batch_of_prompts_and_images(pipes):
    """2 prompts x 2 images x 2 videos each: video k of prompt i equals prompt i run alone with the same noise
    (conditions and image tokens go to the right videos); batched guidance equals sequential."""
    _, ours = pipes("image_tokens")
    prompts, images = ["a red circle", "a blue square moving up"], [random_image(1), random_image(2)]
    seeds = [10, 11, 12, 13]
    gens = lambda ss: [torch.Generator().manual_seed(s) for s in ss]  # noqa: E731
    kw = dict(ARGS, num_videos_per_prompt=2, output_type="latent")
    batch = ours(image=images, prompt=prompts, generator=gens(seeds), **kw).frames
    assert batch.shape == (4, 4, 3, 4, 6)
    for i in range(2):
        alone = ours(image=images[i], prompt=prompts[i], generator=gens(seeds[2 * i : 2 * i + 2]), **kw).frames
        assert max_abs_diff(batch[2 * i : 2 * i + 2], alone) <= 1e-5
    sequential = ours(image=images, prompt=prompts, generator=gens(seeds), batch_guidance=False, **kw).frames
    assert max_abs_diff(batch, sequential) <= 1e-5
    shared = ours(image=images[0], prompt=prompts, generator=gens(seeds), **kw).frames  # one image for all
    assert max_abs_diff(shared[:2], batch[:2]) <= 1e-5 and max_abs_diff(shared[2:], batch[2:]) > 1e-3


def test_stg_guidance_runs_and_differs_from_cfg(pipes):
    _, ours = pipes("image_tokens")
    kw = dict(image=random_image(1), prompt="a red circle", output_type="latent")
    cfg = run(ours, guidance=Guidance(CFG(5.0)), **kw)
    stg = run(ours, guidance=Guidance(CFG(5.0), STG(1.0, blocks=[1])), **kw)
    assert torch.isfinite(stg).all() and max_abs_diff(stg, cfg) > 1e-4


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["plain", "image_tokens"])
def test_save_and_load_our_layout(pipes, case, tmp_path):
    _, ours = pipes(case)
    ours.save_pretrained(tmp_path / "pipe")
    again = ImageToVideoPipeline.from_pretrained(tmp_path / "pipe")
    again.set_progress_bar_config(disable=True)
    assert (again.image_encoder is None) == (case == "plain")
    kw = dict(image=random_image(1), prompt="a red circle", output_type="latent")
    assert torch.equal(run(again, **kw), run(ours, **kw))


def test_from_wan_diffusers_directory(pipes, tmp_path):
    ref, _ = pipes("first_last")
    ref.save_pretrained(tmp_path / "wan")
    loaded = ImageToVideoPipeline.from_wan(tmp_path / "wan")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.transformer.config.pos_embed_seq_len == 34 and loaded.image_encoder is not None
    kw = dict(image=random_image(1), last_image=random_image(2), prompt="a red circle moving left",
              output_type="latent")
    assert max_abs_diff(as_tensor(run(loaded, **kw)), as_tensor(run(ref, **kw))) <= 1e-5
    with pytest.raises(ValueError, match="holds a WanImageToVideoPipeline; load it with ImageToVideoPipeline"):
        TextToVideoPipeline.from_wan(tmp_path / "wan")


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def test_errors_come_before_any_model_runs(pipes, tmp_path, monkeypatch):
    _, ours = pipes("image_tokens")

    def boom(*args, **kwargs):
        raise AssertionError("a model ran before the inputs were checked")

    for module in (ours.vae, ours.text_encoder, ours.image_encoder, ours.transformer):
        monkeypatch.setattr(module, "forward", boom)
    monkeypatch.setattr(ours.vae, "encode", boom)
    image = random_image(1)
    cases = [
        (dict(), "ImageToVideoPipeline needs an image"),
        (dict(image=[image] * 3), "image is a list of 3 images but there are 1 prompts"),
        (dict(image=image, last_image=image), "a last_image needs a first-last-frame model"),
        (dict(image=image, num_frames=8), "num_frames must be 1 + 4k"),
        (dict(image=image, image_embeds=torch.zeros(1, 17, 5)), "image_embeds must be [N, L, image_dim=16]"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError) as err:
            run(ours, prompt="a red circle", **kw)
        assert message in str(err.value)
    saved = ours.image_encoder
    ours.image_encoder = None
    try:
        with pytest.raises(ValueError, match="no image_encoder / image_processor: add them .* or pass image_embeds"):
            run(ours, prompt="a red circle", image=image)
    finally:
        ours.image_encoder = saved


def test_first_last_model_needs_last_image(pipes):
    _, ours = pipes("first_last")
    with pytest.raises(ValueError, match="first-last-frame model .*: pass last_image too"):
        run(ours, prompt="a red circle", image=random_image(1))


def test_wrong_model_for_the_pipeline(pipes, tmp_path):
    _, t2v_parts = tiny_pipeline_parts(tmp_path)
    with pytest.raises(ValueError, match="is a text-to-video model .*; use TextToVideoPipeline"):
        run(ImageToVideoPipeline(**t2v_parts), prompt="a red circle", image=random_image(1))
    _, ours = pipes("plain")
    t2v = TextToVideoPipeline(ours.tokenizer, ours.text_encoder, ours.transformer, ours.vae, ours.scheduler)
    with pytest.raises(ValueError, match="is an image-to-video model .*; use ImageToVideoPipeline"):
        run(t2v, prompt="a red circle")
