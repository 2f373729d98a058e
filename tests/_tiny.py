"""Tiny random-weight components (diffusers reference + ours from the same weights) for pipeline tests."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from _oracle import perturb_parameters
from pipelines import make_scheduler
from videogen.models import CausalVideoVAE, VideoDiT

WORDS = "a an the red green blue yellow white black circle square triangle moving left right up down on background".split()

TINY_VAE = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True],
                latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.8, 1.2, 2.0])
TINY_DIT = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                text_dim=16, freq_dim=32, ffn_dim=32, num_layers=3, rope_max_seq_len=32)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built locally (T5-style: pad=0, eos=1, unk=2, '</s>' appended)."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_text_encoder() -> UMT5EncoderModel:
    """A 2-layer UMT5 encoder from a config (16-d states)."""
    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=len(WORDS) + 3, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                     relative_attention_num_buckets=8, relative_attention_max_distance=16)
    return UMT5EncoderModel(cfg).eval()


def tiny_reference_models():
    """Perturbed diffusers VAE and DiT."""
    torch.manual_seed(0)
    vae = perturb_parameters(AutoencoderKLWan(**TINY_VAE), seed=1).eval()
    torch.manual_seed(0)
    dit = perturb_parameters(WanTransformer3DModel(**TINY_DIT), seed=2).eval()
    return vae, dit


def tiny_pipeline_parts(tmp_path):
    """(reference components dict, our components dict) sharing every weight."""
    vae, dit = tiny_reference_models()
    vae.save_pretrained(tmp_path / "vae")
    dit.save_pretrained(tmp_path / "transformer")
    tokenizer, encoder = tiny_tokenizer(), tiny_text_encoder()
    ref = dict(tokenizer=tokenizer, text_encoder=encoder, vae=vae, transformer=dit, scheduler=make_scheduler("unipc"))
    ours = dict(tokenizer=tokenizer, text_encoder=encoder, vae=CausalVideoVAE.from_wan(tmp_path / "vae"),
                transformer=VideoDiT.from_wan(tmp_path / "transformer"), scheduler=make_scheduler("unipc"))
    return ref, ours


CLIP_TOKENS = 17  # (32 / 8)^2 patches + the class token


def tiny_image_encoder():
    """A 2-layer CLIP vision tower (16-d, 32x32 input, patch 8) and its processor, both from configs."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    encoder = perturb_parameters(CLIPVisionModel(cfg), seed=3).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return encoder, processor


def tiny_i2v_pipeline_parts(tmp_path, image_tokens: bool = False, first_last: bool = False):
    """(reference, ours) component dicts for image-to-video: a DiT taking ``noise || mask || image latents``
    (in_channels 2*4 + 4), with CLIP image cross-attention when ``image_tokens`` (and learned positions for
    first-last-frame pairs when ``first_last``)."""
    ref, ours = tiny_pipeline_parts(tmp_path)
    cfg = dict(TINY_DIT, in_channels=2 * TINY_VAE["z_dim"] + 4)
    if image_tokens:
        cfg.update(image_dim=16, added_kv_proj_dim=TINY_DIT["num_attention_heads"] * TINY_DIT["attention_head_dim"])
        if first_last:
            cfg.update(pos_embed_seq_len=2 * CLIP_TOKENS)
    torch.manual_seed(0)
    dit = perturb_parameters(WanTransformer3DModel(**cfg), seed=4).eval()
    dit.save_pretrained(tmp_path / "transformer_i2v")
    ref["transformer"], ours["transformer"] = dit, VideoDiT.from_wan(tmp_path / "transformer_i2v")
    if image_tokens:
        encoder, processor = tiny_image_encoder()
        for parts in (ref, ours):
            parts.update(image_encoder=encoder, image_processor=processor)
    return ref, ours
