"""Text conditioning: prompts -> encoder states, Wan style (real tokens kept, the rest zero-padded)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def clean_prompt(text: str) -> str:
    """Normalise a prompt as Wan does (ftfy when installed, HTML unescape, collapsed whitespace)."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    return prompt_clean(text)


def encode_prompts(
    tokenizer,
    text_encoder,
    prompts: Sequence[str],
    max_sequence_length: int = 512,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Encode prompts to ``[len(prompts), max_sequence_length, hidden]`` with any transformers encoder.

    Tokens are padded/truncated to ``max_sequence_length``; the encoder sees the attention mask; the states of
    padding positions are then set to exactly zero, which is what Wan's DiT was trained with. Gradients flow
    when enabled (training the text encoder); pipelines call it under ``torch.no_grad``.
    """
    tokens = tokenizer(
        [clean_prompt(p) for p in prompts],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    encoder_device = next(text_encoder.parameters()).device
    states = text_encoder(tokens.input_ids.to(encoder_device), tokens.attention_mask.to(encoder_device)).last_hidden_state
    states = states.to(device=device or encoder_device, dtype=dtype or states.dtype)
    keep = tokens.attention_mask.to(states.device).gt(0)
    # Wan keeps the real tokens, then pads with zeros (the mask is contiguous from the left for these tokenizers).
    lengths = keep.sum(dim=1)
    positions = torch.arange(states.shape[1], device=states.device)
    return torch.where((positions[None, :] < lengths[:, None])[..., None], states, torch.zeros_like(states))
