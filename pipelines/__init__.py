"""Diffusers-style pipelines built on videogen's models (text-to-video, image-to-video, camera, trajectory)."""

from pipelines.base import Conditions, VideoDiffusionPipeline, VideoPipelineOutput
from pipelines.image_to_video import ImageToVideoPipeline
from pipelines.text_to_video import TextToVideoPipeline, make_scheduler

__all__ = [
    "Conditions", "ImageToVideoPipeline", "TextToVideoPipeline", "VideoDiffusionPipeline", "VideoPipelineOutput",
    "make_scheduler",
]
