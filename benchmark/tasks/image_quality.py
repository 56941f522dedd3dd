"""Image quality only: PSNR, SSIM and FR loss over a face set (the runner computes them all)."""
from __future__ import annotations

from benchmark.registry import TASKS
from benchmark.contracts.task import SelectionTask


@TASKS.register("image-quality", summary="PSNR, SSIM and FR loss per image, with their distributions")
class ImageQuality(SelectionTask):
    """Options: ``selection`` / ``selection_args`` (the dataset reader's method giving the
    FaceSet). The runner stores per-image ``psnr``, ``ssim`` and ``fr_loss``: the arrays the
    cumulative score distribution (CSD) plots read."""

    def score_level(self, hr_emb, emb):
        return {}, {}
