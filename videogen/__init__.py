"""videogen: a latent video diffusion toolkit (causal 3D VAE, spatiotemporal DiT, adapters, guidance, pipelines)."""

__version__ = "0.1.0"
