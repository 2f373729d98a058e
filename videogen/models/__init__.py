"""videogen's models: the causal video VAE and the video DiT."""

from videogen.models.transformer import VideoDiT, block_mask
from videogen.models.vae import CausalVideoVAE

__all__ = ["CausalVideoVAE", "VideoDiT", "block_mask"]
