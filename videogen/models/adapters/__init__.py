"""Adapters that steer a VideoDiT through its explicit inputs: camera (``block_residuals``), trajectory."""

from videogen.models.adapters.camera import CameraControlNet

__all__ = ["CameraControlNet"]
