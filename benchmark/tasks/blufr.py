"""LFW BLUFR (Liao et al. 2014): verification rate and open-set identification over 10 trials."""
from __future__ import annotations

from benchmark.metrics.openset import blufr_trials
from benchmark.registry import TASKS
from benchmark.contracts.task import Task


@TASKS.register("blufr", summary="BLUFR: VR at a FAR over all test pairs, DIR at rank 1 open-set (10 trials)")
class Blufr(Task):
    """Options: ``config`` (the BLUFR .mat file beside the dataset's images), ``vr_far`` and
    ``dir_far`` (the reported operating points). Every face is degraded and super-resolved:
    gallery, probes and test pairs are all SR faces.

    Metrics: ``vr``/``dir`` (mean over trials), ``vr_std``/``dir_std`` (std over trials,
    ddof=1), ``vr_lower``/``dir_lower`` (mean - std, what the BLUFR authors ask to report).
    Arrays: per-trial values and the VR-FAR and DIR-FAR curves (trials x FARs) for plotting."""

    OPTIONS = {"config": "blufr_lfw_config.mat", "vr_far": 0.001, "dir_far": 0.01}

    def __init__(self, protocol, data_root):
        super().__init__(protocol, data_root)
        self._faces, self.config = self.dataset.blufr(self.options["config"])

    def faces(self):
        return self._faces

    def score_level(self, hr_emb, emb):
        r = blufr_trials(emb, self.config.labels, self.config, vr_fars=(self.options["vr_far"],),
                         dir_fars=(self.options["dir_far"],), device=self.scoring_device)
        metrics = {}
        for name, summary in (("vr", r.vr_summary), ("dir", r.dir_summary)):
            metrics.update({name: float(summary.mean[0]), f"{name}_std": float(summary.std[0]),
                            f"{name}_lower": float(summary.mean_minus_std[0])})
        arrays = {"vr_trials": r.vr[:, 0], "dir_trials": r.dir[:, 0],
                  "vr_curve": r.vr_curve, "vr_curve_far": r.vr_curve_fars,
                  "dir_curve": r.dir_curve, "dir_curve_far": r.dir_curve_fars}
        return metrics, arrays
