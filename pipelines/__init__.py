"""Diffusers-style pipelines built on videogen's models (text-to-video, image-to-video, camera, trajectory)."""
