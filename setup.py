"""Build script: the metadata is in setup.cfg; this lists the packages, the embedded checkpoints among them."""

from setuptools import find_packages, setup

# checkpoints/ (the embedded default models) is shipped as the data-only package videogen.checkpoints
# (package_dir in setup.cfg), so every install mode has the default model.
setup(packages=find_packages(include=["videogen", "videogen.*", "pipelines", "pipelines.*"]) + ["videogen.checkpoints"])
