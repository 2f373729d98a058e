"""Training: accelerate-based trainer for the DiT (flow matching, full or LoRA) and the VAE."""
