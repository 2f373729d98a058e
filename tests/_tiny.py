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
