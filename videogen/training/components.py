"""Building the models a training run needs: from a pretrained pipeline directory or from configs, including a
word-level tokenizer trained on the dataset's captions and a T5 encoder built from a config."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Optional

import torch


def train_tokenizer(captions: Iterable[str], vocab_size: int = 512, max_length: int = 64):
    """A word-level tokenizer trained with ``tokenizers`` on ``captions`` (T5-style specials: pad=0, eos=1,
    unk=2, ``</s>`` appended), wrapped as a transformers ``PreTrainedTokenizerFast`` so it saves/loads there."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"])
    tok.train_from_iterator(list(captions), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


def build_text_encoder(config: dict, vocab_size: int):
    """A transformers ``T5EncoderModel`` from config kwargs (e.g. ``d_model``, ``num_layers``, ``num_heads``)."""
    from transformers import T5Config, T5EncoderModel

    kwargs = {"d_kv": config.get("d_model", 64) // config.get("num_heads", 4), **config, "vocab_size": vocab_size}
    return T5EncoderModel(T5Config(**kwargs))


def build_vae(spec):
    """A ``CausalVideoVAE`` from a path (any layout ``from_wan`` reads) or from constructor kwargs."""
    from videogen.models import CausalVideoVAE

    if isinstance(spec, (str, Path)):
        return CausalVideoVAE.from_wan(spec)
    return CausalVideoVAE(**(spec or {}))


def build_components(cfg: dict, captions: Optional[Iterable[str]] = None) -> dict:
    """``tokenizer``, ``text_encoder``, ``transformer``, ``vae``, ``scheduler`` for a run, from
    ``model.pretrained`` or from the per-component configs (the tokenizer is trained on ``captions``)."""
    from pipelines import make_scheduler
    from videogen.models import VideoDiT

    m = cfg["model"]
    if m["pretrained"]:
        from pipelines.image_to_video import load_base_pipeline

        pipe = load_base_pipeline(m["pretrained"])  # ours, or a diffusers-format Wan2.1 T2V / I2V directory
        parts = dict(pipe.components)
        ignored = [k for k in ("transformer", "text_encoder") if m.get(k)]
        if ignored:
            warnings.warn(f"model.pretrained is set, so model.{' and model.'.join(ignored)} config is ignored")
        if m.get("vae") is not None:  # swap in another VAE (a path, or kwargs for a fresh one)
            parts["vae"] = build_vae(m["vae"])
        return parts
    vae = build_vae(m["vae"])
    if cfg["task"] == "vae":  # the VAE trains alone
        return dict(tokenizer=None, text_encoder=None, transformer=None, vae=vae, scheduler=None)
    if m["text_encoder"] is None:
        raise ValueError("model.text_encoder (T5 config kwargs) is needed when model.pretrained is not set")
    tokenizer = train_tokenizer(captions or [], m["tokenizer"].get("vocab_size", 512),
                                cfg["data"]["max_sequence_length"])
    text_encoder = build_text_encoder(m["text_encoder"], len(tokenizer))
    transformer = None
    if cfg["task"] == "dit":
        if m["transformer"] is None:
            raise ValueError("model.transformer (VideoDiT kwargs) is needed when model.pretrained is not set")
        z = vae.config.z_dim
        kwargs = {"in_channels": z, "out_channels": z, "text_dim": text_encoder.config.d_model, **m["transformer"]}
        torch.manual_seed(cfg["seed"])
        transformer = VideoDiT(**kwargs)
    sched = m["scheduler"] or {}
    scheduler = make_scheduler(sched.get("name", "unipc"), flow_shift=sched.get("flow_shift", 3.0))
    return dict(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler)


def widen_input_channels(transformer, in_channels: int):
    """Give ``transformer`` (a ``VideoDiT``) ``in_channels`` input channels in place, the new ones after the old and
    zero-initialised: the widened model computes exactly what it did on its old channels. Returns it."""
    old = transformer.patch_embedding
    if in_channels < old.in_channels:
        raise ValueError(f"can only widen: the transformer already has {old.in_channels} > {in_channels} channels")
    if in_channels == old.in_channels:
        return transformer
    new = torch.nn.Conv3d(in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride).to(
        device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    transformer.patch_embedding = new
    transformer.register_to_config(in_channels=in_channels)
    return transformer

