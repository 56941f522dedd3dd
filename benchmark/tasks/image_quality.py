"""Image quality only: PSNR, SSIM and FR loss over a face set (the runner computes them all)."""
from __future__ import annotations

from ..registry import TASKS
from .base import Task, selected


@TASKS.register("image-quality", summary="PSNR, SSIM and FR loss per image, with their distributions")
class ImageQuality(Task):
    """Options: ``selection`` / ``selection_args`` (the dataset reader's method giving the
    FaceSet). The runner stores per-image ``psnr``, ``ssim`` and ``fr_loss``: the arrays the
    cumulative score distribution (CSD) plots read."""

    OPTIONS = {"selection": "all_faces", "selection_args": {}}

    def __init__(self, protocol, data_root):
        super().__init__(protocol, data_root)
        self._faces = selected(self, "selection")

    def faces(self):
        return self._faces

    def score_level(self, hr_emb, emb):
        return {}, {}
