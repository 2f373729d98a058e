"""Diffusers-style pipelines built on videogen's models (text-to-video, image-to-video, camera, trajectory)."""

from pipelines.base import Conditions, VideoDiffusionPipeline, VideoPipelineOutput
from pipelines.camera_control import CameraControlPipeline
from pipelines.image_to_video import ImageToVideoPipeline
from pipelines.text_to_video import TextToVideoPipeline, make_scheduler
from pipelines.trajectory_control import TrajectoryControlPipeline

__all__ = [
    "CameraControlPipeline", "Conditions", "ImageToVideoPipeline", "TextToVideoPipeline", "TrajectoryControlPipeline",
    "VideoDiffusionPipeline", "VideoPipelineOutput", "make_scheduler",
]
