"""Shapes-world evaluation: image-analysis metrics (``metrics``) and the ``videogen eval`` runner (``evaluate``)."""
