"""Adapters that steer a VideoDiT through its explicit inputs: camera (``block_residuals``), trajectory
(``block_modulations``)."""

from videogen.models.adapters.camera import CameraControlNet
from videogen.models.adapters.trajectory import TrajectoryAdapter

__all__ = ["CameraControlNet", "TrajectoryAdapter"]
