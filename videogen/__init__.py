"""videogen: a latent video diffusion toolkit (causal 3D VAE, spatiotemporal DiT, adapters, guidance, pipelines)."""

__version__ = "0.1.0"

_LAZY = {"VideoDiT": "videogen.models.transformer", "CausalVideoVAE": "videogen.models.vae",
         "CameraControlNet": "videogen.models.adapters.camera"}


def __getattr__(name):
    # Lazy, so `import videogen` stays light; diffusers' pipeline loader resolves components as videogen.<Class>.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'videogen' has no attribute {name!r}")
